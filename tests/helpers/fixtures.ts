// Locates the shared test data (../shared/testdata beside the checkout).
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";

const candidates = [resolve(import.meta.dir, "../../../shared/testdata"), resolve(process.cwd(), "../shared/testdata")];

export const sharedTestdata: string | null = candidates.find((p) => existsSync(p)) ?? null;

export interface HelloFixture {
  file: string;
  bytes: Uint8Array;
  sni: string | null;
}

export function helloFixtures(): HelloFixture[] {
  if (sharedTestdata === null) {
    console.warn("SKIP: ../shared/testdata not found; real ClientHello fixtures not tested");
    return [];
  }
  const dir = join(sharedTestdata, "hellos");
  const lines = readFileSync(join(dir, "manifest.tsv"), "utf8").trim().split("\n").slice(1);
  return lines.map((line) => {
    const [file, size, sni] = line.split("\t") as [string, string, string];
    const bytes = new Uint8Array(readFileSync(join(dir, file)));
    if (bytes.length !== Number(size))
      throw new Error(`${file}: manifest says ${size} bytes, file has ${bytes.length}`);
    return { file, bytes, sni: sni === "-" ? null : sni };
  });
}
