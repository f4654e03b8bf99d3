// The PROXY protocol header (haproxy doc/proxy-protocol.txt, versions 1 and
// 2): what a load balancer in front of us says about the client, and what we
// say to a backend. Types and the protocol's constants; the reader and the
// writer are beside this file.

import type { ReadResult } from "../net/reader";

export interface ProxyAddress {
  /** Normalised text: dotted-quad IPv4 (an IPv4-mapped IPv6 address becomes IPv4), RFC 5952 IPv6. */
  readonly ip: string;
  readonly port: number;
}

export interface ProxyHeader {
  readonly version: 1 | 2;
  /**
   * The client and the address it dialled; null for LOCAL (v2), UNKNOWN (v1)
   * and the v2 UNSPEC / UNIX families: the balancer speaks for itself (a
   * health check), so the connection's own endpoints stand.
   */
  readonly source: ProxyAddress | null;
  readonly destination: ProxyAddress | null;
  /** PP2_TYPE_AUTHORITY (v2): the host name the client asked the balancer for. */
  readonly authority: string | null;
  /** PP2_TYPE_UNIQUE_ID (v2), as latin-1 text. */
  readonly uniqueId: string | null;
}

/** A header read (the reader contract, net/reader.ts). */
export interface ProxyHeaderRead {
  readonly header: ProxyHeader;
  /** The bytes after the header in the chunk that completed it (a view, not a copy): usually the ClientHello. */
  readonly rest: Uint8Array;
}

/** Every refusal closes the connection with this outcome (docs/SPEC.md §9); the reason says why. */
export type ProxyHeaderReject = "bad_proxy_header";

export type ProxyHeaderResult = ReadResult<ProxyHeaderRead, ProxyHeaderReject>;

/** §2.1: "a receiver may reject an incomplete line which does not contain the CRLF sequence in the first 107 characters". */
export const V1_MAX_LENGTH = 107;
export const V1_PREFIX = "PROXY ";

/** §2.2: the 12-byte signature that starts every v2 header. */
export const V2_SIGNATURE = new Uint8Array([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** Signature, version/command, family/protocol, 16-bit length. */
export const V2_FIXED_LENGTH = 16;
/** The largest v2 header: the fixed part and a 16-bit length. */
export const V2_MAX_LENGTH = V2_FIXED_LENGTH + 0xffff;

export const V2_VERSION = 0x2;
export const V2_CMD_LOCAL = 0x0;
export const V2_CMD_PROXY = 0x1;

export const AF_UNSPEC = 0x0;
export const AF_INET = 0x1;
export const AF_INET6 = 0x2;
export const AF_UNIX = 0x3;
export const PROTO_UNSPEC = 0x0;
export const PROTO_STREAM = 0x1;

/** Size of the address block for each address family (§2.2). */
export const ADDRESS_BLOCK: Record<number, number> = { [AF_UNSPEC]: 0, [AF_INET]: 12, [AF_INET6]: 36, [AF_UNIX]: 216 };

/** TLV types (§2.2.x). */
export const PP2_TYPE_ALPN = 0x01;
export const PP2_TYPE_AUTHORITY = 0x02;
export const PP2_TYPE_CRC32C = 0x03;
export const PP2_TYPE_NOOP = 0x04;
export const PP2_TYPE_UNIQUE_ID = 0x05;
/** §2.2.5: "The value … must not exceed 128 bytes." */
export const UNIQUE_ID_MAX = 128;
