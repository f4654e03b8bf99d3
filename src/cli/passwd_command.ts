// `mc-proxy passwd`: a dashboard password's hash for [[dashboard.users]]
// password_hash (docs/DASHBOARD.md "Set-up"): one line read from stdin,
// argon2id (Bun.password), printed on stdout. Nothing else is read or written.
import { MAX_PASSWORD_BYTES } from "../dashboard/users";
import { UsageError, help, parseArgs } from "./args";

export const PASSWD_USAGE = `Usage: mc-proxy passwd < FILE

Reads a password (one line) on stdin and prints its argon2id hash, for
password_hash in a [[dashboard.users]] table (docs/DASHBOARD.md). An empty
password, or one over ${MAX_PASSWORD_BYTES} bytes, is refused (exit 1).
Example: printf '%s\\n' "$PASSWORD" | mc-proxy passwd`;

/** The first line of `input` (without its line ending), or the whole when it has none. */
export function firstLine(input: string): string {
  const nl = input.indexOf("\n");
  const line = nl < 0 ? input : input.slice(0, nl);
  return line.endsWith("\r") ? line.slice(0, -1) : line;
}

/** Stdin up to its first newline (or its end), at most `max` bytes and a bit. */
async function readLine(max: number): Promise<string> {
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const chunk of Bun.stdin.stream()) {
    chunks.push(chunk);
    n += chunk.length;
    if (chunk.includes(0x0a) || n > max + 2) break;
  }
  return firstLine(Buffer.concat(chunks).toString("utf8"));
}

export async function passwd(args: string[]): Promise<number> {
  const a = parseArgs(args, PASSWD_USAGE);
  if (a.help) return help(PASSWD_USAGE);
  if (a.rest.length > 0 || a.config !== null)
    throw new UsageError(`unexpected argument ${a.rest[0] ?? "-c"}`, PASSWD_USAGE);
  if (process.stdin.isTTY) process.stderr.write("password (shown as typed; end with Enter): ");
  const pw = await readLine(MAX_PASSWORD_BYTES);
  if (pw === "") {
    console.error("mc-proxy: passwd: empty password refused");
    return 1;
  }
  if (Buffer.byteLength(pw) > MAX_PASSWORD_BYTES) {
    console.error(`mc-proxy: passwd: password over ${MAX_PASSWORD_BYTES} bytes refused`);
    return 1;
  }
  console.log(await Bun.password.hash(pw, "argon2id"));
  return 0;
}
