// mc-proxy entry point: `mc-proxy COMMAND [flags]`.
import { runCli } from "./cli/cli";

const code = await runCli(process.argv.slice(2));
process.exit(code);
