// mc_proxy_backend_up (docs/METRICS_AND_LOGS.md "Metrics"): one sample per
// listener, route and backend of the tables in force, read from the shared
// backend table at scrape time — HAProxy's haproxy_server_status, as 1 or 0.
// Every backend is exported, checked or not: 1 until health takes it down
// (`fall` failed active checks, or `fall` failed connects — passive health,
// which counts with health_check = "off" too), 1 again once it is up. The
// operator's drain / disable is not health and does not change it. The series
// are the operator's routes × backends, never anything a client sends.

import type { BackendHealth, SlotRef } from "../routing/backend_table";

/** What the samples are read from: each listener with routes of its own, its pools, the backend table. */
export interface BackendTables {
  readonly listeners: readonly {
    readonly label: string;
    readonly table: {
      pools(): readonly {
        readonly name: string;
        readonly size: number;
        addr(i: number): string;
        ref(i: number): SlotRef;
      }[];
    };
  }[];
  readonly backends: { health(r: SlotRef): Pick<BackendHealth, "up"> };
}

export interface BackendUpSample {
  labels: { listener: string; route: string; backend: string };
  value: 0 | 1;
}

/** Every backend of every route (the default route's as `_default`), 1 up or 0 down. */
export function backendUpSamples(t: BackendTables): BackendUpSample[] {
  const out: BackendUpSample[] = [];
  for (const l of t.listeners)
    for (const p of l.table.pools())
      for (let i = 0; i < p.size; i++)
        out.push({
          labels: { listener: l.label, route: p.name, backend: p.addr(i) },
          value: t.backends.health(p.ref(i)).up ? 1 : 0,
        });
  return out;
}
