// The demo's ports (README "Quick start"): the proxy on DEMO_PORT (default
// 8443), the demo backend 1000 above it (9443); and examples/mc-proxy.toml
// with other ports put in. Pure: scripts/demo.ts is the shell.

export const DEFAULT_PROXY_PORT = 8443;
/** The backend's port is the proxy's plus this (8443 → 9443, as examples/mc-proxy.toml has them). */
export const BACKEND_OFFSET = 1000;

export interface DemoPorts {
  proxy: number;
  backend: number;
}

/** The ports DEMO_PORT asks for (unset or empty: the example's own), or why it cannot be used. */
export function demoPorts(value: string | undefined): DemoPorts | string {
  if (value === undefined || value === "")
    return { proxy: DEFAULT_PROXY_PORT, backend: DEFAULT_PROXY_PORT + BACKEND_OFFSET };
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 65535 - BACKEND_OFFSET)
    return `DEMO_PORT=${JSON.stringify(value)}: a port 1-${65535 - BACKEND_OFFSET} (the backend takes DEMO_PORT + ${BACKEND_OFFSET})`;
  return { proxy: n, backend: n + BACKEND_OFFSET };
}

/**
 * examples/mc-proxy.toml (`toml`) with the proxy's and the backend's ports
 * replaced; an error when the file no longer names the example's ports.
 */
export function withPorts(toml: string, ports: DemoPorts): string {
  const proxyAddr = `"127.0.0.1:${DEFAULT_PROXY_PORT}"`;
  const backendAddr = `"127.0.0.1:${DEFAULT_PROXY_PORT + BACKEND_OFFSET}"`;
  if (!toml.includes(proxyAddr) || !toml.includes(backendAddr))
    throw new Error(
      `examples/mc-proxy.toml no longer has ${proxyAddr} and ${backendAddr}: update scripts/demo_config.ts`,
    );
  return toml
    .replaceAll(proxyAddr, `"127.0.0.1:${ports.proxy}"`)
    .replaceAll(backendAddr, `"127.0.0.1:${ports.backend}"`);
}

/** A line of the server's log (logfmt or JSON) that says it serves: `msg=started`. */
export function isStartedLine(line: string): boolean {
  return /(^|\s)msg=started(\s|$)/.test(line) || line.includes('"msg":"started"');
}
