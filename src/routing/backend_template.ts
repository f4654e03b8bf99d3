// A backend template (docs/ROUTING.md "Templated routes"): "host:port" whose
// host holds placeholders — "{app}.internal:443" — filled from the server
// name: {sni}, the whole name, or a named capture of the route's pattern.
// The port is literal. Checked when the route is written; filled per
// connection, and the host filled in checked again as a host name (each
// capture is a piece of a validated host name, but the whole may be too
// long or have an empty label).

import { parseHostPort } from "../net/host_port";
import { normaliseHostName } from "../sni/host_name";

/** Whether a backend address is a template. */
export function isTemplate(addr: string): boolean {
  return addr.includes("{") || addr.includes("}");
}

const PLACEHOLDER = /\{([^{}]*)\}/g;

/**
 * A template's problem, or null: placeholders well formed and each one of
 * `names`; none in the port; with each placeholder a sample label, a valid
 * host:port.
 */
export function templateError(addr: string, names: readonly string[]): string | null {
  const colon = addr.lastIndexOf(":");
  if (colon < 0) return "expected host:port";
  if (isTemplate(addr.slice(colon + 1))) return "the port must be a number, not a placeholder";
  for (const m of addr.matchAll(PLACEHOLDER)) {
    const n = m[1]!;
    if (!names.includes(n))
      return names.length === 0
        ? `placeholder {${n}}: this route takes no placeholders`
        : `placeholder {${n}} is not one of ${names.map((x) => `{${x}}`).join(", ")}`;
  }
  const sample = addr.replace(PLACEHOLDER, "a");
  if (isTemplate(sample)) return `unbalanced "{" or "}"`;
  const hp = parseHostPort(sample, { allowEmptyHost: false });
  return hp.ok ? null : `with each placeholder a label "a": ${hp.error}`;
}

/** DNS labels are 1-63 bytes (RFC 1035 §2.3.4). */
const MAX_LABEL = 63;

/** The template filled from `values`, or null when the host filled in is not a valid host name (labels of 63 bytes at most). */
export function fillTemplate(addr: string, values: Readonly<Record<string, string>>): string | null {
  const colon = addr.lastIndexOf(":");
  const host = addr.slice(0, colon).replace(PLACEHOLDER, (_, n: string) => values[n] ?? "");
  const norm = normaliseHostName(host);
  if (norm === null || norm !== host || host.split(".").some((l) => l.length > MAX_LABEL)) return null;
  return `${host}${addr.slice(colon)}`;
}
