// The bench's mc-proxy+dashboard viewers (docs/BENCHMARKS.md): N users
// logged in to the dashboard (POST /login, the mcp_session cookie), each
// reading its live stream (GET /api/events, one `event: state` a second,
// docs/DASHBOARD.md "The HTTP API") for the whole measurement, as N open
// pages would: every event is read and its JSON parsed; a stream the server
// ends is opened again a second later, as EventSource does (counted, and
// reported with the run). Bounded: a login waits at most LOGIN_MS, an event
// may not exceed MAX_EVENT_BYTES, a viewer reconnects at most MAX_RECONNECTS
// times, and stop() ends every stream.

/** The bench's dashboard user (role reader: the viewers only look). */
export const DASHBOARD_USER = "bench";
export const DASHBOARD_PASSWORD = "bench-dashboard-password";
/** Viewers subscribed during every mc-proxy+dashboard measurement. */
export const DASHBOARD_VIEWERS = 10;

const LOGIN_MS = 15_000;
/** Far above a state document (a few kB, up to ~100 kB with 15 minutes of history). */
const MAX_EVENT_BYTES = 8 * 1024 * 1024;
const MAX_RECONNECTS = 100;
const RECONNECT_MS = 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Log in once; the session cookie's value. Retries while the dashboard is not yet listening. */
async function login(base: string): Promise<string> {
  const end = Date.now() + LOGIN_MS;
  for (;;) {
    const r = await fetch(`${base}/login`, {
      method: "POST",
      redirect: "manual",
      body: new URLSearchParams({ name: DASHBOARD_USER, password: DASHBOARD_PASSWORD }),
    }).catch((e: Error) => e);
    if (!(r instanceof Error)) {
      const cookie = /mcp_session=([^;]+)/.exec(r.headers.get("set-cookie") ?? "");
      if (r.status !== 303 || r.headers.get("location") !== "/" || cookie === null)
        throw new Error(`dashboard login: ${r.status} ${r.headers.get("location")} (expected 303 to / with a cookie)`);
      return cookie[1]!;
    }
    if (Date.now() > end) throw new Error(`dashboard login: nothing answered at ${base} after ${LOGIN_MS} ms`);
    await sleep(100);
  }
}

/** One logged-in page reading its event stream until stopped. */
class Viewer {
  events = 0;
  bytes = 0;
  /** Streams the server ended that were opened again, and why the last one ended. */
  reconnects = 0;
  lastEnd = "";
  /** Why the stream ended before stop(), or null. */
  failure: string | null = null;
  private readonly abort = new AbortController();
  private readonly done: Promise<void>;
  private firstEvent!: () => void;
  readonly first = new Promise<void>((r) => {
    this.firstEvent = r;
  });

  constructor(base: string, cookie: string) {
    this.done = this.run(base, cookie);
  }

  private async run(base: string, cookie: string): Promise<void> {
    for (;;) {
      try {
        await this.read(base, cookie);
      } catch (e) {
        if (this.abort.signal.aborted) return;
        this.lastEnd = (e as Error).message;
        if (this.events === 0 || this.reconnects >= MAX_RECONNECTS) {
          this.failure = this.lastEnd;
          this.firstEvent();
          return;
        }
      }
      this.reconnects++;
      await sleep(RECONNECT_MS);
      if (this.abort.signal.aborted) return;
    }
  }

  private async read(base: string, cookie: string): Promise<void> {
    const r = await fetch(`${base}/api/events`, {
      headers: { Cookie: `mcp_session=${cookie}`, Accept: "text/event-stream" },
      signal: this.abort.signal,
    });
    if (r.status !== 200 || !r.headers.get("content-type")?.startsWith("text/event-stream"))
      throw new Error(`GET /api/events: ${r.status} ${await r.text()}`);
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of r.body!) {
      this.bytes += chunk.byteLength;
      buf += dec.decode(chunk, { stream: true });
      for (let end = buf.indexOf("\n\n"); end >= 0; end = buf.indexOf("\n\n")) {
        const event = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const data = /^event: state\ndata: (.*)$/s.exec(event);
        if (data === null) throw new Error(`unexpected event: ${event.slice(0, 80)}`);
        JSON.parse(data[1]!);
        this.events++;
        this.firstEvent();
      }
      if (buf.length > MAX_EVENT_BYTES) throw new Error(`an event over ${MAX_EVENT_BYTES} bytes`);
    }
    throw new Error(`the stream ended after ${this.events} events`);
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.done;
  }
}

export class DashboardViewers {
  private readonly started = performance.now();

  private constructor(private readonly viewers: Viewer[]) {}

  /** `count` logins, each with its stream open and its first event read. */
  static async start(port: number, count = DASHBOARD_VIEWERS): Promise<DashboardViewers> {
    const base = `http://127.0.0.1:${port}`;
    const viewers: Viewer[] = [];
    for (let i = 0; i < count; i++) viewers.push(new Viewer(base, await login(base)));
    const v = new DashboardViewers(viewers);
    const timeout = sleep(LOGIN_MS).then(() => "timeout");
    if ((await Promise.race([Promise.all(viewers.map((x) => x.first)), timeout])) === "timeout") {
      await v.stop().catch(() => {});
      throw new Error(`dashboard viewers: no first event within ${LOGIN_MS} ms`);
    }
    const failed = viewers.find((x) => x.failure !== null);
    if (failed !== undefined) {
      await v.stop().catch(() => {});
      throw new Error(`dashboard viewer: ${failed.failure}`);
    }
    return v;
  }

  /** End every stream; what they read. Throws if a viewer gave up (the measurement had fewer viewers). */
  async stop(): Promise<{
    viewers: number;
    seconds: number;
    events: number;
    bytes: number;
    reconnects: number;
    lastEnd: string;
  }> {
    await Promise.all(this.viewers.map((x) => x.stop()));
    const failed = this.viewers.find((x) => x.failure !== null);
    if (failed !== undefined) throw new Error(`dashboard viewer: ${failed.failure}`);
    return {
      viewers: this.viewers.length,
      seconds: (performance.now() - this.started) / 1000,
      events: this.viewers.reduce((s, x) => s + x.events, 0),
      bytes: this.viewers.reduce((s, x) => s + x.bytes, 0),
      reconnects: this.viewers.reduce((s, x) => s + x.reconnects, 0),
      lastEnd: this.viewers.find((x) => x.lastEnd !== "")?.lastEnd ?? "",
    };
  }
}
