// The overview (docs/DASHBOARD.md "Views"): the process's facts, the figures
// of the last second, and uPlot charts of the history (up to 15 minutes).
import { $, el, setText, sync } from "./dom.js";
import { bytes, duration, int, rate } from "./format.js";
import { table } from "./table.js";

const perSecond = (v) => `${bytes(v)}/s`;

/** Each chart: its element, and its series: [history field, legend label, axis format]. */
const CHARTS = [
  ["chart-open", [["open", "Open", int]]],
  ["chart-new", [["newPerSec", "New/s", rate]]],
  [
    "chart-bytes",
    [
      ["bytesInPerSec", "In", perSecond],
      ["bytesOutPerSec", "Out", perSecond],
    ],
  ],
  ["chart-refused", [["refusedPerSec", "Refused/s", rate]]],
];
const HEIGHT = 170;

/** The charts: made once their box has a width (the overview is shown), then fed each history. */
function makeCharts() {
  const plots = new Map();
  let last = null;
  const draw = (h) => {
    last = h;
    if (typeof uPlot === "undefined") return;
    const css = getComputedStyle(document.documentElement);
    const v = (name) => css.getPropertyValue(name).trim();
    for (const [id, series] of CHARTS) {
      const data = [h.t, ...series.map(([k]) => h[k] ?? [])];
      const plot = plots.get(id);
      if (plot) plot.setData(data);
      else if ($(id).clientWidth > 0) plots.set(id, chart($(id), series, data, v));
    }
  };
  new ResizeObserver(() => {
    for (const [id, plot] of plots) {
      const w = $(id).clientWidth;
      if (w > 0 && w !== plot.width) plot.setSize({ width: w, height: HEIGHT });
    }
    if (last) draw(last);
  }).observe(document.querySelector(".charts"));
  return draw;
}

function chart(box, series, data, v) {
  const fmt = series[0][2];
  const axis = { stroke: v("--muted"), grid: { stroke: v("--grid") }, ticks: { stroke: v("--grid") } };
  const opts = {
    width: box.clientWidth,
    height: HEIGHT,
    legend: { show: series.length > 1, live: false },
    cursor: { drag: { x: false, y: false } },
    scales: { y: { range: (_u, _min, max) => [0, Math.max(max, 1) * 1.1] } },
    series: [
      {},
      ...series.map(([, label, f], i) => ({
        label,
        stroke: v(`--chart-${i + 1}`),
        width: 2,
        value: (_u, x) => (x == null ? "–" : f(x)),
      })),
    ],
    axes: [axis, { ...axis, size: 80, values: (_u, splits) => splits.map((x) => fmt(x)) }],
  };
  return new uPlot(opts, data, box);
}

export function overview() {
  const outcomes = table($("outcomes"), {
    caption: "Outcomes",
    cols: [
      ["Outcome", (o) => o.outcome],
      ["Total", (o) => int(o.count)],
      ["Per second", (o) => rate(o.perSec)],
    ],
    key: (o) => o.outcome,
    row: (o) => ({ "data-outcome": o.outcome }),
  });
  const workers = table($("workers"), {
    caption: "Workers",
    cols: [
      ["Worker", (w) => String(w.id)],
      ["Open", (w) => int(w.active)],
      ["Accepted", (w) => int(w.accepted)],
      ["Restarts", (w) => int(w.restarts)],
    ],
    key: (w) => String(w.id),
    row: (w) => ({ "data-worker": String(w.id) }),
  });
  const charts = makeCharts();
  let last = null;
  return (s) => {
    const st = s.status;
    const ws = Array.isArray(st.workers) ? st.workers : [];
    const facts = [
      ["Version", st.version],
      ["Generation", String(st.generation)],
      ["Uptime", duration(st.uptime_seconds)],
      ["Workers", String(ws.length || 1)],
      ["Store", st.store],
      ["PID", String(st.pid)],
    ];
    const fact = ([k]) => el("div", {}, el("dt", {}, k), el("dd"));
    sync(
      $("facts"),
      facts,
      ([k]) => k,
      fact,
      (d, [, v]) => setText(d.lastChild, v),
    );

    // Open: connections and QUIC flows over every listener, now.
    const quic = st.listeners.filter((l) => l.protocol === "quic").reduce((n, l) => n + l.active_connections, 0);
    setText($("open-connections"), int(st.active_connections));
    setText($("open-split"), `${int(st.active_connections - quic)} TCP · ${int(quic)} QUIC flows`);

    // The last second, from the history's newest point.
    const h = s.history;
    const newest = (a) => (h.t.length > 0 ? a[h.t.length - 1] : null);
    const show = (id, v, f) => setText($(id), v === null || v === undefined ? "–" : f(v));
    show("new-per-sec", newest(h.newPerSec), rate);
    show("bytes-in", newest(h.bytesInPerSec), perSecond);
    show("bytes-out", newest(h.bytesOutPerSec), perSecond);
    show("refused-per-sec", newest(h.refusedPerSec), rate);

    // Outcomes per second: the change of each total since the previous state.
    const now = Date.now();
    const prev = new Map(last ? last.counts.map((o) => [o.outcome, o.count]) : []);
    const dt = last ? (now - last.at) / 1000 : 0;
    const perSec = (o) => (dt > 0 ? Math.max(0, o.count - (prev.get(o.outcome) ?? o.count)) / dt : 0);
    outcomes(st.outcomes.map((o) => ({ ...o, perSec: perSec(o) })));
    last = { at: now, counts: st.outcomes };
    workers(ws);
    charts(h);
  };
}
