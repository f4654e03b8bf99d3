// The routes and pools views (docs/DASHBOARD.md "Views"): each listener's
// routes, and each route's backends with the drain / enable / disable buttons.
import { button } from "./actions.js";
import { $, el, setText, sync } from "./dom.js";
import { ago, enumText, int, list, routeName } from "./format.js";
import { table } from "./table.js";

const limit = (n) => (n > 0 ? int(n) : "∞");

/** Every route with its listener's name and its id, "<listener>/<route name>". */
const allRoutes = (s) =>
  s.routes.listeners.flatMap((l) =>
    l.routes.map((r) => ({ listener: l.listener, r, id: `${l.listener}/${routeName(r)}` })),
  );

/** A titled box holding one table; `tables` remembers each box's table. */
function block(attrs, title, tables, makeTable) {
  const box = el("div", { class: "block", ...attrs }, el("h3", {}, title), el("p", { class: "meta" }));
  tables.set(box, makeTable(box));
  return box;
}

export function routes() {
  const tables = new Map();
  const routeTable = (listener) => (box) =>
    table(box, {
      caption: `Routes of ${listener}`,
      cols: [
        ["Hostname", (r) => r.hostname],
        ["ALPN", (r) => list(r.alpn)],
        ["Allow", (r) => list(r.allow)],
        ["Deny", (r) => (r.deny.length === 0 ? "none" : r.deny.join(", "))],
        ["Active / max", (r) => `${int(r.active_connections)} / ${limit(r.max_connections)}`],
        ["Backends", (r) => r.backends.map((b) => b.addr + (b.backup ? " (backup)" : "")).join(", ") || r.backend],
        ["Balance", (r) => enumText(r.balance, "BALANCE_")],
      ],
      key: routeName,
      row: (r) => ({ "data-route": `${listener}/${routeName(r)}` }),
    });
  return (s) => {
    // A listener's sockets: its TCP address, and its QUIC one when it has one.
    const sockets = (name) => s.status.listeners.filter((x) => x.name === name);
    const socketText = (x) =>
      `${x.addr} (${x.protocol}): ${int(x.active_connections)} open of ${limit(x.max_connections)}`;
    sync(
      $("routes-body"),
      s.routes.listeners,
      (l) => l.listener,
      (l) => block({ "data-listener": l.listener }, l.listener, tables, routeTable(l.listener)),
      (box, l) => {
        setText(box.querySelector(".meta"), sockets(l.listener).map(socketText).join(" · "));
        tables.get(box)(l.routes);
      },
    );
  };
}

const STATES = [
  ["drain", "BACKEND_STATE_DRAIN"],
  ["enable", "BACKEND_STATE_ENABLED"],
  ["disable", "BACKEND_STATE_DISABLED"],
];

/** A backend's three buttons; the one naming its present state is pressed. */
const stateButtons = ({ listener, r, id }, b) =>
  STATES.map(([verb, state]) => {
    const body = { action: "set_backend_state", listener, hostname: r.hostname, alpn: r.alpn, backend: b.addr, state };
    return button(
      verb,
      { "data-state": verb, "aria-pressed": String(b.state === state) },
      body,
      `${verb} ${b.addr} on ${id}`,
    );
  });

const lastCheck = (h) =>
  h && h.last_check_unix_seconds > 0 ? `${h.last_check}, ${ago(h.last_check_unix_seconds * 1000)}` : "none";

export function pools() {
  const tables = new Map();
  const poolTable = (route) => (box) =>
    table(box, {
      caption: `Backends of ${route.id}`,
      cols: [
        ["Backend", (b) => b.addr + (b.backup ? " (backup)" : "")],
        ["Weight", (b) => String(b.weight)],
        ["State", (b) => enumText(b.state, "BACKEND_STATE_"), (b) => enumText(b.state, "BACKEND_STATE_")],
        [
          "Health",
          (b) => (b.health ? (b.health.up ? "up" : "down") : "–"),
          (b) => (b.health?.up === false ? "bad" : "ok"),
        ],
        ["Last check", (b) => lastCheck(b.health)],
        ["Failures", (b) => (b.health ? int(b.health.consecutive_failures) : "–")],
        ["Open", (b) => int(b.active_connections)],
      ],
      key: (b) => b.addr,
      row: (b) => ({ "data-backend": b.addr }),
      actions: (b) => stateButtons(route, b),
      actionsKey: (b) => b.state,
    });
  const meta = (r) => {
    const every = r.health_check_interval ? ` every ${r.health_check_interval}` : "";
    const check = `health check ${enumText(r.health_check, "HEALTH_CHECK_")}${every}`;
    return `balance ${enumText(r.balance, "BALANCE_")} · ${check} · ${int(r.active_connections)} open`;
  };
  return (s) =>
    sync(
      $("pools-body"),
      allRoutes(s),
      (route) => route.id,
      (route) => block({ "data-route": route.id }, route.id, tables, poolTable(route)),
      (box, { r }) => {
        setText(box.querySelector(".meta"), meta(r));
        tables.get(box)(r.backends);
      },
    );
}
