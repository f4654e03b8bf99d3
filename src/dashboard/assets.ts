// The dashboard page's files, embedded in the binary (no CDN: the page works
// offline; docs/DASHBOARD.md). Imported as text, served as they are. The
// page's scripts are ES modules importing each other by these paths.
import actionsJs from "./page/actions.js" with { type: "text" };
import appCss from "./page/app.css" with { type: "text" };
import appJs from "./page/app.js" with { type: "text" };
import domJs from "./page/dom.js" with { type: "text" };
import firewallJs from "./page/firewall.js" with { type: "text" };
import formatJs from "./page/format.js" with { type: "text" };
import indexHtml from "./page/index.html" with { type: "text" };
import loginCss from "./page/login.css" with { type: "text" };
import loginHtml from "./page/login.html" with { type: "text" };
import loginJs from "./page/login.js" with { type: "text" };
import overviewJs from "./page/overview.js" with { type: "text" };
import routesJs from "./page/routes.js" with { type: "text" };
import tableJs from "./page/table.js" with { type: "text" };
import themeCss from "./page/theme.css" with { type: "text" };
import uplotJs from "uplot/dist/uPlot.iife.min.js" with { type: "text" };
import uplotCss from "uplot/dist/uPlot.min.css" with { type: "text" };

const JS = "text/javascript; charset=utf-8";
const CSS = "text/css; charset=utf-8";

/** The static files under /assets/, by path: public (they hold no data). */
export const ASSETS: Record<string, { type: string; body: string }> = {
  "/assets/app.js": { type: JS, body: appJs },
  "/assets/actions.js": { type: JS, body: actionsJs },
  "/assets/dom.js": { type: JS, body: domJs },
  "/assets/firewall.js": { type: JS, body: firewallJs },
  "/assets/format.js": { type: JS, body: formatJs },
  "/assets/overview.js": { type: JS, body: overviewJs },
  "/assets/routes.js": { type: JS, body: routesJs },
  "/assets/table.js": { type: JS, body: tableJs },
  "/assets/theme.css": { type: CSS, body: themeCss },
  "/assets/app.css": { type: CSS, body: appCss },
  "/assets/uplot.js": { type: JS, body: uplotJs },
  "/assets/uplot.css": { type: CSS, body: uplotCss },
  "/assets/login.js": { type: JS, body: loginJs },
  "/assets/login.css": { type: CSS, body: loginCss },
};

/** The dashboard (GET / with a session). */
export const INDEX_HTML = indexHtml;
/** The login form (GET /login). */
export const LOGIN_HTML = loginHtml;
