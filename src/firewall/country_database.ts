// Country lookups from a MaxMind DB file (GeoLite2-Country, or any MMDB whose
// records carry a country code). Opened synchronously from a buffer so that a
// reload is a single reference swap: lookups in flight finish on the old data.
import { readFileSync } from "node:fs";
import { type Response, Reader } from "maxmind";

/** Record shapes seen in the wild: GeoIP2/GeoLite2 and ip-location-db. */
interface CountryRecord {
  country?: { iso_code?: string };
  country_code?: string;
}

// maxmind's Reader is typed for MaxMind's own record shapes; ours is looser.
type AnyReader = Reader<Response>;

/** Lookups remembered per database instance (a reload starts afresh). */
const CACHE_MAX = 16_384;

export class CountryDatabase {
  /** Recent IP → country answers: returning clients skip the tree walk and record decode. */
  private readonly cache = new Map<string, string | null>();

  private constructor(
    private readonly reader: AnyReader,
    readonly path: string,
  ) {}

  /** Open and parse the file; throws (with the path in the message) when it cannot. */
  static open(path: string): CountryDatabase {
    return CountryDatabase.fromBytes(CountryDatabase.read(path), path);
  }

  /**
   * The file's bytes in shared memory, so that every worker can use one copy
   * (SIGHUP reads it once). Throws with the path when unreadable.
   */
  static read(path: string): Uint8Array {
    let buf: Buffer;
    try {
      buf = readFileSync(path);
    } catch (e) {
      throw new Error(`cannot read GeoIP database ${path}: ${(e as Error).message}`);
    }
    const shared = new Uint8Array(new SharedArrayBuffer(buf.length));
    shared.set(buf);
    return shared;
  }

  /** Parse bytes already read (see read); `path` is for messages. */
  static fromBytes(data: Uint8Array, path: string): CountryDatabase {
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    let reader: AnyReader;
    try {
      reader = new Reader<Response>(buf);
    } catch (e) {
      throw new Error(`${path} is not a valid MaxMind DB file: ${(e as Error).message}`);
    }
    return new CountryDatabase(reader, path);
  }

  /** The database's build time, seconds since the epoch (its metadata's build_epoch). */
  get buildEpoch(): number {
    return this.reader.metadata.buildEpoch.getTime() / 1000;
  }

  /** ISO country code of a normalised IP (IPv4 dotted or IPv6), or null if unknown. */
  country(ip: string): string | null {
    const hit = this.cache.get(ip);
    if (hit !== undefined) return hit;
    const cc = this.lookup(ip);
    if (this.cache.size >= CACHE_MAX) this.cache.clear();
    this.cache.set(ip, cc);
    return cc;
  }

  private lookup(ip: string): string | null {
    let rec: CountryRecord | null;
    try {
      rec = this.reader.get(ip) as CountryRecord | null;
    } catch {
      // An IPv6 address looked up in an IPv4-only database throws; it is simply unknown.
      return null;
    }
    if (rec === null || typeof rec !== "object") return null;
    return rec.country?.iso_code ?? rec.country_code ?? null;
  }
}
