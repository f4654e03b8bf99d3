// `bun run demo`: starts a TLS demo backend on 127.0.0.1:9443 (self-signed
// certificate made with openssl), runs mc-proxy on examples/mc-proxy.toml
// (the compiled binary if built, else the source), sends one real TLS request
// through it to show the route works, and keeps running until Ctrl-C.
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { connect } from "node:tls";
import { selfSignedArgs } from "./self_signed";

const root = resolve(import.meta.dir, "..");
const config = join(root, "examples/mc-proxy.toml");
const dir = mkdtempSync(join(tmpdir(), "mc-proxy-demo-"));
const certFile = join(dir, "cert.pem");
const keyFile = join(dir, "key.pem");

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

Bun.serve({
  hostname: "127.0.0.1",
  port: 9443,
  tls: { cert, key: readFileSync(keyFile, "utf8") },
  fetch: (req) => new Response(`hello from the mc-proxy demo backend (you asked for ${new URL(req.url).hostname})\n`),
});
console.log("demo: TLS backend on 127.0.0.1:9443");

const binary = join(root, "dist/mc-proxy");
const cmd = existsSync(binary) ? [binary] : [process.execPath, "run", join(root, "src/main.ts")];
const proxy = Bun.spawn([...cmd, "server", "-c", config], { stdout: "inherit", stderr: "inherit" });
const stop = () => proxy.kill("SIGTERM");
process.on("SIGINT", stop);
process.on("SIGTERM", stop);

// Wait for the listener, then prove the route with a real TLS client.
for (let i = 0; i < 100; i++) {
  const up = await new Promise<boolean>((r) => {
    const s = require("node:net").createConnection({ host: "127.0.0.1", port: 8443 });
    s.on("connect", () => {
      s.destroy();
      r(true);
    });
    s.on("error", () => r(false));
  });
  if (up) break;
  await Bun.sleep(100);
}
const reply = await new Promise<string>((resolve) => {
  let text = "";
  const s = connect({ host: "127.0.0.1", port: 8443, servername: "alpha.example.com", ca: cert });
  s.on("secureConnect", () => s.write("GET / HTTP/1.1\r\nHost: alpha.example.com\r\nConnection: close\r\n\r\n"));
  s.on("data", (d: Buffer) => (text += d));
  s.on("end", () => resolve(text));
  s.on("error", (e) => resolve(`error: ${e.message}`));
});
const body = reply.split("\r\n\r\n")[1] ?? reply;
console.log(`demo: a TLS request for alpha.example.com through 127.0.0.1:8443 got: ${body.trim()}`);
console.log(`demo: try it yourself:
  curl --cacert ${certFile} --resolve alpha.example.com:8443:127.0.0.1 https://alpha.example.com:8443/
  curl --cacert ${certFile} --resolve x.demo.example.com:8443:127.0.0.1 https://x.demo.example.com:8443/
  ${existsSync(binary) ? "dist/mc-proxy" : "bun run src/main.ts"} status -c examples/mc-proxy.toml       (admin API over examples/admin.sock)
  ${existsSync(binary) ? "dist/mc-proxy" : "bun run src/main.ts"} routes add -c examples/mc-proxy.toml beta.example.com 127.0.0.1:9443
demo: Ctrl-C stops the proxy (graceful drain) and the backend.`);
const code = await proxy.exited;
process.exit(code);
