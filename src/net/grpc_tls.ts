// TLS to a gRPC server named by an IP address. Bun's tls.connect refuses an
// IP address as the TLS server name, which grpc-js sends for an IP target
// (docs/BUN-NOTES.md, gRPC). So for such targets: send a placeholder name
// (neither the admin API nor etcd looks at SNI) and check the certificate
// against the address(es) ourselves. Used by the admin CLI and the etcd client.

import { isIP } from "node:net";
import { type PeerCertificate, checkServerIdentity } from "node:tls";

export interface IpTls {
  /** grpc-js channel options: the placeholder server name. */
  channelOptions: { "grpc.ssl_target_name_override": string };
  /** The certificate must name one of the addresses. */
  checkServerIdentity: (name: string, cert: PeerCertificate) => Error | undefined;
}

/** For targets `hosts` (host names or IP addresses): null when none is an IP (plain TLS does). */
export function ipTls(hosts: readonly string[], placeholder: string): IpTls | null {
  if (!hosts.some((h) => isIP(h) !== 0)) return null;
  return {
    channelOptions: { "grpc.ssl_target_name_override": placeholder },
    checkServerIdentity: (_name, cert) =>
      hosts.some((h) => checkServerIdentity(h, cert) === undefined) ? undefined : checkServerIdentity(hosts[0]!, cert),
  };
}
