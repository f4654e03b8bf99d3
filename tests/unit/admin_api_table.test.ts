// docs/ADMIN_API.md's RPC table names every field of every request, nested
// messages included, as proto/mc_proxy/v1/admin.proto declares them: a field
// added to the .proto and not to the table fails here. Fields the .proto
// marks as output ("Output only", "Responses:") are not part of a request.
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import protobuf from "protobufjs";

const ROOT = join(import.meta.dir, "../..");
const proto = readFileSync(join(ROOT, "proto/mc_proxy/v1/admin.proto"), "utf8");
const doc = readFileSync(join(ROOT, "docs/ADMIN_API.md"), "utf8");

const root = protobuf.parse(proto, { keepCase: true, alternateCommentMode: true }).root;
root.resolveAll();
const service = root.lookupService("mc_proxy.v1.ProxyAdminService");

/** The request's field names, nested messages walked (each type once), output-only fields left out. */
function requestFields(type: protobuf.Type, seen = new Set<string>()): string[] {
  if (seen.has(type.fullName)) return [];
  seen.add(type.fullName);
  const out: string[] = [];
  for (const f of type.fieldsArray) {
    if (/^(Output only|Responses:)/.test(f.comment ?? "")) continue;
    out.push(f.name);
    if (f.resolvedType instanceof protobuf.Type) out.push(...requestFields(f.resolvedType, seen));
  }
  return out;
}

/** The first cell of the table row that names the RPC as `Name{…}`. */
function rowOf(rpc: string): string | null {
  const line = doc.split("\n").find((l) => l.startsWith("|") && l.includes(`\`${rpc}{`));
  return line === undefined ? null : line.split(" | ")[0]!;
}

test("the proto has RPCs with nested request messages (the walk below sees them)", () => {
  expect(service.methodsArray.length).toBeGreaterThanOrEqual(10);
  expect(requestFields(root.lookupType("mc_proxy.v1.AddRouteRequest"))).toContain("weight");
});

for (const m of service.methodsArray) {
  test(`docs/ADMIN_API.md's RPC table lists every field of ${m.name}'s request`, () => {
    const cell = rowOf(m.name);
    expect(cell, `no row \`${m.name}{…}\` in the RPC table`).not.toBeNull();
    const missing = requestFields(root.lookupType(m.requestType)).filter(
      (f) => !new RegExp(`(^|[^A-Za-z0-9_])${f}([^A-Za-z0-9_]|$)`).test(cell!),
    );
    expect(missing).toEqual([]);
  });
}
