// A CPU profile (.cpuprofile, the Chrome / Bun --cpu-prof format) turned into
// a flame graph SVG and a table of the frames with the most self time.
// Written here (a hundred lines) rather than shelling out to Brendan Gregg's
// flamegraph.pl, which is not in the registries this project installs from.

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function frameName(f: CallFrame): string {
  const file = f.url.replace(/^.*\/(src|node_modules)\//, "$1/").replace(/^file:\/\//, "");
  const fn = f.functionName === "" ? "(anonymous)" : f.functionName;
  return file === "" ? fn : `${fn} ${file}:${f.lineNumber + 1}`;
}

/** Self time (µs) per node id: each sample's delta goes to the node it hit. */
function selfTimes(p: CpuProfile): Map<number, number> {
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const d = p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0;
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + Math.max(0, d));
  }
  return self;
}

interface Tree {
  name: string;
  value: number;
  children: Map<string, Tree>;
}

/** The call tree with frames of the same name merged per path, valued by total (self + descendants) time. */
function tree(p: CpuProfile): Tree {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = selfTimes(p);
  const root: Tree = { name: "all", value: 0, children: new Map() };
  for (const [id, t] of self) {
    if (t <= 0) continue;
    const path: string[] = [];
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur)!;
      if (n.callFrame.functionName !== "(root)") path.push(frameName(n.callFrame));
    }
    path.reverse();
    root.value += t;
    let node = root;
    for (const name of path) {
      let next = node.children.get(name);
      if (next === undefined) node.children.set(name, (next = { name, value: 0, children: new Map() }));
      next.value += t;
      node = next;
    }
  }
  return root;
}

/** The frames with the most self time, summed over every place they occur. */
export function topSelf(p: CpuProfile, n = 10): { frame: string; ms: number; share: number }[] {
  const byId = new Map(p.nodes.map((x) => [x.id, x]));
  const sums = new Map<string, number>();
  let total = 0;
  for (const [id, t] of selfTimes(p)) {
    const name = frameName(byId.get(id)!.callFrame);
    sums.set(name, (sums.get(name) ?? 0) + t);
    total += t;
  }
  return [...sums]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([frame, us]) => ({ frame, ms: us / 1000, share: us / total }));
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** A flame graph: width is time, the root at the bottom, callers below their callees. */
export function flameGraphSvg(p: CpuProfile, title: string, width = 1200): string {
  const root = tree(p);
  const rowH = 16;
  let depth = 0;
  const walk = (t: Tree, d: number) => {
    depth = Math.max(depth, d);
    for (const c of t.children.values()) walk(c, d + 1);
  };
  walk(root, 0);
  const height = (depth + 1) * rowH + 40;
  const rects: string[] = [];
  const scale = (width - 20) / root.value;
  const draw = (t: Tree, x: number, d: number) => {
    const w = t.value * scale;
    if (w < 0.3) return;
    const y = height - 10 - (d + 1) * rowH;
    // Warm colours from the name, so a frame keeps its colour across graphs.
    let h = 0;
    for (let i = 0; i < t.name.length; i++) h = (h * 31 + t.name.charCodeAt(i)) >>> 0;
    const fill = `rgb(${205 + (h % 50)},${80 + ((h >> 8) % 120)},${40 + ((h >> 16) % 40)})`;
    const label = w > 40 ? esc(t.name.slice(0, Math.floor(w / 6.5))) : "";
    rects.push(
      `<g><title>${esc(t.name)} (${(t.value / 1000).toFixed(1)} ms, ${((t.value / root.value) * 100).toFixed(1)} %)</title><rect x="${(10 + x).toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="${rowH - 1}" fill="${fill}" rx="1"/>${label === "" ? "" : `<text x="${(13 + x).toFixed(1)}" y="${y + rowH - 4}">${label}</text>`}</g>`,
    );
    let cx = x;
    for (const c of [...t.children.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
      draw(c, cx, d + 1);
      cx += c.value * scale;
    }
  };
  draw(root, 0, 0);
  return `<?xml version="1.0" standalone="no"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="monospace" font-size="11">
<rect width="100%" height="100%" fill="#fdfdf5"/>
<text x="10" y="18" font-size="14">${esc(title)}</text>
${rects.join("\n")}
</svg>
`;
}
