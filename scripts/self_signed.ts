// The openssl command that makes a self-signed P-256 certificate: the demo,
// the bench and the tests each need one (for different names and lifetimes).

/** argv for `openssl req` writing `keyFile` and `certFile` for `cn` and the DNS names `sans`. */
export function selfSignedArgs(
  keyFile: string,
  certFile: string,
  opts: { cn: string; sans: readonly string[]; days: number },
): string[] {
  return [
    "openssl",
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    keyFile,
    "-out",
    certFile,
    "-days",
    String(opts.days),
    "-subj",
    `/CN=${opts.cn}`,
    "-addext",
    `subjectAltName=${opts.sans.map((n) => `DNS:${n}`).join(",")}`,
  ];
}
