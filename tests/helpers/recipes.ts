// The recipes of the docs, as data: every fenced block of a Markdown file
// with the marker before it, the commands of a shell block, a TOML fragment
// placed into a minimal config, and a grpcurl command line said as `buf curl`.
// Pure: tests/e2e/docs_recipes.test.ts runs what these return.
//
// Markers (an HTML comment on the last non-blank line before the fence):
//   <!-- recipe: not runnable — REASON -->   never run; the reason is required
//   <!-- recipe: fragment -->                TOML to place into a config (see withBase)
//   <!-- recipe: demo -->                    shell, run with README's demo running
//   <!-- recipe: admin over TCP -->          shell, run beside an admin API on 127.0.0.1:9090 (mTLS)
// A shell command whose own comment says "not run here" is not run (the
// prose around it says why). Anything else is run: TOML through `check`,
// shell commands against the packaged layout (/srv/mc-proxy).

export type Marker =
  | { kind: "none" }
  | { kind: "not runnable"; reason: string }
  | { kind: "fragment" }
  | { kind: "demo" }
  | { kind: "admin over TCP" };

export interface Recipe {
  file: string;
  /** 1-based line of the opening fence */
  line: number;
  lang: string;
  body: string;
  marker: Marker;
}

const MARKER = /^<!--\s*recipe:\s*(.*?)\s*-->$/;
const FENCE = /^(\s*)(```+|~~~+)\s*([\w+-]*)/;

export function parseMarker(text: string, where: string): Marker {
  const m = MARKER.exec(text.trim());
  if (m === null) return { kind: "none" };
  const v = m[1]!;
  const nr = /^not runnable\s*[—–:-]\s*(\S.*)$/.exec(v);
  if (nr !== null) return { kind: "not runnable", reason: nr[1]! };
  if (v === "fragment" || v === "demo" || v === "admin over TCP") return { kind: v };
  throw new Error(`${where}: unknown recipe marker "${v}" (a not-runnable one needs "— reason")`);
}

/** Every fenced block of `markdown`, with its marker. */
export function extractRecipes(file: string, markdown: string): Recipe[] {
  const lines = markdown.split("\n");
  const out: Recipe[] = [];
  let i = 0;
  while (i < lines.length) {
    const open = FENCE.exec(lines[i]!);
    if (open === null) {
      i++;
      continue;
    }
    const fence = open[2]!;
    const start = i;
    const body: string[] = [];
    i++;
    while (i < lines.length && !lines[i]!.trim().startsWith(fence)) body.push(lines[i++]!);
    if (i >= lines.length) throw new Error(`${file}:${start + 1}: fence never closed`);
    i++;
    let before = start - 1;
    while (before >= 0 && lines[before]!.trim() === "") before--;
    const marker = before >= 0 ? parseMarker(lines[before]!, `${file}:${before + 1}`) : { kind: "none" as const };
    const indent = open[1]!.length;
    out.push({
      file,
      line: start + 1,
      lang: open[3]!,
      body: body.map((l) => l.slice(Math.min(indent, l.length - l.trimStart().length))).join("\n"),
      marker,
    });
  }
  return out;
}

export interface ShellCommand {
  /** 1-based line within the block where the command starts */
  line: number;
  /** the command as the shell reads it, continuation lines joined, comment kept */
  text: string;
  /** its trailing comment, without "#" */
  comment: string;
  notRunHere: boolean;
}

/** The trailing comment of a shell line: the first `#` outside quotes that starts a word. */
export function splitComment(line: string): { code: string; comment: string } {
  let quote: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote !== null) {
      if (c === quote) quote = null;
      else if (c === "\\" && quote === '"') i++;
    } else if (c === "'" || c === '"') quote = c;
    else if (c === "\\") i++;
    else if (c === "#" && (i === 0 || /\s/.test(line[i - 1]!)))
      return { code: line.slice(0, i).trimEnd(), comment: line.slice(i + 1).trim() };
  }
  return { code: line.trimEnd(), comment: "" };
}

/**
 * The commands of a shell block: comment-only lines dropped, a line ending
 * in "\" joined with the next. A comment-only line right after a command
 * that is indented (README's tour) continues that command's comment.
 */
export function shellCommands(body: string): ShellCommand[] {
  const lines = body.split("\n");
  const out: ShellCommand[] = [];
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    if (raw.trim() === "") continue;
    const { code, comment } = splitComment(raw);
    if (code === "") {
      const last = out.at(-1);
      if (last !== undefined && /^\s+#/.test(raw)) last.comment = `${last.comment} ${comment}`.trim();
      continue;
    }
    const start = i;
    let text = code;
    const comments = [comment];
    while (text.endsWith("\\") && i + 1 < lines.length) {
      const next = splitComment(lines[++i]!);
      text = `${text.slice(0, -1).trimEnd()} ${next.code.trim()}`;
      comments.push(next.comment);
    }
    const all = comments.filter((c) => c !== "").join(" ");
    out.push({ line: start + 1, text, comment: all, notRunHere: /not run here/.test(all) });
  }
  return out;
}

/** Shell words of a simple command (quotes removed; no expansion). */
export function shellWords(text: string): string[] {
  const words: string[] = [];
  let cur: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unclosed ' in: ${text}`);
      cur = (cur ?? "") + text.slice(i + 1, end);
      i = end;
    } else if (c === '"') {
      let j = i + 1;
      let s = "";
      while (j < text.length && text[j] !== '"') {
        if (text[j] === "\\" && j + 1 < text.length) j++;
        s += text[j++];
      }
      if (j >= text.length) throw new Error(`unclosed " in: ${text}`);
      cur = (cur ?? "") + s;
      i = j;
    } else if (c === "\\" && i + 1 < text.length) cur = (cur ?? "") + text[++i];
    else if (/\s/.test(c)) {
      if (cur !== null) words.push(cur);
      cur = null;
    } else cur = (cur ?? "") + c;
  }
  if (cur !== null) words.push(cur);
  return words;
}

/**
 * A TOML fragment placed into a minimal config: route tables go under one
 * listener on `listenAddr`; top-level tables get that listener added when
 * they have none.
 */
export function withBase(fragment: string, listenAddr: string): string {
  const base = `[[listeners]]\naddr = "${listenAddr}"\n`;
  const first = /^\s*\[\[?([\w.]+)\]\]?/m.exec(fragment);
  if (first?.[1] === "listeners.routes") return `${base}${fragment}\n`;
  return /^\s*\[\[listeners\]\]/m.test(fragment) ? `${fragment}\n` : `${fragment}\n\n${base}`;
}

const GRPCURL_VALUE_FLAGS = new Set([
  "-cacert",
  "-cert",
  "-key",
  "-authority",
  "-servername",
  "-d",
  "-import-path",
  "-proto",
]);
const GRPCURL_BOOL_FLAGS = new Set(["-plaintext", "-unix", "-insecure"]);

/**
 * A grpcurl (1.8 / 1.9) command line said as `buf curl`, which speaks the same
 * gRPC and reflection protocols: `-plaintext` → http with HTTP/2 prior
 * knowledge, else https; `-unix` → `--unix-socket` (`:authority` localhost,
 * as grpcurl ≥ 1.9 sends, or `-authority`); `-servername` (or `-authority`
 * over TLS) → `--servername`; `list` → `--list-services`; `-import-path` /
 * `-proto` → `--schema` of that directory, without reflection.
 */
export function grpcurlAsBufCurl(args: string[]): string[] {
  const flags = new Map<string, string>();
  const bools = new Set<string>();
  const pos: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const flag = a.replace(/^--/, "-");
    if (GRPCURL_VALUE_FLAGS.has(flag)) {
      if (i + 1 >= args.length) throw new Error(`grpcurl: ${a} needs a value`);
      flags.set(flag, args[++i]!);
    } else if (GRPCURL_BOOL_FLAGS.has(flag)) bools.add(flag);
    else if (a.startsWith("-")) throw new Error(`grpcurl flag ${a} has no buf curl equivalent here`);
    else pos.push(a);
  }
  const [address, verb, ...rest] = pos;
  if (address === undefined || verb === undefined) throw new Error("grpcurl: an address and list or a method");
  const out = ["curl", "--protocol", "grpc"];
  const plaintext = bools.has("-plaintext");
  if (plaintext) out.push("--http2-prior-knowledge");
  if (bools.has("-insecure")) out.push("--insecure");
  for (const [g, b] of [
    ["-cacert", "--cacert"],
    ["-cert", "--cert"],
    ["-key", "--key"],
    ["-d", "-d"],
  ] as const) {
    const v = flags.get(g);
    if (v !== undefined) out.push(b, v);
  }
  let host = address;
  if (bools.has("-unix")) {
    out.push("--unix-socket", address);
    host = flags.get("-authority") ?? "localhost";
  } else if (!plaintext) {
    const name = flags.get("-servername") ?? flags.get("-authority");
    if (name !== undefined) out.push("--servername", name);
  }
  if (flags.has("-proto")) out.push("--schema", flags.get("-import-path") ?? ".", "--reflect=false");
  const base = `${plaintext ? "http" : "https"}://${host}`;
  if (verb === "list") {
    if (rest.length > 0) throw new Error("grpcurl list SERVICE: not translated");
    out.push("--list-services", base);
  } else if (verb === "describe") throw new Error("grpcurl describe: not translated");
  else {
    const slash = verb.includes("/") ? verb : verb.replace(/\.(\w+)$/, "/$1");
    out.push(`${base}/${slash}`);
  }
  return out;
}

const HOST_COMMANDS = /^(sudo|su|systemctl|sysctl|useradd|groupadd|podman|docker|apt|apt-get|apk|dnf|npm|npx|chown)$/;

/**
 * Why a command would change the machine it runs on (a service manager, a
 * package manager, a container, a path under /etc, /usr or /var), or null.
 * Such a command runs only where a block's marker or its own comment says
 * it is not run; the test refuses it otherwise.
 */
export function changesHost(text: string): string | null {
  for (const part of text.split(/\s*(?:&&|\|\||;|\|)\s*/)) {
    const word = part.trim().split(/\s+/)[0] ?? "";
    if (HOST_COMMANDS.test(word)) return `runs ${word}`;
  }
  const path = /(?:^|[\s>=:])(\/(?:etc|usr|var|lib|boot|proc\/sys)\/\S*)/.exec(text);
  return path === null ? null : `touches ${path[1]}`;
}
