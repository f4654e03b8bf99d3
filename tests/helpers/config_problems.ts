// The problems the config reader finds in a TOML text (none: an empty list),
// as `check` would print them.
import { ConfigError } from "../../src/config/config";
import { parseRoutedConfig } from "../../src/routing/route_config";

export function problems(toml: string): string[] {
  try {
    parseRoutedConfig(toml, "t.toml");
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}
