// The dashboard's accounts (src/dashboard/users.ts) and `mc-proxy passwd`'s
// line reading: argon2id hashes as Bun.password makes them, a wrong password,
// an unknown name and an empty or oversized password refused.
import { describe, expect, test } from "bun:test";
import { firstLine } from "../../src/cli/passwd_command";
import { MAX_PASSWORD_BYTES, Users } from "../../src/dashboard/users";

describe("Users", () => {
  test("verify: the right password gives the user and role; a wrong one, an unknown name, an empty or oversized password null", async () => {
    const hash = await Bun.password.hash("s3cret pass", "argon2id");
    const users = new Users([
      { name: "alice", role: "operator", passwordHash: hash },
      { name: "rita", role: "reader", passwordHash: hash },
    ]);
    expect(await users.verify("alice", "s3cret pass")).toEqual({ name: "alice", role: "operator", passwordHash: hash });
    expect((await users.verify("rita", "s3cret pass"))?.role).toBe("reader");
    expect(await users.verify("alice", "s3cret pas")).toBeNull();
    expect(await users.verify("mallory", "s3cret pass")).toBeNull();
    expect(await users.verify("alice", "")).toBeNull();
    expect(await users.verify("alice", "x".repeat(MAX_PASSWORD_BYTES + 1))).toBeNull();
  });

  test("a hash Bun cannot read is a refusal, not a throw", async () => {
    const users = new Users([{ name: "a", role: "admin", passwordHash: "$argon2id$v=19$m=1,t=1,p=1$AAAA$BBBB" }]);
    expect(await users.verify("a", "anything")).toBeNull();
  });
});

describe("mc-proxy passwd reads one line", () => {
  test("the first line without its line ending; a text without one whole", () => {
    expect(firstLine("pw\nrest\n")).toBe("pw");
    expect(firstLine("pw\r\n")).toBe("pw");
    expect(firstLine("pw")).toBe("pw");
    expect(firstLine("\n")).toBe("");
    expect(firstLine("  spaced  \n")).toBe("  spaced  ");
  });
});
