// The first phase of `server` and the whole of `check`: everything that can
// be known wrong before anything opens or binds, every problem at once
// (docs/COMMAND_LINE.md: check prints every problem with its key). The config
// is read with all its problems, then the files it names are opened as the
// server will open them: the GeoIP database, the admin API's certificates
// (each read, the key the certificate's, the TLS context built:
// AdminServer.prepare), the dashboard's (DashboardServer.prepare), etcd's certificates, and the takeover socket's path
// beside the database. A takeover fails here before it asks the running
// process anything (docs/ARCHITECTURE.md "Takeover").

import { readFileSync, statSync } from "node:fs";
import { AdminServer, type PreparedAdmin, adminTlsError } from "../../admin/grpc_server";
import { ConfigError, readConfig, readGrpcFile } from "../../config/config";
import {
  DashboardServer,
  type PreparedDashboard,
  dashboardTlsError,
  readDashboardFile,
} from "../../dashboard/dashboard_server";
import { CountryDatabase } from "../../firewall/country_database";
import { keyPairError } from "../../net/key_pair";
import { type RoutedConfig, readRoutes } from "../../routing/route_config";
import { controlPath, controlPathError } from "../../server/handover";

export interface Preflight {
  config: RoutedConfig;
  /** The admin API's TLS loaded and matched, ready to bind; null without [grpc]. */
  admin: PreparedAdmin | null;
  /** The dashboard's TLS loaded and matched (or plain HTTP), ready to bind; null without [dashboard]. */
  dashboard: PreparedDashboard | null;
  /** What serves anyway but is worth saying: the config's own warnings (the kernel's tcp_migrate_req is a takeover's: server_command.ts). */
  warnings: string[];
}

/** What `check` and `server` run first: the config and its files, or a ConfigError listing every problem. */
export function preflight(file: string, env: Record<string, string | undefined> = process.env): Preflight {
  const read = readConfig(file, readRoutes, env);
  const config = read.config;
  if (config === null) throw new ConfigError(file, read.problems);
  const problems = [...read.problems, ...fileProblems(config)];
  // The TLS context is built from a config with no problem only: its
  // address is valid, and its files read and matched.
  let admin: PreparedAdmin | null = null;
  if (problems.length === 0 && config.grpc !== null) {
    try {
      admin = AdminServer.prepare(config.grpc);
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  let dashboard: PreparedDashboard | null = null;
  if (problems.length === 0 && config.dashboard !== null) {
    try {
      dashboard = DashboardServer.prepare(config.dashboard);
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  if (problems.length > 0) throw new ConfigError(file, problems);
  return { config, admin, dashboard, warnings: [...config.warnings] };
}

/**
 * The files a config names, each group checked whatever the others found:
 * the problems, each naming its key. Only keys that passed their own check
 * are set in a config with problems (config/config.ts `readConfig`).
 */
function fileProblems(cfg: RoutedConfig): string[] {
  const problems: string[] = [];
  const geoip = cfg.firewall.geoipDb;
  if (geoip !== null) {
    try {
      CountryDatabase.open(geoip);
    } catch (e) {
      problems.push(`firewall.geoip_db: ${(e as Error).message}`);
    }
  }
  if (cfg.grpc !== null) {
    const g = cfg.grpc;
    const read = (key: string, path: string | null): Buffer | null => {
      try {
        return readGrpcFile(key, path);
      } catch (e) {
        problems.push((e as Error).message);
        return null;
      }
    };
    const cert = read("tls_cert", g.tlsCert);
    const key = read("tls_key", g.tlsKey);
    const ca = read("client_ca", g.clientCa);
    // A unix: admin socket is plaintext: its certificate is not served. The
    // TLS context is built whatever else is wrong, so that a CA TLS refuses
    // is named in the same run as the config's problems.
    const caRead = g.clientCa === null || ca !== null;
    if (!g.addr.startsWith("unix:") && cert !== null && key !== null && caRead) {
      const refused = adminTlsError(g, cert, key, ca);
      if (refused !== null) problems.push(refused);
    }
  }
  const d = cfg.dashboard;
  if (d !== null && d.tlsCert !== null && d.tlsKey !== null) {
    const read = (key: string, path: string): Buffer | null => {
      try {
        return readDashboardFile(key, path);
      } catch (e) {
        problems.push((e as Error).message);
        return null;
      }
    };
    const cert = read("tls_cert", d.tlsCert);
    const key = read("tls_key", d.tlsKey);
    const mismatch = cert !== null && key !== null ? dashboardTlsError(d, cert, key) : null;
    if (mismatch !== null) problems.push(mismatch);
  }
  if (cfg.etcd !== null) {
    const e = cfg.etcd;
    const read = (key: string, path: string | null): Buffer | null => {
      if (path === null) return null;
      try {
        return readFileSync(path);
      } catch (err) {
        problems.push(`etcd.${key}: cannot read ${path}: ${(err as Error).message}`);
        return null;
      }
    };
    read("ca", e.ca);
    const cert = read("cert", e.cert);
    const key = read("key", e.key);
    if (cert !== null && key !== null) {
      const mismatch = keyPairError(cert, key, { key: "etcd.cert", path: e.cert! }, { key: "etcd.key", path: e.key! });
      if (mismatch !== null) problems.push(mismatch);
    }
  }
  // A FIFO or a device there would block the open (and `check`'s read) for ever.
  try {
    if (!statSync(cfg.databasePath).isFile())
      problems.push(`database.path: ${cfg.databasePath} is not a regular file (SQLite needs one)`);
  } catch {
    // Absent: the first start creates it.
  }
  const control = controlPathError(controlPath(cfg.databasePath));
  if (control !== null) problems.push(control);
  return problems;
}
