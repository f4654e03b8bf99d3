// The Markdown documents' references hold: every relative link points to a
// file that exists, and a link's #anchor to a heading of that file (GitHub's
// anchor for a heading: lower case, punctuation dropped, spaces to hyphens,
// "-1", "-2" for repeats); every test tag ("[e2e/takeover]", "[unit/store,
// e2e/fleet]") names a test file. The README stays a front page.
import { expect, test } from "bun:test";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../..");

const PAGES = readdirSync(join(ROOT, "docs")).filter((f) => f.endsWith(".md"));
const DOCUMENTS = ["README.md", "RUNBOOK.md", "CHANGELOG.md", ...PAGES.map((f) => `docs/${f}`)];

/** The text outside fenced code blocks, with inline code spans blanked (a link is not read there). */
function prose(markdown: string): string[] {
  const lines: string[] = [];
  let fence: string | null = null;
  for (const line of markdown.split("\n")) {
    const m = /^\s*(`{3,}|~{3,})/.exec(line);
    if (m !== null) {
      if (fence === null) fence = m[1]!;
      else if (m[1]!.startsWith(fence)) fence = null;
      lines.push("");
      continue;
    }
    lines.push(fence === null ? line.replace(/`[^`]*`/g, (c) => (c.includes("](") ? "``" : c)) : "");
  }
  return lines;
}

/** GitHub's anchors for a document's headings. */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  let fence = false;
  for (const line of markdown.split("\n")) {
    if (/^\s*(`{3,}|~{3,})/.test(line)) fence = !fence;
    const h = fence ? null : /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (h === null) continue;
    const text = h[1]!.replace(/\[([^\]]*)\]\([^)]*\)/g, "$1");
    const slug = text
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, "")
      .replace(/\s/g, "-");
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return out;
}

interface Link {
  readonly file: string;
  readonly line: number;
  readonly target: string;
}

function relativeLinks(file: string): Link[] {
  const out: Link[] = [];
  prose(readFileSync(join(ROOT, file), "utf8")).forEach((text, i) => {
    for (const m of text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      const target = m[1]!;
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto: …
      out.push({ file, line: i + 1, target });
    }
  });
  return out;
}

test("the documents are found", () => {
  const some = ["README.md", "RUNBOOK.md", "docs/ARCHITECTURE.md", "docs/CONFIGURATION.md"];
  for (const f of some) expect(DOCUMENTS).toContain(f);
});

test("every relative link in README, RUNBOOK, CHANGELOG and docs/*.md names an existing file and heading", () => {
  const broken: string[] = [];
  let checked = 0;
  for (const doc of DOCUMENTS) {
    for (const l of relativeLinks(doc)) {
      checked++;
      const hash = l.target.indexOf("#");
      const path = hash < 0 ? l.target : l.target.slice(0, hash);
      const anchor = hash < 0 ? null : decodeURIComponent(l.target.slice(hash + 1));
      const here = join(ROOT, doc);
      const abs = path === "" ? here : resolve(dirname(here), decodeURIComponent(path));
      const where = `${l.file}:${l.line}: ${l.target}`;
      if (!existsSync(abs)) {
        broken.push(`${where}: no file ${relative(ROOT, abs)}`);
        continue;
      }
      if (anchor === null) continue;
      if (statSync(abs).isDirectory() || !abs.endsWith(".md")) {
        broken.push(`${where}: an anchor into a file that is not Markdown`);
        continue;
      }
      if (anchors(readFileSync(abs, "utf8")).has(anchor)) continue;
      broken.push(`${where}: no heading #${anchor} in ${relative(ROOT, abs)}`);
    }
  }
  expect(broken).toEqual([]);
  expect(checked).toBeGreaterThan(20);
});

test("anchors are GitHub's", () => {
  const headings = ["# Reload and upgrade: takeover", "## 3. Upgrade and rollback [e2e/takeover]", "## HTTP/3 (QUIC)"];
  const doc = [...headings, "## A", "## A"].join("\n");
  const want = ["reload-and-upgrade-takeover", "3-upgrade-and-rollback-e2etakeover", "http3-quic", "a", "a-1"];
  expect([...anchors(doc)]).toEqual(want);
  expect(anchors("```\n# not a heading\n```\n").size).toBe(0);
});

/** A test tag: "[e2e/takeover]", "[unit/store, e2e/fleet]". */
const TAGS = /\[((?:e2e|unit|platform)\/[a-z0-9_]+(?:, (?:e2e|unit|platform)\/[a-z0-9_]+)*)\]/g;

test("every test tag in the documents names a test file", () => {
  const missing: string[] = [];
  let tags = 0;
  for (const doc of DOCUMENTS) {
    const text = readFileSync(join(ROOT, doc), "utf8");
    for (const m of text.matchAll(TAGS)) {
      for (const tag of m[1]!.split(", ")) {
        tags++;
        const file = `tests/${tag}.test.ts`;
        if (!existsSync(join(ROOT, file))) missing.push(`${doc}: [${tag}]: no ${file}`);
      }
    }
  }
  expect(missing).toEqual([]);
  expect(tags).toBeGreaterThan(10);
});

/** Where code, scripts, tests and packaging cite the documents, and which of their files are text. */
const CITING = ["src", "scripts", "tests", "examples", "Containerfile", "Containerfile.release", ".ci"];
const TEXT = /(\.(ts|toml|yml|service|timer|sh)|Containerfile.*|run)$/;
/** A document, and the section it names in quotes if any: `docs/TAKEOVER.md`, `README "Quick start"`. */
const CITATION = /\b(docs\/[A-Za-z0-9_-]+\.md|README(?:\.md)?|RUNBOOK(?:\.md)?)(?::? "([^"]{1,120})")?/g;

function citingFiles(path: string): string[] {
  const abs = join(ROOT, path);
  if (!statSync(abs).isDirectory()) return [path];
  if (path === "tests/fixtures") return [];
  return readdirSync(abs).flatMap((name) => citingFiles(`${path}/${name}`));
}

/** A quoted section, whatever comment markers and line breaks are inside it, in a document's own words. */
function words(text: string): string {
  return text
    .replace(/\n\s*(?:\/\/|\*|#)?/g, " ")
    .replace(/\s+/g, " ")
    .trim()
    .toLowerCase();
}

test("every document the code cites exists, and a section it names in quotes is in it", () => {
  const stale: string[] = [];
  let cited = 0;
  const files = CITING.flatMap(citingFiles).filter((f) => TEXT.test(f));
  for (const file of files) {
    const text = readFileSync(join(ROOT, file), "utf8");
    for (const m of text.matchAll(CITATION)) {
      const doc = m[1]!.endsWith(".md") ? m[1]! : `${m[1]}.md`;
      const section = m[2];
      cited++;
      const where = `${file}: ${m[0].replace(/\s+/g, " ")}`;
      if (!existsSync(join(ROOT, doc))) {
        stale.push(`${where}: no ${doc}`);
        continue;
      }
      if (section === undefined || words(readFileSync(join(ROOT, doc), "utf8")).includes(words(section))) continue;
      stale.push(`${where}: no "${words(section)}" in ${doc}`);
    }
  }
  expect(stale).toEqual([]);
  expect(cited).toBeGreaterThan(20);
});

test("the README is a front page: at most 200 lines, the reference is in docs/", () => {
  const lines = readFileSync(join(ROOT, "README.md"), "utf8").split("\n").length;
  expect(lines).toBeLessThanOrEqual(200);
});
