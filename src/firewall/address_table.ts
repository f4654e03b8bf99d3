// AddressTable: blocked addresses and CIDR blocks, matched without
// allocating. IPv4 — all real traffic on most hosts — is a uint32 looked up
// in one Set per distinct prefix length (a /24 list of any size costs one
// probe); IPv6 falls back to node's BlockList.
import { BlockList } from "node:net";

export class AddressTable {
  /** [mask, networks] per distinct IPv4 prefix length, longest first. */
  private readonly v4: { mask: number; nets: Set<number> }[] = [];
  private readonly v6 = new BlockList();
  private v6Count = 0;

  /** `entries` are canonical "address/prefix" strings or bare addresses (= /32, /128). */
  constructor(entries: readonly string[]) {
    const byPrefix = new Map<number, Set<number>>();
    for (const e of entries) {
      const slash = e.indexOf("/");
      const addr = slash < 0 ? e : e.slice(0, slash);
      if (addr.includes(":")) {
        if (slash < 0) this.v6.addAddress(addr, "ipv6");
        else this.v6.addSubnet(addr, Number(e.slice(slash + 1)), "ipv6");
        this.v6Count++;
        continue;
      }
      const prefix = slash < 0 ? 32 : Number(e.slice(slash + 1));
      const mask = prefixMask(prefix);
      let set = byPrefix.get(prefix);
      if (set === undefined) byPrefix.set(prefix, (set = new Set()));
      set.add((ipv4ToUint32(addr) & mask) >>> 0);
    }
    for (const [prefix, nets] of [...byPrefix].sort((a, b) => b[0] - a[0]))
      this.v4.push({ mask: prefixMask(prefix), nets });
  }

  /**
   * `ip` is a normalised address (IPv4-mapped IPv6 already turned into IPv4);
   * `n` is its ipv4ToUint32 value, passed in when the caller already has it.
   */
  has(ip: string, n: number = ipv4ToUint32(ip)): boolean {
    if (n < 0) return this.v6Count > 0 && this.v6.check(ip, "ipv6");
    for (let i = 0; i < this.v4.length; i++) {
      const b = this.v4[i]!;
      if (b.nets.has((n & b.mask) >>> 0)) return true;
    }
    return false;
  }
}

function prefixMask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Dotted-quad IPv4 → uint32, or -1 when `ip` is not one (e.g. IPv6). No allocation. */
export function ipv4ToUint32(ip: string): number {
  let n = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c >= 0x30 && c <= 0x39) {
      octet = octet * 10 + (c - 0x30);
      if (++digits > 3 || octet > 255) return -1;
    } else if (c === 0x2e) {
      if (digits === 0 || ++dots > 3) return -1;
      n = n * 256 + octet;
      octet = 0;
      digits = 0;
    } else return -1;
  }
  if (dots !== 3 || digits === 0) return -1;
  return n * 256 + octet;
}
