// A fleet member's watch comes back within about a second of etcd's return,
// however long etcd was away (the compiled binary, a real etcd): etcd3's own
// watch backoff grows to 30 s, and after an outage of a few seconds a member
// stayed behind the fleet for several more (store/etcd_client.ts).
import { expect, test } from "bun:test";
import { Etcd3 } from "etcd3";
import { named } from "../helpers/backends";
import { EtcdCluster, etcdMissing, v1RouteValue } from "../helpers/etcd";
import { helloFor } from "../helpers/hello_builder";
import { freePort, rawExchange, sleep } from "../helpers/net";
import { startProxy, tempDir } from "../helpers/proxy";
import { fleetToml } from "../helpers/toml";

test("after 8 s without etcd, a watching member applies a change made when etcd returns within 2 s", async () => {
  const skip = etcdMissing();
  if (skip !== null) return void console.warn(`SKIP fleet reconnect test: ${skip}`);
  const etcd = new EtcdCluster(1);
  await etcd.startAll();
  const be = named("back");
  const port = freePort();
  const proxy = await startProxy("binary", fleetToml(etcd.endpoints, "/mc-reconnect/", port, { workers: 1 }), {
    dir: tempDir(),
  });
  let client: Etcd3 | null = null;
  try {
    await etcd.stopAll();
    await sleep(8000);
    for (const m of etcd.members) etcd.start(m, "existing");
    await etcd.ready();
    client = new Etcd3({ hosts: etcd.endpoints });
    await client.put("/mc-reconnect/routes/public/late.example.com").value(v1RouteValue(`127.0.0.1:${be.port}`));
    const t0 = Date.now();
    let got = "";
    while (Date.now() - t0 < 10_000 && got !== "back") {
      got = (await rawExchange(port, helloFor("late.example.com"), { timeoutMs: 200 })).received.toString();
      if (got !== "back") await sleep(50);
    }
    expect({ got, within2s: Date.now() - t0 < 2000 }).toEqual({ got: "back", within2s: true });
  } finally {
    client?.close();
    await proxy.stop();
    be.stop();
    await etcd.stopAll();
  }
}, 60_000);
