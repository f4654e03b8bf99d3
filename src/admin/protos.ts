// The .proto files the admin plane serves, embedded in the binary as text and
// turned into grpc-js package definitions at start-up. Each file keeps its
// repository path as its descriptor name, which is what reflection clients
// (grpcurl, buf curl) show and ask for.
import { type Options, type PackageDefinition, loadFileDescriptorSetFromBuffer } from "@grpc/proto-loader";
import protobuf from "protobufjs";
import type { SendProxy } from "../config/types";
import descriptor from "protobufjs/ext/descriptor";
import adminText from "../../proto/mc_proxy/v1/admin.proto" with { type: "text" };
import healthText from "../../proto/grpc/health/v1/health.proto" with { type: "text" };
import reflectionV1Text from "../../proto/grpc/reflection/v1/reflection.proto" with { type: "text" };
import reflectionV1AlphaText from "../../proto/grpc/reflection/v1alpha/reflection.proto" with { type: "text" };

/** Field names as in the .proto (snake_case), int64 as JS numbers, enums as names. */
export const ADMIN_LOADER_OPTIONS: Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};
/** What @grpc/reflection's handlers expect its own messages to look like (camelCase). */
const REFLECTION_LOADER_OPTIONS: Options = {
  keepCase: false,
  longs: String,
  enums: String,
  bytes: Array,
  defaults: true,
  oneofs: true,
};

function definition(name: string, text: string, options: Options): PackageDefinition {
  const root = new protobuf.Root();
  // Loading from a descriptor set ignores proto-loader's keepCase, so the
  // field-name style is fixed here, at parse time (field numbers are what
  // goes on the wire either way).
  protobuf.parse(text, root, { keepCase: options.keepCase === true });
  root.resolveAll();
  const set = (root as unknown as { toDescriptor(syntax: string): { file: { name: string }[] } }).toDescriptor(
    "proto3",
  );
  if (set.file.length !== 1) throw new Error(`${name}: expected one file descriptor, got ${set.file.length}`);
  set.file[0]!.name = name;
  const bytes = descriptor.FileDescriptorSet.encode(set as unknown as descriptor.IFileDescriptorSet).finish();
  return loadFileDescriptorSetFromBuffer(Buffer.from(bytes), options);
}

export const ADMIN_PROTO_FILE = "mc_proxy/v1/admin.proto";

/** The FirewallRuleType enum names, by the short rule type the store and the CLI use. */
export const RULE_TYPE_ENUM = {
  ip: "FIREWALL_RULE_TYPE_IP",
  cidr: "FIREWALL_RULE_TYPE_CIDR",
  country: "FIREWALL_RULE_TYPE_COUNTRY",
  ja4: "FIREWALL_RULE_TYPE_JA4",
} as const;
export type ShortRuleType = keyof typeof RULE_TYPE_ENUM;

/** "ip", "cidr" or "country" for a FirewallRuleType enum name; undefined for any other name. */
export function shortRuleType(enumName: string): ShortRuleType | undefined {
  return (Object.keys(RULE_TYPE_ENUM) as ShortRuleType[]).find((k) => RULE_TYPE_ENUM[k] === enumName);
}
/** The SendProxyProtocol enum names, by the short form the config, the store and the CLI use. */
export const SEND_PROXY_ENUM = {
  off: "SEND_PROXY_PROTOCOL_OFF",
  v1: "SEND_PROXY_PROTOCOL_V1",
  v2: "SEND_PROXY_PROTOCOL_V2",
} as const;

/** "off", "v1" or "v2" for an enum name (UNSPECIFIED, from an older client, is "off"); undefined for any other. */
export function shortSendProxy(enumName: string | undefined): SendProxy | undefined {
  if (enumName === undefined || enumName === "" || enumName === "SEND_PROXY_PROTOCOL_UNSPECIFIED") return "off";
  return (Object.keys(SEND_PROXY_ENUM) as SendProxy[]).find((k) => SEND_PROXY_ENUM[k] === enumName);
}

export const BALANCE_ENUM = {
  round_robin: "BALANCE_ROUND_ROBIN",
  least_connections: "BALANCE_LEAST_CONNECTIONS",
  source_hash: "BALANCE_SOURCE_HASH",
} as const;
export const HEALTH_CHECK_ENUM = { off: "HEALTH_CHECK_OFF", tcp: "HEALTH_CHECK_TCP", tls: "HEALTH_CHECK_TLS" } as const;
export const BACKEND_STATE_ENUM = {
  enabled: "BACKEND_STATE_ENABLED",
  drain: "BACKEND_STATE_DRAIN",
  disabled: "BACKEND_STATE_DISABLED",
} as const;

/** The short name for an enum name from `table`; `unspecified` for the zero value (or an older client that sent nothing). */
export function fromEnum<T extends Record<string, string>>(
  table: T,
  name: string | undefined,
  unspecified: keyof T | null,
): keyof T | null | undefined {
  if (name === undefined || name === "" || name.endsWith("_UNSPECIFIED")) return unspecified;
  return (Object.keys(table) as (keyof T)[]).find((k) => table[k] === name);
}

export const ADMIN_SERVICE = "mc_proxy.v1.ProxyAdminService";

/**
 * Trailing metadata key on every error the admin server sends, so a client
 * can tell "the server answered UNAVAILABLE (database locked)" from "the
 * server could not be reached" (both are UNAVAILABLE in gRPC).
 */
export const ANSWERED_HEADER = "mc-proxy-answered";
export const HEALTH_SERVICE = "grpc.health.v1.Health";

export function adminDefinition(): PackageDefinition {
  return definition(ADMIN_PROTO_FILE, adminText, ADMIN_LOADER_OPTIONS);
}

export function healthDefinition(): PackageDefinition {
  return definition("grpc/health/v1/health.proto", healthText, ADMIN_LOADER_OPTIONS);
}

export function reflectionDefinitions(): { v1: PackageDefinition; v1alpha: PackageDefinition } {
  return {
    v1: definition("grpc/reflection/v1/reflection.proto", reflectionV1Text, REFLECTION_LOADER_OPTIONS),
    v1alpha: definition("grpc/reflection/v1alpha/reflection.proto", reflectionV1AlphaText, REFLECTION_LOADER_OPTIONS),
  };
}
