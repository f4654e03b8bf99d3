import { expect, test } from "bun:test";
import {
  type FdNeeds,
  MIN_NEEDS,
  capacityWarning,
  connectionCap,
  parseProcLimits,
  reservedFds,
} from "../../src/server/host_limits";

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;

test("parses the open-files line of /proc/self/limits", () => {
  expect(parseProcLimits(LIMITS)).toEqual({ soft: 1024, hard: 524288 });
  expect(parseProcLimits(LIMITS.replace("1024                 524288", "unlimited            unlimited"))).toEqual({
    soft: Number.POSITIVE_INFINITY,
    hard: Number.POSITIVE_INFINITY,
  });
  expect(parseProcLimits("garbage")).toBeNull();
});

test("the connection cap is (soft - reserve) / 2, at least 1, none when unknown or unlimited; the reserve follows the config", () => {
  // Minimal: 16 + 1 loop × (1 listener + 6) = 23.
  expect(reservedFds(MIN_NEEDS, 256)).toBe(23);
  expect(connectionCap({ soft: 256, hard: 256 })).toBe(116);
  expect(connectionCap({ soft: 1024, hard: 4096 })).toBe(500);
  expect(connectionCap({ soft: 20, hard: 20 })).toBe(1);
  expect(connectionCap(null)).toBe(0);
  expect(connectionCap({ soft: Number.POSITIVE_INFINITY, hard: Number.POSITIVE_INFINITY })).toBe(0);
  // Two workers, three listeners, admin, metrics, GeoIP, etcd, 6 checked backends, pools that retry:
  const big: FdNeeds = {
    loops: 2,
    listeners: 3,
    quicListeners: 0,
    healthTargets: 6,
    admin: true,
    metrics: true,
    geoip: true,
    etcd: true,
    retries: true,
  };
  const fixed = 16 + 1 + 10 + 6 + 8 + 2 * (3 + 6) + 6;
  expect(reservedFds(big, 4096)).toBe(fixed + Math.ceil((4096 - fixed) / 33));
  expect(connectionCap({ soft: 4096, hard: 4096 }, big)).toBe(Math.floor((4096 - reservedFds(big, 4096)) / 2));
});

test("QUIC listeners: one UDP socket each, in the first event loop only; their flows take places of the cap like connections", () => {
  const tcp: FdNeeds = { ...MIN_NEEDS, loops: 4, listeners: 2 };
  const both: FdNeeds = { ...tcp, quicListeners: 2 };
  expect(reservedFds(both, 1024)).toBe(reservedFds(tcp, 1024) + 2);
  expect(reservedFds(both, 1024)).toBe(16 + 4 * (2 + 6) + 2);
  expect(connectionCap({ soft: 1024, hard: 1024 }, both)).toBe(Math.floor((1024 - 50) / 2));
});

test("warns when the listeners' max_connections cannot fit in the limit, naming both numbers", () => {
  expect(capacityWarning([40, 50], { soft: 256, hard: 256 })).toBeNull();
  const w = capacityWarning([100, 0, 50], { soft: 256, hard: 256 });
  expect(w).toContain("add up to 150");
  expect(w).toContain("open-file limit is 256");
  expect(w).toContain("at most 116 connections");
  expect(capacityWarning([0], { soft: 256, hard: 256 })).toBeNull();
  expect(capacityWarning([1_000_000], null)).toBeNull();
});
