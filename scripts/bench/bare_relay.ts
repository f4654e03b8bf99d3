// The runtime's floor for --breakdown: a bare Bun.listen / Bun.connect relay
// to one backend — no ClientHello parsing, firewall, timers, log or counters.
// What mc-proxy costs above this, in the same run, is ours.
// Usage: bun bare_relay.ts LISTEN_PORT BACKEND_PORT
import type { Socket } from "bun";

const [listenPort, backendPort] = [Number(process.argv[2]), Number(process.argv[3])];

interface Pair {
  peer: Socket<Pair> | null;
  pending: Uint8Array[];
}

Bun.listen<Pair>({
  hostname: "127.0.0.1",
  port: listenPort,
  allowHalfOpen: true,
  socket: {
    binaryType: "uint8array",
    open(client) {
      client.data = { peer: null, pending: [] };
      Bun.connect<Pair>({
        hostname: "127.0.0.1",
        port: backendPort,
        allowHalfOpen: true,
        data: { peer: client, pending: [] },
        socket: {
          binaryType: "uint8array",
          open(backend) {
            client.data.peer = backend;
            for (const c of client.data.pending) backend.write(c);
            client.data.pending = [];
          },
          data: (backend, chunk) => void backend.data.peer!.write(chunk),
          end: (backend) => void backend.data.peer!.end(),
          close: (backend) => void backend.data.peer!.end(),
          connectError: () => client.terminate(),
        },
      }).catch(() => {});
    },
    data(client, chunk) {
      if (client.data.peer === null) client.data.pending.push(chunk);
      else client.data.peer.write(chunk);
    },
    end: (client) => void client.data.peer?.end(),
    close: (client) => void client.data.peer?.end(),
  },
});
