// A minimal MaxMind DB (format 2.0) writer for test fixtures: an IPv4 search
// tree with 24-bit records, a data section of maps of strings, and the
// metadata block. Enough to give exact control over country test data; no
// writer exists on npm (BUN-NOTES).

type Value = string | number | bigint | Value[] | { [k: string]: Value };

function ctrl(type: number, size: number): number[] {
  const out: number[] = [];
  let sizeBits: number;
  const ext: number[] = [];
  if (size < 29) sizeBits = size;
  else if (size < 29 + 256) {
    sizeBits = 29;
    ext.push(size - 29);
  } else if (size < 285 + 65536) {
    sizeBits = 30;
    const s = size - 285;
    ext.push(s >> 8, s & 0xff);
  } else {
    sizeBits = 31;
    const s = size - 65821;
    ext.push((s >> 16) & 0xff, (s >> 8) & 0xff, s & 0xff);
  }
  if (type <= 7) out.push((type << 5) | sizeBits);
  else out.push(sizeBits, type - 7);
  return [...out, ...ext];
}

function uintBytes(v: bigint): number[] {
  const out: number[] = [];
  while (v > 0n) {
    out.unshift(Number(v & 0xffn));
    v >>= 8n;
  }
  return out;
}

/** Encode a value; numbers are written as uint32 unless `uintType` says otherwise. */
function encode(v: Value, uintType = 6): number[] {
  if (typeof v === "string") {
    const b = Array.from(new TextEncoder().encode(v));
    return [...ctrl(2, b.length), ...b];
  }
  if (typeof v === "number" || typeof v === "bigint") {
    const b = uintBytes(BigInt(v));
    return [...ctrl(typeof v === "bigint" ? 9 : uintType, b.length), ...b];
  }
  if (Array.isArray(v)) return [...ctrl(11, v.length), ...v.flatMap((x) => encode(x))];
  const entries = Object.entries(v);
  return [
    ...ctrl(7, entries.length),
    ...entries.flatMap(([k, x]) => [...encode(k), ...encode(x, k.includes("version") || k === "record_size" ? 5 : 6)]),
  ];
}

export interface MmdbNetwork {
  /** "a.b.c.d/len" */
  cidr: string;
  record: { [k: string]: Value };
}

export function writeMmdb(networks: MmdbNetwork[], databaseType = "Test-Country"): Uint8Array {
  // Data section: one encoded record per network.
  const data: number[] = [];
  const offsets = networks.map((n) => {
    const off = data.length;
    data.push(...encode(n.record));
    return off;
  });
  // Search tree: nodes[i] = [left, right]; -1 empty, >=0 node index, {leaf} data offset.
  type Rec = number | { leaf: number };
  const nodes: [Rec, Rec][] = [[-1, -1]];
  networks.forEach((n, i) => {
    const [addr, lenText] = n.cidr.split("/") as [string, string];
    const len = Number(lenText);
    const ip = addr.split(".").reduce((a, o) => a * 256 + Number(o), 0);
    let node = 0;
    for (let bit = 0; bit < len; bit++) {
      const b = Math.floor(ip / 2 ** (31 - bit)) % 2;
      if (bit === len - 1) {
        nodes[node]![b] = { leaf: offsets[i]! };
        break;
      }
      const next = nodes[node]![b]!;
      if (typeof next === "number" && next >= 0) node = next;
      else if (typeof next === "object") throw new Error(`nested networks are not supported (${n.cidr})`);
      else {
        nodes.push([-1, -1]);
        nodes[node]![b] = nodes.length - 1;
        node = nodes.length - 1;
      }
    }
  });
  const nodeCount = nodes.length;
  const value = (r: Rec): number => (typeof r === "object" ? nodeCount + 16 + r.leaf : r < 0 ? nodeCount : r);
  const tree: number[] = [];
  for (const [l, r] of nodes) {
    for (const v of [value(l), value(r)]) tree.push((v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff);
  }
  const metadata = encode({
    node_count: nodeCount,
    record_size: 24,
    ip_version: 4,
    database_type: databaseType,
    languages: ["en"],
    binary_format_major_version: 2,
    binary_format_minor_version: 0,
    build_epoch: BigInt(Math.floor(Date.now() / 1000)),
    description: { en: "mc-proxy test fixture" },
  });
  const marker = [0xab, 0xcd, 0xef, ...Array.from(new TextEncoder().encode("MaxMind.com"))];
  return new Uint8Array([...tree, ...new Array(16).fill(0), ...data, ...marker, ...metadata]);
}
