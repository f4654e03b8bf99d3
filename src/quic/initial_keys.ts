// The keys that protect a client's Initial packets, which anyone can derive
// from the packet itself: HKDF-Extract of its Destination Connection ID with
// a public salt, then HKDF-Expand-Label (RFC 8446 §7.1) for the client
// secret and its key, IV and header-protection key (RFC 9001 §5.2; QUIC v2:
// RFC 9369 §3.3.1–3.3.2, another salt and "quicv2" labels). HMAC-SHA256 from
// node:crypto: every output here is at most one SHA-256 block long, so
// HKDF-Expand is a single HMAC.
import { createHmac } from "node:crypto";

export const QUIC_V1 = 0x00000001;
export const QUIC_V2 = 0x6b3343cf;

const SALT_V1 = Buffer.from("38762cf7f55934b34d179ae6a4c80cadccbb7f0a", "hex");
const SALT_V2 = Buffer.from("0dede3def700a6db819381be6e269dcbf9bd2ed9", "hex");

export interface InitialKeys {
  /** client_initial_secret (for the tests' known answers). */
  secret: Buffer;
  /** AEAD_AES_128_GCM key, IV, and the AES-128 header-protection key. */
  key: Buffer;
  iv: Buffer;
  hp: Buffer;
}

/** True for the versions whose Initial keys this reads (v1, v2). */
export function knownVersion(version: number): boolean {
  return version === QUIC_V1 || version === QUIC_V2;
}

export function hkdfExtract(salt: Uint8Array, ikm: Uint8Array): Buffer {
  return createHmac("sha256", salt).update(ikm).digest();
}

/** HKDF-Expand-Label(secret, label, "", length) for length ≤ 32. */
export function expandLabel(secret: Uint8Array, label: string, length: number): Buffer {
  const full = `tls13 ${label}`;
  const info = Buffer.alloc(2 + 1 + full.length + 1 + 1);
  info.writeUInt16BE(length, 0);
  info[2] = full.length;
  info.write(full, 3, "latin1");
  info[3 + full.length] = 0; // empty context
  info[4 + full.length] = 1; // HKDF-Expand's block counter T(1)
  return createHmac("sha256", secret).update(info).digest().subarray(0, length);
}

/** The client's Initial keys for `version` and the Destination Connection ID of its first Initial; null for another version. */
export function clientInitialKeys(version: number, dcid: Uint8Array): InitialKeys | null {
  if (!knownVersion(version)) return null;
  const v2 = version === QUIC_V2;
  const secret = expandLabel(hkdfExtract(v2 ? SALT_V2 : SALT_V1, dcid), "client in", 32);
  const p = v2 ? "quicv2 " : "quic ";
  return {
    secret,
    key: expandLabel(secret, `${p}key`, 16),
    iv: expandLabel(secret, `${p}iv`, 12),
    hp: expandLabel(secret, `${p}hp`, 16),
  };
}
