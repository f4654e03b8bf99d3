// The dashboard's HTTP handler (docs/DASHBOARD.md "The HTTP API" and
// "Security model"): Request in, Response out, no socket — the server
// (dashboard_server.ts) hands it each request with its source address, and
// unit tests hand it Request objects. Logins (argon2id, failures limited per
// source), the session cookie (HttpOnly, SameSite=Strict, Secure over
// HTTPS), the CSRF token on every change, the role rule and audit line of
// the admin API (admin/admin_call.ts), the live state as JSON and as
// server-sent events, the embedded page. Every response carries the
// security headers.

import { status as grpcStatus } from "@grpc/grpc-js";
import { adminCall } from "../admin/admin_call";
import type { AdminService } from "../admin/admin_service";
import type { Logger } from "../log/logger";
import { type Action, BadAction, actionName, readAction } from "./actions";
import { ASSETS, INDEX_HTML, LOGIN_HTML } from "./assets";
import type { LoginLimiter } from "./login_limiter";
import { type Session, type Sessions, sameToken } from "./sessions";
import { type DashboardState, stateDocument } from "./state";
import type { Users } from "./users";

export const COOKIE = "mcp_session";
export const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
export const MAX_LOGIN_BODY = 4 * 1024;
export const MAX_ACTION_BODY = 16 * 1024;
/** Event streams open at once, per process. */
export const MAX_STREAMS = 20;
/**
 * Password checks running at once, over every source (argon2id: 64 MiB
 * and 0.1-0.2 s of a core each, Bun.password's defaults), and one at a time
 * per source: a burst of logins cannot take the memory or a core, and a
 * source's failures count before its next attempt starts.
 */
export const MAX_LOGINS_IN_FLIGHT = 4;
/** Event streams one session may hold open at once (a few tabs); the rest are left to the others. */
export const MAX_STREAMS_PER_SESSION = 3;
/** Events a stream may have queued unread before it is closed (a client that stopped reading). */
const MAX_QUEUED_EVENTS = 10;

/** The HTTP status of an admin refusal (its gRPC code). */
const HTTP_OF: Partial<Record<grpcStatus, number>> = {
  [grpcStatus.INVALID_ARGUMENT]: 400,
  [grpcStatus.OUT_OF_RANGE]: 400,
  [grpcStatus.PERMISSION_DENIED]: 403,
  [grpcStatus.NOT_FOUND]: 404,
  [grpcStatus.ALREADY_EXISTS]: 409,
  [grpcStatus.FAILED_PRECONDITION]: 409,
  [grpcStatus.ABORTED]: 409,
  [grpcStatus.RESOURCE_EXHAUSTED]: 409,
  [grpcStatus.UNAVAILABLE]: 503,
};

export interface AppDeps {
  service: AdminService;
  state: DashboardState;
  users: Users;
  sessions: Sessions;
  limiter: LoginLimiter;
  logger: Logger;
  /** Served over HTTPS: the cookie is Secure. */
  https: boolean;
  now?: () => number;
}

interface Stream {
  session: Session;
  controller: ReadableStreamDefaultController<string>;
}

function headers(extra: Record<string, string>, cache = "no-store"): Headers {
  return new Headers({
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": cache,
    ...extra,
  });
}

function json(status: number, value: unknown, extra: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(value), {
    status,
    headers: headers({ "Content-Type": "application/json; charset=utf-8", ...extra }),
  });
}

function redirect(location: string, extra: Record<string, string> = {}): Response {
  return new Response(null, { status: 303, headers: headers({ Location: location, ...extra }) });
}

function html(body: string): Response {
  return new Response(body, { headers: headers({ "Content-Type": "text/html; charset=utf-8" }) });
}

function plain(status: number, body: string, extra: Record<string, string> = {}): Response {
  return new Response(body, { status, headers: headers({ "Content-Type": "text/plain; charset=utf-8", ...extra }) });
}

/** The value of one cookie of a Cookie header, or null. */
export function cookieOf(header: string | null, name: string): string | null {
  for (const part of (header ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

/** A request body of at most `max` bytes, or null when longer (by its Content-Length, or as read). */
async function boundedBody(req: Request, max: number): Promise<string | null> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (!Number.isFinite(declared) || declared > max) return null;
  const bytes = new Uint8Array(await req.arrayBuffer());
  return bytes.length > max ? null : new TextDecoder().decode(bytes);
}

/**
 * A POST from this dashboard's own pages, or from no browser at all (curl):
 * a browser's cross-site POST (a login forced on the user, a flood of wrong
 * passwords to lock a loopback address out) says so in `Sec-Fetch-Site`.
 * A browser without fetch metadata is judged by its Origin, which must be
 * this Host. (Under `Referrer-Policy: no-referrer` Chromium sends a form's
 * Origin as "null", with `Sec-Fetch-Site: same-origin`.)
 */
export function sameOrigin(req: Request): boolean {
  const site = req.headers.get("sec-fetch-site");
  if (site !== null) return site === "same-origin";
  const origin = req.headers.get("origin");
  if (origin === null) return true;
  try {
    return new URL(origin).host === (req.headers.get("host") ?? "").toLowerCase();
  } catch {
    return false;
  }
}

export class DashboardApp {
  private readonly streams = new Set<Stream>();
  /** Plain HTTP on loopback: the Host values it answers (a DNS-rebinding page names another); null: any. */
  private hosts: ReadonlySet<string> | null = null;
  /** Sources with a password check running. */
  private readonly checking = new Set<string>();
  private readonly now: () => number;

  constructor(private readonly d: AppDeps) {
    this.now = d.now ?? Date.now;
  }

  /** Set once the address is bound (dashboard_server.ts); null for HTTPS (the certificate names the host) and unix sockets. */
  allowHosts(hosts: readonly string[] | null): void {
    this.hosts = hosts === null ? null : new Set(hosts.map((h) => h.toLowerCase()));
  }

  get openStreams(): number {
    return this.streams.size;
  }

  async fetch(req: Request, source: string): Promise<Response> {
    if (this.hosts !== null && !this.hosts.has((req.headers.get("host") ?? "").toLowerCase()))
      return plain(421, "this dashboard answers to its own address only (the Host header names another)\n");
    if (req.method === "POST" && !sameOrigin(req)) return plain(403, "a cross-site request is refused\n");
    const path = new URL(req.url).pathname;
    const method = req.method === "HEAD" ? "GET" : req.method;
    const route = `${method} ${path}`;
    const asset = method === "GET" && Object.hasOwn(ASSETS, path) ? ASSETS[path] : undefined;
    if (asset !== undefined)
      return new Response(asset.body, { headers: headers({ "Content-Type": asset.type }, "max-age=3600") });
    switch (route) {
      case "GET /login":
        return html(LOGIN_HTML);
      case "POST /login":
        return this.login(req, source);
    }
    const session = this.session(req);
    switch (route) {
      case "GET /":
        return session === null ? redirect("/login") : html(INDEX_HTML);
      case "POST /logout":
        return this.logout(req, session);
      case "GET /api/state":
        return session === null ? json(401, { error: "log in" }) : this.stateResponse(session);
      case "GET /api/events":
        return session === null ? json(401, { error: "log in" }) : this.events(session);
      case "POST /api/action":
        return this.action(req, session);
    }
    const known = ["/", "/login", "/logout", "/api/state", "/api/events", "/api/action"].includes(path);
    return known ? json(405, { error: "method not allowed" }) : json(404, { error: "not found" });
  }

  /** The session the request's cookie names, or null. */
  private session(req: Request): Session | null {
    const id = cookieOf(req.headers.get("cookie"), COOKIE);
    return id === null || id === "" ? null : this.d.sessions.get(id, this.now());
  }

  private cookie(value: string, extra: string): string {
    return `${COOKIE}=${value}; HttpOnly; SameSite=Strict; Path=/${extra}${this.d.https ? "; Secure" : ""}`;
  }

  private async login(req: Request, source: string): Promise<Response> {
    const { limiter, logger, users, sessions } = this.d;
    const wait = limiter.retryAfter(source, this.now());
    if (wait > 0) {
      const secs = Math.ceil(wait / 1000);
      logger.debug("dashboard login", { source, outcome: "limited" });
      return plain(429, `too many failed logins from your address; try again in ${secs} s\n`, {
        "Retry-After": String(secs),
      });
    }
    const type = req.headers.get("content-type") ?? "";
    const body = type.startsWith("application/x-www-form-urlencoded") ? await boundedBody(req, MAX_LOGIN_BODY) : null;
    if (body === null) return plain(400, "expected a form (application/x-www-form-urlencoded) of at most 4 KiB\n");
    if (this.checking.has(source))
      return plain(429, "a login from your address is being checked; wait for its answer\n", { "Retry-After": "1" });
    if (this.checking.size >= MAX_LOGINS_IN_FLIGHT)
      return plain(503, "too many logins at once; try again in a second\n", { "Retry-After": "1" });
    const form = new URLSearchParams(body);
    const name = form.get("name") ?? "";
    this.checking.add(source);
    let user: Awaited<ReturnType<Users["verify"]>>;
    try {
      user = await users.verify(name, form.get("password") ?? "");
    } finally {
      this.checking.delete(source);
    }
    const shown = name.slice(0, 64);
    if (user === null) {
      limiter.fail(source, this.now());
      logger.audit("dashboard login", { user: shown, source, outcome: "failed" });
      return redirect("/login?failed=1");
    }
    limiter.succeed(source);
    const { session: s, dropped } = sessions.create(user.name, user.role, this.now());
    logger.audit("dashboard login", {
      user: user.name,
      source,
      outcome: "ok",
      role: user.role,
      ...(dropped > 0 ? { sessions_ended: dropped } : {}),
    });
    return redirect("/", {
      "Set-Cookie": this.cookie(s.id, `; Max-Age=${Math.floor((s.expires - this.now()) / 1000)}`),
    });
  }

  /** Whether the request carries the session's CSRF token. */
  private csrfOk(req: Request, session: Session): boolean {
    const token = req.headers.get("x-csrf-token");
    return token !== null && sameToken(token, session.csrf);
  }

  private logout(req: Request, session: Session | null): Response {
    if (session === null) return redirect("/login");
    if (!this.csrfOk(req, session)) return json(403, { error: "bad CSRF token" });
    this.d.sessions.drop(session.id);
    for (const s of this.streams) if (s.session.id === session.id) this.close(s);
    return redirect("/login", { "Set-Cookie": this.cookie("", "; Max-Age=0") });
  }

  private async stateResponse(session: Session): Promise<Response> {
    return new Response(stateDocument(session, await this.d.state.body()), {
      headers: headers({ "Content-Type": "application/json; charset=utf-8" }),
    });
  }

  private events(session: Session): Response {
    if (this.streams.size >= MAX_STREAMS)
      return json(503, { error: `too many dashboard streams open (at most ${MAX_STREAMS})` });
    if ([...this.streams].filter((s) => s.session.id === session.id).length >= MAX_STREAMS_PER_SESSION)
      return json(429, { error: `this session has ${MAX_STREAMS_PER_SESSION} streams open already` });
    let entry: Stream | null = null;
    const stream = new ReadableStream<string>({
      start: (controller) => {
        entry = { session, controller };
        this.streams.add(entry);
        const first = entry;
        this.d.state.body().then(
          (body) => this.send(first, body),
          () => this.close(first),
        );
      },
      cancel: () => {
        if (entry !== null) this.streams.delete(entry);
      },
    });
    return new Response(stream, {
      headers: headers({ "Content-Type": "text/event-stream; charset=utf-8", "X-Accel-Buffering": "no" }),
    });
  }

  /** Once a second (dashboard_server.ts): the state to every open stream; a stream whose session ended is closed. */
  async tick(): Promise<void> {
    if (this.streams.size === 0) return;
    const body = await this.d.state.body();
    const now = this.now();
    for (const s of this.streams) {
      if (this.d.sessions.get(s.session.id, now) === null) this.close(s);
      else this.send(s, body);
    }
  }

  /** Close every stream (the server stops). */
  closeAll(): void {
    for (const s of this.streams) this.close(s);
  }

  private send(s: Stream, body: string): void {
    if (!this.streams.has(s)) return;
    if ((s.controller.desiredSize ?? 0) < -MAX_QUEUED_EVENTS) return this.close(s);
    try {
      s.controller.enqueue(`event: state\ndata: ${stateDocument(s.session, body)}\n\n`);
    } catch {
      this.streams.delete(s);
    }
  }

  private close(s: Stream): void {
    this.streams.delete(s);
    try {
      s.controller.close();
    } catch {}
  }

  private async action(req: Request, session: Session | null): Promise<Response> {
    if (session === null) return json(401, { error: "log in" });
    if (!this.csrfOk(req, session)) return json(403, { error: "bad CSRF token" });
    const type = req.headers.get("content-type") ?? "";
    if (!type.startsWith("application/json")) return json(400, { error: "expected application/json" });
    const text = await boundedBody(req, MAX_ACTION_BODY);
    if (text === null) return json(400, { error: `the body is over ${MAX_ACTION_BODY / 1024} KiB` });
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return json(400, { error: "the body is not JSON" });
    }
    let a: Action;
    try {
      a = readAction(body);
    } catch (e) {
      if (e instanceof BadAction) return json(400, { error: e.message });
      throw e;
    }
    const name = actionName(body)!;
    const { service, logger } = this.d;
    const caller = {
      identity: `dashboard:${session.user}`,
      role: session.role,
      refusal: () => `${session.role} may not ${name}`,
    };
    return new Promise<Response>((done) =>
      adminCall(
        logger,
        a.method,
        a.request,
        caller,
        (given) => service.listenerName(given),
        () => a.call(service),
        (o) => {
          // The next state read shows what the action did, not the document built before it.
          this.d.state.invalidate();
          done(
            o.code === grpcStatus.OK
              ? json(200, { ok: true, result: o.result })
              : json(HTTP_OF[o.code] ?? 500, { error: o.details }),
          );
        },
      ),
    );
  }
}
