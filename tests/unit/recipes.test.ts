// The docs' recipe extractor (tests/helpers/recipes.ts), fed Markdown and
// command lines: fences and their markers, shell commands and comments, TOML
// fragments, grpcurl said as buf curl.
import { describe, expect, test } from "bun:test";
import {
  changesHost,
  extractRecipes,
  grpcurlAsBufCurl,
  parseMarker,
  shellCommands,
  shellWords,
  splitComment,
  withBase,
} from "../helpers/recipes";

describe("extractRecipes", () => {
  test("every fence with its language, line, body and the marker on the last non-blank line before it", () => {
    const md = [
      "# T",
      "",
      "<!-- recipe: not runnable — needs systemd as PID 1 -->",
      "```sh",
      "systemctl reload mc-proxy",
      "```",
      "text",
      "<!-- recipe: fragment -->",
      "",
      "```toml",
      "  [[listeners.routes]]",
      '  hostname = "a"',
      "```",
      "```mermaid",
      "flowchart LR",
      "```",
    ].join("\n");
    const r = extractRecipes("X.md", md);
    expect(r.map((x) => [x.line, x.lang, x.marker.kind])).toEqual([
      [4, "sh", "not runnable"],
      [10, "toml", "fragment"],
      [14, "mermaid", "none"],
    ]);
    expect(r[0]!.marker).toEqual({ kind: "not runnable", reason: "needs systemd as PID 1" });
    expect(r[1]!.body).toBe('  [[listeners.routes]]\n  hostname = "a"');
  });

  test("a fence indented in a list item: its body loses that indent; a fence never closed is an error", () => {
    const r = extractRecipes("X.md", "1. step\n   ```sh\n   mc-proxy status\n   ```\n");
    expect(r[0]!.body).toBe("mc-proxy status");
    expect(() => extractRecipes("X.md", "```sh\nls\n")).toThrow("X.md:1: fence never closed");
  });

  test("markers: the four kinds; a not-runnable one without a reason, or an unknown one, is refused", () => {
    expect(parseMarker("<!-- recipe: not runnable - no registry -->", "w")).toEqual({
      kind: "not runnable",
      reason: "no registry",
    });
    expect(parseMarker("<!-- recipe: demo -->", "w").kind).toBe("demo");
    expect(parseMarker("<!-- recipe: admin over TCP -->", "w").kind).toBe("admin over TCP");
    expect(parseMarker("<!-- other comment -->", "w").kind).toBe("none");
    expect(() => parseMarker("<!-- recipe: not runnable -->", "F.md:3")).toThrow("F.md:3: unknown recipe marker");
    expect(() => parseMarker("<!-- recipe: fragmnet -->", "F.md:3")).toThrow('"fragmnet"');
  });
});

describe("shell commands", () => {
  test("comments split off outside quotes only; # inside a word is kept", () => {
    expect(splitComment("mc-proxy check -c f   # exit 1")).toEqual({ code: "mc-proxy check -c f", comment: "exit 1" });
    expect(splitComment("echo '# not a comment' a#b")).toEqual({ code: "echo '# not a comment' a#b", comment: "" });
    expect(splitComment('printf "x # y"  # z')).toEqual({ code: 'printf "x # y"', comment: "z" });
  });

  test("continuations joined, comment lines dropped, an indented comment line continues the command's comment, 'not run here' marks a line", () => {
    const body = [
      "# heading comment",
      "grpcurl -cacert ca.pem \\",
      "  -d '{\"a\": 1}' \\",
      "  127.0.0.1:9090 svc/M",
      "curl -sk https://x/",
      "                   # reset: no route",
      "useradd --system mc-proxy   # not run here",
    ].join("\n");
    const c = shellCommands(body);
    expect(c.map((x) => [x.line, x.text, x.comment, x.notRunHere])).toEqual([
      [2, "grpcurl -cacert ca.pem -d '{\"a\": 1}' 127.0.0.1:9090 svc/M", "", false],
      [5, "curl -sk https://x/", "reset: no route", false],
      [7, "useradd --system mc-proxy", "not run here", true],
    ]);
  });

  test("shellWords: quotes removed, escapes kept literal", () => {
    expect(shellWords(`a 'b c' "d \\"e\\"" f\\ g`)).toEqual(["a", "b c", 'd "e"', "f g"]);
    expect(() => shellWords("a 'b")).toThrow("unclosed '");
  });
});

describe("withBase", () => {
  test("route tables go under one listener; top-level tables get the listener when they have none", () => {
    const routes = '  [[listeners.routes]]\n  hostname = "a"\n  backend = "127.0.0.1:1"';
    expect(withBase(routes, "127.0.0.1:8443")).toBe(`[[listeners]]\naddr = "127.0.0.1:8443"\n${routes}\n`);
    expect(withBase('[grpc]\naddr = "unix:a.sock"', "127.0.0.1:8443")).toBe(
      '[grpc]\naddr = "unix:a.sock"\n\n[[listeners]]\naddr = "127.0.0.1:8443"\n',
    );
    const full = '[store]\nbackend = "sqlite"\n[[listeners]]\naddr = ":443"';
    expect(withBase(full, "127.0.0.1:8443")).toBe(`${full}\n`);
  });
});

describe("grpcurl as buf curl", () => {
  test("TCP with mTLS: https, the three files, the method as the URL path", () => {
    expect(
      grpcurlAsBufCurl([
        "-cacert",
        "ca.pem",
        "-cert",
        "admin.pem",
        "-key",
        "admin.key",
        "-d",
        "{}",
        "127.0.0.1:9090",
        "mc_proxy.v1.ProxyAdminService/GetStatus",
      ]),
    ).toEqual([
      "curl",
      "--protocol",
      "grpc",
      "--cacert",
      "ca.pem",
      "--cert",
      "admin.pem",
      "--key",
      "admin.key",
      "-d",
      "{}",
      "https://127.0.0.1:9090/mc_proxy.v1.ProxyAdminService/GetStatus",
    ]);
  });

  test("a unix socket: plaintext HTTP/2, :authority localhost unless -authority says otherwise; list → --list-services", () => {
    expect(grpcurlAsBufCurl(["-plaintext", "-unix", "/srv/mc-proxy/admin.sock", "list"])).toEqual([
      "curl",
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      "--unix-socket",
      "/srv/mc-proxy/admin.sock",
      "--list-services",
      "http://localhost",
    ]);
    expect(grpcurlAsBufCurl(["-plaintext", "-unix", "-authority", "a.b", "/s.sock", "svc.M"]).at(-1)).toBe(
      "http://a.b/svc/M",
    );
  });

  test("-servername (or -authority over TLS) → --servername; -import-path / -proto → --schema without reflection", () => {
    const a = grpcurlAsBufCurl(["-servername", "admin.internal", "-cacert", "c", "10.0.0.1:9090", "list"]);
    expect(a).toContain("--servername");
    expect(a[a.indexOf("--servername") + 1]).toBe("admin.internal");
    const b = grpcurlAsBufCurl(["-import-path", "proto", "-proto", "x.proto", "h:1", "s/M"]);
    expect(b.slice(-4)).toEqual(["--schema", "proto", "--reflect=false", "https://h:1/s/M"]);
  });

  test("what it cannot say is refused, never guessed", () => {
    expect(() => grpcurlAsBufCurl(["-H", "x: y", "h:1", "list"])).toThrow("-H has no buf curl equivalent");
    expect(() => grpcurlAsBufCurl(["h:1", "describe"])).toThrow("describe");
    expect(() => grpcurlAsBufCurl(["h:1"])).toThrow("an address and list or a method");
  });
});

describe("changesHost", () => {
  test("service and package managers, containers and system paths are named; the CLI against a test directory is not", () => {
    expect(changesHost("systemctl reload mc-proxy")).toBe("runs systemctl");
    expect(changesHost("npm install -g bun@1.4.4 && bun run build")).toBe("runs npm");
    expect(changesHost("echo x=1 > /etc/sysctl.d/60-mc-proxy.conf && sysctl --system")).toBe("runs sysctl");
    expect(changesHost("install -m 0755 mc-proxy-NEW /usr/local/bin/mc-proxy")).toBe("touches /usr/local/bin/mc-proxy");
    expect(changesHost("mc-proxy status -c /tmp/x/mc-proxy.toml")).toBeNull();
    expect(changesHost("grpcurl -plaintext -unix /tmp/x/admin.sock list")).toBeNull();
  });
});
