// `bun run demo`: starts a TLS demo backend on 127.0.0.1:9443 (self-signed
// certificate made with openssl), runs mc-proxy on examples/mc-proxy.toml
// (the compiled binary if built, else the source), waits for its `started`
// log line, sends one real TLS request through it to show the route works,
// and keeps running until Ctrl-C: the proxy drains, then both stop.
// DEMO_PORT=P moves the proxy to P and the backend to P + 1000, with a copy
// of the config (and its database and admin socket) in a directory of its own.
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { connect } from "node:tls";
import { DEFAULT_PROXY_PORT, demoPorts, isStartedLine, withPorts } from "./demo_config";
import { selfSignedArgs } from "./self_signed";

const root = resolve(import.meta.dir, "..");
const example = join(root, "examples/mc-proxy.toml");
const dir = mkdtempSync(join(tmpdir(), "mc-proxy-demo-"));
const certFile = join(dir, "cert.pem");
const keyFile = join(dir, "key.pem");

const ports = demoPorts(process.env.DEMO_PORT);
if (typeof ports === "string") {
  console.error(`demo: ${ports}`);
  process.exit(2);
}
let config = example;
if (ports.proxy !== DEFAULT_PROXY_PORT) {
  config = join(dir, "mc-proxy.toml");
  writeFileSync(config, withPorts(readFileSync(example, "utf8"), ports));
}

const gen = Bun.spawnSync(
  selfSignedArgs(keyFile, certFile, {
    cn: "alpha.example.com",
    sans: ["alpha.example.com", "*.demo.example.com"],
    days: 30,
  }),
);
if (gen.exitCode !== 0) {
  console.error(`demo: openssl failed (is it installed? apt-get install openssl):\n${gen.stderr}`);
  process.exit(1);
}
const cert = readFileSync(certFile, "utf8");

const backend = Bun.serve({
  hostname: "127.0.0.1",
  port: ports.backend,
  tls: { cert, key: readFileSync(keyFile, "utf8") },
  fetch: (req) => new Response(`hello from the mc-proxy demo backend (you asked for ${new URL(req.url).hostname})\n`),
});
console.log(`demo: TLS backend on 127.0.0.1:${ports.backend}`);

const binary = join(root, "dist/mc-proxy");
const cmd = existsSync(binary) ? [binary] : [process.execPath, "run", join(root, "src/main.ts")];
// A process group of its own: a terminal's Ctrl-C reaches the demo only, which
// passes each signal on once — the first drains, a second stops at once
// (docs/COMMAND_LINE.md "Signals"); both at once would be the second.
const proxy = Bun.spawn([...cmd, "server", "-c", config], {
  stdin: "ignore",
  stdout: "inherit",
  stderr: "pipe",
  detached: true,
});
process.on("exit", () => proxy.kill("SIGKILL"));
let signals = 0;
const forward = (sig: NodeJS.Signals) => {
  signals++;
  console.log(
    signals === 1
      ? `demo: ${sig}: the proxy drains (open connections finish, up to shutdown_timeout); ${sig} again stops it at once`
      : `demo: ${sig} again: the proxy stops now`,
  );
  proxy.kill(sig);
};
process.on("SIGINT", () => forward("SIGINT"));
process.on("SIGTERM", () => forward("SIGTERM"));

// The proxy's log goes on to stderr as it comes; its `started` line says it serves.
const started = new Promise<boolean>((ready) => {
  void (async () => {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of proxy.stderr) {
      process.stderr.write(chunk);
      pending += decoder.decode(chunk, { stream: true });
      const lines = pending.split("\n");
      pending = lines.pop()!;
      if (lines.some(isStartedLine)) ready(true);
    }
    ready(false);
  })();
});

if (await started) {
  const reply = await new Promise<string>((done) => {
    let text = "";
    const s = connect({ host: "127.0.0.1", port: ports.proxy, servername: "alpha.example.com", ca: cert });
    s.on("secureConnect", () => s.write("GET / HTTP/1.1\r\nHost: alpha.example.com\r\nConnection: close\r\n\r\n"));
    s.on("data", (d: Buffer) => (text += d));
    s.on("end", () => done(text));
    s.on("error", (e) => done(`error: ${e.message}`));
  });
  const body = reply.split("\r\n\r\n")[1] ?? reply;
  const mc = existsSync(binary) ? "dist/mc-proxy" : "bun run src/main.ts";
  const c = config === example ? "examples/mc-proxy.toml" : config;
  console.log(`demo: a TLS request for alpha.example.com through 127.0.0.1:${ports.proxy} got: ${body.trim()}`);
  console.log(`demo: try it yourself:
  curl --cacert ${certFile} --resolve alpha.example.com:${ports.proxy}:127.0.0.1 https://alpha.example.com:${ports.proxy}/
  curl --cacert ${certFile} --resolve x.demo.example.com:${ports.proxy}:127.0.0.1 https://x.demo.example.com:${ports.proxy}/
  ${mc} status -c ${c}       (the admin API, over the unix socket beside ${c})
  ${mc} routes add -c ${c} beta.example.com 127.0.0.1:${ports.backend}
demo: Ctrl-C drains the proxy (graceful: open connections finish), then stops it and the backend.`);
}
const code = await proxy.exited;
backend.stop(true);
console.log(`demo: the proxy stopped (exit code ${code}); the backend too`);
process.exit(code);
