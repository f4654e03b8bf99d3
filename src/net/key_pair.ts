// A certificate and its private key (PEM), as a TLS server or client loads
// them: both parse, and the key is the certificate's (its public half is the
// certificate's subject key). `check` and the server ask the same question
// before anything listens: a rotated key that does not match its
// certificate is named as such, not as "cannot listen".

import { X509Certificate, createPrivateKey } from "node:crypto";

/** What names a file in messages: the config key and its path. */
export interface Named {
  key: string;
  path: string;
}

/** Why `keyPem` cannot serve `certPem` (the first certificate of the chain is the leaf), or null. */
export function keyPairError(certPem: Buffer, keyPem: Buffer, cert: Named, key: Named): string | null {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(certPem);
  } catch (e) {
    return `${cert.key}: ${cert.path} is not a PEM certificate (${(e as Error).message})`;
  }
  let pk: ReturnType<typeof createPrivateKey>;
  try {
    pk = createPrivateKey(keyPem);
  } catch (e) {
    return `${key.key}: ${key.path} is not a PEM private key (${(e as Error).message})`;
  }
  return x509.checkPrivateKey(pk)
    ? null
    : `${key.key} (${key.path}) does not match ${cert.key} (${cert.path}): it is not the private key of that certificate`;
}
