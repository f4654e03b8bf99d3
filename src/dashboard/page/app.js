// The dashboard page (docs/DASHBOARD.md): live state from /api/events (SSE),
// one view per tab (#overview, #routes…), actions POSTed to /api/action with
// the session's CSRF token (actions.js). Plain ES2022 modules, no framework,
// no build step; the markup is index.html, the look app.css.
import { listenForActions, me, setMe } from "./actions.js";
import { $, setText } from "./dom.js";
import { fingerprints, firewall, refusals } from "./firewall.js";
import { overview } from "./overview.js";
import { pools, routes } from "./routes.js";

/** Each view: made once (its tables), then called with every state. */
const MAKERS = { overview, routes, pools, firewall, fingerprints, refusals };
const views = {};
let current = "overview";

/** Shows the view the location's hash names (#routes…); another hash (#main) leaves the view as it is. */
function show() {
  const name = location.hash.slice(1);
  if (Object.hasOwn(MAKERS, name)) current = name;
  for (const v of Object.keys(MAKERS)) $(`view-${v}`).hidden = v !== current;
  for (const a of document.querySelectorAll("nav.tabs a")) {
    if (a.hash === `#${current}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function render(s) {
  setMe(s.me);
  setText($("who"), `${s.me.user} (${s.me.role})`);
  $("logout").disabled = false;
  for (const [name, view] of Object.entries(views)) {
    try {
      view(s);
    } catch (e) {
      console.error(`view ${name}:`, e);
    }
  }
}

function live(state, text) {
  const pill = $("live");
  pill.dataset.live = state;
  setText(pill, text);
}

/** The live stream: a state at once and every second; when it is refused, the reason decides. */
function connect() {
  const es = new EventSource("/api/events");
  es.addEventListener("state", (e) => {
    live("live", "live");
    render(JSON.parse(e.data));
  });
  es.onerror = async () => {
    live("down", "reconnecting…");
    if (es.readyState !== EventSource.CLOSED) return;
    // Refused: no session (logged out, expired) means the login page; else (too many streams) retry.
    const res = await fetch("/api/state").catch(() => null);
    if (res?.status === 401) return location.assign("/login");
    if (res?.ok) render(await res.json());
    setTimeout(connect, 3000);
  };
}

async function logout() {
  await fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": me.csrf }, redirect: "manual" }).catch(
    () => null,
  );
  location.assign("/login");
}

for (const [name, make] of Object.entries(MAKERS)) views[name] = make();
window.addEventListener("hashchange", show);
show();
listenForActions();
$("logout").addEventListener("click", logout);
connect();
