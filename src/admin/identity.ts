// Who is calling the admin API, and may they change things.
//
// A TLS client is named by its verified certificate: the subject CN and its
// DNS subjectAltNames. A unix-socket client is "unix" (the socket is 0600:
// only its owner can connect). With `[grpc] admin_clients` set, only a
// certificate whose CN or a DNS SAN is in the list may call mutating RPCs;
// every other verified client may read.

export interface PeerCert {
  subject?: { CN?: string | string[] };
  subjectaltname?: string;
}

export interface Caller {
  /** For logs and refusals: the CN, else the first DNS SAN; "unix"; or "anonymous" (TLS without a client certificate). */
  readonly identity: string;
  /** Every name the certificate proves (CN and DNS SANs). */
  readonly names: readonly string[];
  readonly transport: "unix" | "tls";
}

export function callerFromCert(cert: PeerCert | undefined): Caller {
  if (cert === undefined) return { identity: "anonymous", names: [], transport: "tls" };
  const cn = cert.subject?.CN;
  const cns = cn === undefined ? [] : Array.isArray(cn) ? cn : [cn];
  const sans = (cert.subjectaltname ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.startsWith("DNS:"))
    .map((s) => s.slice(4));
  const names = [...cns, ...sans];
  return { identity: names[0] ?? "anonymous", names, transport: "tls" };
}

export const UNIX_CALLER: Caller = { identity: "unix", names: [], transport: "unix" };

/**
 * The name that lets this caller run mutating RPCs — the admin_clients entry
 * its certificate matched (a DNS SAN may match where the CN does not), or its
 * identity when there is no list — or null when it may only read.
 */
export function grantedBy(caller: Caller, adminClients: readonly string[] | null): string | null {
  if (caller.transport === "unix" || adminClients === null) return caller.identity;
  return caller.names.find((n) => adminClients.includes(n)) ?? null;
}
