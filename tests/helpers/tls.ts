// TLS backends and clients for end-to-end tests.
import { type ConnectionOptions, connect as tlsConnect } from "node:tls";
import type { TestCert } from "./certs";

export interface TlsBackend {
  name: string;
  port: number;
  /** TCP connections accepted (counted before the TLS handshake). */
  connections: number;
  stop(): void;
}

/**
 * A TLS server that answers any HTTP/1.x request with "hello from NAME" and
 * closes. Counts TCP accepts, so "no backend sees a connection" is checkable.
 * On 127.0.0.1 and a free port unless `at` names them.
 */
export function tlsBackend(name: string, cert: TestCert, at = { hostname: "127.0.0.1", port: 0 }): TlsBackend {
  const body = `hello from ${name}\n`;
  const reply = `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`;
  const state: TlsBackend = { name, port: 0, connections: 0, stop: () => l.stop(true) };
  const bufs = new WeakMap<object, string>();
  const l = Bun.listen({
    ...at,
    tls: { cert: cert.cert, key: cert.key },
    socket: {
      // With a handshake handler, open fires at TCP accept, before the handshake.
      open() {
        state.connections++;
      },
      handshake() {},
      data(s, d) {
        const text = (bufs.get(s) ?? "") + d.toString("latin1");
        bufs.set(s, text);
        if (text.includes("\r\n\r\n")) {
          s.write(reply);
          s.end();
        }
      },
    },
  });
  state.port = l.port;
  return state;
}

export interface TlsResult {
  body: string;
  error: string | null;
  alpn: string | false | null;
}

/** A node:tls client: handshake with `servername`, send one HTTP/1.1 request, read to the end. */
export function tlsGet(
  port: number,
  servername: string | null,
  cert: TestCert,
  opts: { localAddress?: string; timeoutMs?: number; alpn?: string[] } = {},
): Promise<TlsResult> {
  return new Promise((resolve) => {
    let body = "";
    let settled = false;
    let alpn: string | false | null = null;
    // localAddress is passed through to net.connect (node's typings omit it).
    const options: ConnectionOptions & { localAddress?: string } = {
      host: "127.0.0.1",
      port,
      servername: servername ?? undefined,
      ca: cert.cert,
      localAddress: opts.localAddress,
      ALPNProtocols: opts.alpn,
      checkServerIdentity: () => undefined,
    };
    const s = tlsConnect(options);
    const done = (error: string | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ body, error, alpn });
    };
    const timer = setTimeout(() => done("timeout"), opts.timeoutMs ?? 5000);
    s.on("secureConnect", () => {
      alpn = s.alpnProtocol;
      s.write(`GET / HTTP/1.1\r\nHost: ${servername ?? "none"}\r\n\r\n`);
    });
    s.on("data", (d: Buffer) => (body += d.toString()));
    s.on("error", (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
    // An 'error' (ECONNRESET) can follow 'end'/'close' under Bun's node:tls; give it a moment.
    s.on("end", () => setTimeout(() => done(null), 50));
    s.on("close", () => setTimeout(() => done(null), 50));
  });
}

/** The HTTP body of a tlsGet response, or null. */
export function bodyOf(r: TlsResult): string | null {
  const i = r.body.indexOf("\r\n\r\n");
  return i < 0 ? null : r.body.slice(i + 4);
}
