// Summaries of per-round values, for every bench report.

/** The median, NaN values ignored (a phase that produced no number). */
export function median(v: number[]): number {
  const s = v.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** (max − min) / median: how far the rounds disagree. */
export function spread(v: number[]): number {
  const s = v.filter((x) => !Number.isNaN(x));
  if (s.length < 2) return 0;
  const med = median(s);
  return med === 0 ? 0 : (Math.max(...s) - Math.min(...s)) / med;
}
