/**
 * The long soak: `deno task soak` (or `bun tests/soak.ts`). 200 push/pull rounds of an
 * image of about 26 MiB through the fault proxy, faults on about one request in five;
 * prints the figures and exits non-zero when any round corrupted an output or left
 * something behind.
 *
 * Options: `--rounds N` (default 200), `--seed N` (replays a run), `--rate P`
 * (default 0.2), `--scale X` (multiplies the biggest layers), `--stall-timeout MS` (the
 * client's stall timeout, default 1000; the proxy's stalls scale with it).
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { formatSoakSummary, runSoak, soakPassed } from "../testing/soak.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    rounds: { type: "string" },
    seed: { type: "string" },
    rate: { type: "string" },
    scale: { type: "string" },
    "stall-timeout": { type: "string" },
  },
});
const seed = values.seed !== undefined ? Number(values.seed) : Date.now() % 1_000_000;
console.log(`soak: seed ${seed} (replay with --seed ${seed})`);
const summary = await runSoak({
  rounds: Number(values.rounds ?? 200),
  seed,
  rate: values.rate !== undefined ? Number(values.rate) : 0.2,
  scale: values.scale !== undefined ? Number(values.scale) : 1,
  stallTimeoutMs: values["stall-timeout"] !== undefined ? Number(values["stall-timeout"]) : 1000,
  log: (line) => console.log(line),
});
console.log(formatSoakSummary(summary));
const passed = soakPassed(summary);
console.log(passed ? "soak: PASSED" : "soak: FAILED");
process.exit(passed ? 0 : 1);
