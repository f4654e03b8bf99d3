// The one validation result convention, for every parser and validator of
// settings, rules, addresses and routes (config, firewall, net, routing):
//
// - A parser — text or a value in, a value out — returns Parsed<T>: the
//   value, or the problem. One shape for every T, so a caller writes
//   `if (!r.ok) problems.push(r.error)` whatever was parsed; "a string is
//   the value" and "a string is the problem" can no longer be confused
//   (parseHostPort returned a string for its problem, parseIpRule a string
//   for its value), and a value that itself has an `error` field stays a value.
// - A validator that only checks returns `string | null`: the problem, or
//   null when there is none. Its name ends in `Error` (poolError,
//   alpnError, intError); it makes nothing, so a Parsed<void> would only
//   add `.ok` to read.
//
// - A reader of a whole file or section (config.ts, sections.ts,
//   listeners.ts, routing/route_config.ts) reports every problem at once:
//   it takes a `problems` list, pushes each problem (the key named) and
//   returns what it could read. It calls the parsers and checks above.
//
// A problem names what it is about as far as the parser knows (the value;
// the key when it is given one); the caller adds the rest.

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

export function ok<T>(value: T): Parsed<T> {
  return { ok: true, value };
}

export function fail<T = never>(error: string): Parsed<T> {
  return { ok: false, error };
}
