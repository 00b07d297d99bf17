/**
 * Runs the command line in a child process with the runtime running the tests
 * (Deno or Bun), so the end-to-end tests exercise the CLI on both.
 */

import process from "node:process";
import { fileURLToPath } from "node:url";
import { run, type RunResult } from "./tools.ts";

const CLI = fileURLToPath(new URL("../../lib/cli/main.ts", import.meta.url));

/** Whether the tests run under Bun. */
export const isBun: boolean = "Bun" in globalThis;

/** Runs `apolo-images ...args`; never throws on a non-zero exit. */
export async function runCli(
  args: string[],
  env: Record<string, string> = {},
  input?: string,
): Promise<RunResult> {
  const command = isBun ? [CLI] : ["run", "-A", "--quiet", CLI];
  return await run(process.execPath, [...command, ...args], {
    env: { NO_COLOR: "1", ...env },
    check: false,
    input,
  });
}
