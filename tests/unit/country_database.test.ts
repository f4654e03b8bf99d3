import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { CountryDatabase } from "../../src/firewall/country_database";
import { writeMmdb } from "../helpers/mmdb_writer";
import { tempDir } from "../helpers/proxy";

test("reads both GeoLite2 (country.iso_code) and ip-location-db (country_code) records", () => {
  const dir = tempDir();
  const file = join(dir, "t.mmdb");
  writeFileSync(
    file,
    writeMmdb([
      { cidr: "127.0.0.5/32", record: { country: { iso_code: "KP" } } },
      { cidr: "127.0.0.6/32", record: { country_code: "AU" } },
      { cidr: "10.1.0.0/16", record: { country: { iso_code: "FR", names: { en: "France" } } } },
    ]),
  );
  const db = CountryDatabase.open(file);
  expect(db.country("127.0.0.5")).toBe("KP");
  expect(db.country("127.0.0.6")).toBe("AU");
  expect(db.country("10.1.200.3")).toBe("FR");
  expect(db.country("127.0.0.7")).toBeNull();
  expect(db.country("2001:db8::1")).toBeNull();
});

test("a missing or corrupt file is an error naming the path", () => {
  const dir = tempDir();
  expect(() => CountryDatabase.open(join(dir, "nope.mmdb"))).toThrow(/nope\.mmdb/);
  writeFileSync(join(dir, "bad.mmdb"), "not a database");
  expect(() => CountryDatabase.open(join(dir, "bad.mmdb"))).toThrow(/bad\.mmdb/);
});
