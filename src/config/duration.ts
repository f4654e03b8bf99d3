// Durations are written as in Go and HAProxy: a number and a unit, or several
// ("1m30s"). Units: ms, s, m, h. A bare number is refused so that "30" can
// never be misread as seconds or milliseconds.

import { type Parsed, fail, ok } from "./parsed";

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/y;

const NOT_A_DURATION = `is not a duration (use a number and a unit: ms, s, m, h — e.g. "500ms", "10s", "5m")`;

/** Milliseconds for a duration string; the problem follows the value ("\"30\" is not a duration …"). */
export function parseDuration(text: string): Parsed<number> {
  if (text.length === 0) return fail(NOT_A_DURATION);
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < text.length) {
    const m = PART.exec(text);
    if (m === null) return fail(NOT_A_DURATION);
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
  }
  return Number.isFinite(total) ? ok(Math.round(total)) : fail(NOT_A_DURATION);
}

/**
 * A duration as an operator writes it, from any source (the TOML file, the
 * admin API): its milliseconds, or the problem that follows the value —
 * negative, not a duration, or longer than `max`.
 */
export function durationText(text: string, max: number): Parsed<number> {
  if (text.trim().startsWith("-")) return fail("is negative; durations must be positive");
  const ms = parseDuration(text);
  if (!ms.ok) return ms;
  if (ms.value > max) return fail(`is too long (durations are at most ${formatDuration(max)})`);
  return ms;
}

export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
