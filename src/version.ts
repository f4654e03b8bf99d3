// The version shown by `mc-proxy version` and the admin API, from package.json
// (inlined into the compiled binary at build time).
import pkg from "../package.json" with { type: "json" };

export const VERSION: string = pkg.version;
