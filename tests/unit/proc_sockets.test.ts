// The /proc socket tables (src/net/proc_sockets.ts), fed lines as this
// kernel writes them (seen on this machine: Linux x86-64, little-endian).
import { describe, expect, test } from "bun:test";
import { parseProcNetInet, parseProcNetUnix, socketInode, socketsOn, unixSocketsAt } from "../../src/net/proc_sockets";

const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   2: 0100007F:5BA0 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 66539 1 000000005e34809c 100 0 0 10 0
   3: 00000000:01BB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 70001 1 000000005e34809c 100 0 0 10 0
   4: 0100007F:5BA0 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 70002 1 000000005e34809c 20 4 30 10 -1
`;

const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:5BA2 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 175318 1 00000000c55ba8ba 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:5BA3 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 175319 1 0000000059c16193 100 0 0 10 0
   2: 00000000000000000000000001000000:5BA1 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 175317 1 00000000cccfd4ed 100 0 0 10 0
`;

const UDP = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
14439: 0100007F:5BA4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 175320 2 000000002b2aba27 0
`;

const UNIX = `Num       RefCount Protocol Flags    Type St Inode Path
000000005ea8f747: 00000002 00000000 00010000 0001 01 66536 rel.sock
00000000690716cd: 00000002 00000000 00010000 0001 01 66537 /srv/mc-proxy/admin.sock
000000004dc707ca: 00000003 00000000 00000000 0001 03 66538 /srv/mc-proxy/admin.sock
0000000011111111: 00000002 00000000 00000000 0002 01 66539
0000000022222222: 00000002 00000000 00010000 0001 01 66540 @abstract
0000000033333333: 00000002 00000000 00010000 0001 01 66541 /tmp/a dir/with space.sock
`;

describe("/proc/net/tcp, tcp6, udp", () => {
  test("local address (each 32-bit word little-endian), port, state and inode; the header and connected sockets too", () => {
    expect(parseProcNetInet(TCP, null, true)).toEqual([
      { ip: "127.0.0.1", port: 23456, state: 0x0a, inode: 66539 },
      { ip: "0.0.0.0", port: 443, state: 0x0a, inode: 70001 },
      { ip: "127.0.0.1", port: 23456, state: 0x01, inode: 70002 },
    ]);
  });

  test("IPv6: the wildcard, ::1, and an IPv4-mapped address read as IPv4", () => {
    expect(parseProcNetInet(TCP6, null, true)).toEqual([
      { ip: "::", port: 23458, state: 0x0a, inode: 175318 },
      { ip: "127.0.0.1", port: 23459, state: 0x0a, inode: 175319 },
      { ip: "::1", port: 23457, state: 0x0a, inode: 175317 },
    ]);
  });

  test("UDP: an unconnected socket is state 7", () => {
    expect(parseProcNetInet(UDP, null, true)).toEqual([{ ip: "127.0.0.1", port: 23460, state: 7, inode: 175320 }]);
  });

  test("a big-endian host writes each word in network order", () => {
    expect(parseProcNetInet("   0: 7F000001:01BB 00000000:0000 0A 0:0 0:0 0 0 0 42 1\n", null, false)).toEqual([
      { ip: "127.0.0.1", port: 443, state: 0x0a, inode: 42 },
    ]);
  });

  test("with ports, only the sockets on them", () => {
    expect(parseProcNetInet(TCP, new Set([443]), true)).toEqual([
      { ip: "0.0.0.0", port: 443, state: 0x0a, inode: 70001 },
    ]);
    expect(parseProcNetInet(TCP6, new Set([1, 2]), true)).toEqual([]);
  });

  test("lines that are not sockets are skipped", () => {
    expect(parseProcNetInet("garbage\n  0: XYZ:01BB 0 0A a b c d e 1\n\n", null, true)).toEqual([]);
  });

  test("socketsOn: the same port and address, or either side the wildcard; a host name matches every address", () => {
    const all = [...parseProcNetInet(TCP, null, true), ...parseProcNetInet(TCP6, null, true)];
    expect(socketsOn(all, "127.0.0.1", 23456).map((s) => s.inode)).toEqual([66539, 70002]);
    expect(socketsOn(all, "10.0.0.1", 23456)).toEqual([]);
    expect(socketsOn(all, "10.0.0.1", 443).map((s) => s.inode)).toEqual([70001]);
    expect(socketsOn(all, "", 23457).map((s) => s.inode)).toEqual([175317]);
    expect(socketsOn(all, "::ffff:127.0.0.1", 23459).map((s) => s.inode)).toEqual([175319]);
    expect(socketsOn(all, "localhost", 23457).map((s) => s.inode)).toEqual([175317]);
    expect(socketsOn(all, "[::1]", 23457)).toHaveLength(1);
  });
});

describe("/proc/net/unix and /proc/PID/fd", () => {
  test("flags (listening), inode and path as bound; unnamed and abstract sockets have no path; a path may hold spaces", () => {
    expect(parseProcNetUnix(UNIX)).toEqual([
      { inode: 66536, listening: true, path: "rel.sock" },
      { inode: 66537, listening: true, path: "/srv/mc-proxy/admin.sock" },
      { inode: 66538, listening: false, path: "/srv/mc-proxy/admin.sock" },
      { inode: 66539, listening: false, path: null },
      { inode: 66540, listening: true, path: null },
      { inode: 66541, listening: true, path: "/tmp/a dir/with space.sock" },
    ]);
  });

  test("unixSocketsAt: listening sockets at the path, a relative bind read from the binder's working directory", () => {
    const e = parseProcNetUnix(UNIX);
    expect(unixSocketsAt(e, "/srv/mc-proxy/admin.sock", "/").map((x) => x.inode)).toEqual([66537]);
    expect(unixSocketsAt(e, "/srv/mc-proxy/rel.sock", "/srv/mc-proxy").map((x) => x.inode)).toEqual([66536]);
    expect(unixSocketsAt(e, "/srv/mc-proxy/rel.sock", "/home")).toEqual([]);
  });

  test("socketInode reads socket:[N] links only", () => {
    expect(socketInode("socket:[66539]")).toBe(66539);
    expect(socketInode("pipe:[1]")).toBeNull();
    expect(socketInode("/dev/null")).toBeNull();
    expect(socketInode("socket:[]")).toBeNull();
  });
});
