// TLS clients held open through the proxy (node:tls, handshake done, sending
// nothing, so that tests/helpers/tls.ts's backend keeps them open), each bound
// to a loopback address of its own; and the binary's command line run
// without blocking the test's thread (the held sockets' events keep their
// times).
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from "node:tls";
import { cleanEnv, command } from "./proxy";

/** The route the held clients name. */
export const HELD_HOST = "app.example.com";

/** A TLS client through the proxy, handshake done, sending nothing: the backend keeps it open. */
export interface Held {
  socket: TLSSocket;
  /** Set when it ends: when, and the error code (ECONNRESET for an RST), "" for a clean close. */
  end: { at: number; code: string } | null;
  /** performance.now() when it was started. */
  startedAt: number;
}

/** Hold a connection from `from` (a loopback address) to `servername`; `alpn` changes the client's hello (its JA4). */
export function hold(
  port: number,
  from: string,
  alpn: string[] = ["h2", "http/1.1"],
  servername = HELD_HOST,
): Promise<Held> {
  return new Promise((resolve, reject) => {
    const startedAt = performance.now();
    // node:tls passes localAddress on to net.connect (its types do not list it).
    const options = {
      host: "127.0.0.1",
      port,
      localAddress: from,
      servername,
      rejectUnauthorized: false,
      ALPNProtocols: alpn.length === 0 ? undefined : alpn,
    };
    const s = tlsConnect(options as ConnectionOptions);
    const h: Held = { socket: s, end: null, startedAt };
    let up = false;
    s.on("secureConnect", () => {
      up = true;
      resolve(h);
    });
    s.on("error", (e: NodeJS.ErrnoException) => {
      h.end ??= { at: performance.now(), code: e.code ?? e.message };
      if (!up) reject(e);
    });
    s.on("close", () => {
      h.end ??= { at: performance.now(), code: "" };
      if (!up) reject(new Error(`closed before the handshake (from ${from})`));
    });
  });
}

/** A held connection still carries bytes both ways: a request answered by the backend. */
export function stillWorks(h: Held): Promise<boolean> {
  return new Promise((resolve) => {
    if (h.end !== null) return resolve(false);
    let text = "";
    h.socket.on("data", (d: Buffer) => {
      text += d.toString();
      if (text.includes("hello from")) resolve(true);
    });
    h.socket.on("close", () => resolve(text.includes("hello from")));
    h.socket.write(`GET / HTTP/1.1\r\nHost: ${HELD_HOST}\r\n\r\n`);
    setTimeout(() => resolve(false), 3000);
  });
}

/** Run `mc-proxy ARGS` (the binary) without blocking this thread: its exit code and when it exited. */
export async function cli(args: string[], cwd: string): Promise<{ code: number; out: string; at: number }> {
  const p = Bun.spawn([...command("binary"), ...args], { cwd, env: cleanEnv(), stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  const code = await p.exited;
  return { code, out: out + err, at: performance.now() };
}
