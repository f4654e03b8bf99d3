// `grpcurl …` where grpcurl is not installed: the same call made with
// `buf curl` (RECIPE_BUF names the binary), saying so on stderr. Put on PATH
// as `grpcurl` by tests/e2e/docs_recipes.test.ts.
import { grpcurlAsBufCurl } from "./recipes";

const buf = process.env.RECIPE_BUF;
if (buf === undefined) throw new Error("RECIPE_BUF is not set");
const args = grpcurlAsBufCurl(process.argv.slice(2));
console.error(`grpcurl is not installed: ran as buf ${args.join(" ")}`);
const r = Bun.spawnSync([buf, ...args], { stdout: "inherit", stderr: "inherit" });
process.exit(r.exitCode ?? 1);
