// docs/ARCHITECTURE.md "File map" names every file under src/, and names
// no file that does not exist: one table row per file, its path in
// backticks in the first cell.
import { expect, test } from "bun:test";
import { readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../..");

/** The paths the File map section's rows name (`| \`src/…\` | … |`). */
function mapped(architecture: string): string[] {
  const start = architecture.indexOf("\n## File map\n");
  expect(start).toBeGreaterThanOrEqual(0);
  const end = architecture.indexOf("\n## ", start + 1);
  const section = architecture.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/^\| `(src\/[^`\s]+)` \|/gm)].map((m) => m[1]!);
}

function sourceFiles(dir = "src"): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory()) out.push(...sourceFiles(path));
    else out.push(path);
  }
  return out;
}

test("the file map in docs/ARCHITECTURE.md names every file under src/ and no other", () => {
  const inMap = new Set(mapped(readFileSync(join(ROOT, "docs/ARCHITECTURE.md"), "utf8")));
  const onDisk = new Set(sourceFiles());
  const missing = [...onDisk].filter((f) => !inMap.has(f)).sort();
  const extra = [...inMap].filter((f) => !onDisk.has(f)).sort();
  // On failure: "missing" are files to add to the map, "extra" rows whose file is gone.
  expect({ missing, extra }).toEqual({ missing: [], extra: [] });
  expect(onDisk.size).toBeGreaterThan(50);
});
