/**
 * Runs the command line in a child process with the runtime running the tests
 * (Deno or Bun), so the end-to-end tests exercise the CLI on both.
 */

import { Buffer } from "node:buffer";
import { spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { run, type RunResult } from "./tools.ts";

const CLI = fileURLToPath(new URL("../lib/cli/main.ts", import.meta.url));

/** Whether the tests run under Bun. */
export const isBun: boolean = "Bun" in globalThis;

/**
 * The command running `apolo-images`: the runtime and its arguments. On Deno it gets
 * `permissions` (Deno's flags, default `-A`); Bun has no permissions and runs the same
 * command line without them.
 */
export function cliCommand(permissions: string[] = ["-A"]): string[] {
  return isBun
    ? [process.execPath, CLI]
    : [process.execPath, "run", ...permissions, "--quiet", CLI];
}

/**
 * Runs `apolo-images ...args` (granted only `permissions` on Deno, default all); never
 * throws on a non-zero exit.
 */
export async function runCli(
  args: string[],
  env: Record<string, string> = {},
  input?: string,
  permissions?: string[],
): Promise<RunResult> {
  const [runtime, ...command] = cliCommand(permissions);
  return await run(runtime, [...command, ...args], {
    env: { NO_COLOR: "1", ...env },
    check: false,
    input,
  });
}

/** A command line running in a child process (see {@linkcode startCli}). */
export interface RunningCli {
  /** The child's pid. */
  pid: number;
  /** What it printed on stderr so far. */
  stderr(): string;
  /** Sends it a signal (e.g. `SIGINT`, as Ctrl-C does). */
  kill(signal: "SIGINT" | "SIGTERM" | "SIGKILL"): void;
  /** Its exit code (-1 when killed by a signal) and everything it printed. */
  done: Promise<RunResult>;
}

/**
 * Starts `apolo-images ...args` (granted only `permissions` on Deno, default all) in a
 * child process and returns at once, so a test can
 * watch it and signal it while it runs.
 */
export function startCli(
  args: string[],
  env: Record<string, string> = {},
  input?: string,
  permissions?: string[],
): RunningCli {
  const [runtime, ...command] = cliCommand(permissions);
  const child = spawn(runtime, [...command, ...args], {
    env: { ...process.env, NO_COLOR: "1", ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  const out: Uint8Array[] = [];
  const err: Uint8Array[] = [];
  child.stdout!.on("data", (d: Uint8Array) => out.push(d));
  child.stderr!.on("data", (d: Uint8Array) => err.push(d));
  child.stdin!.end(input ?? "");
  const done = new Promise<RunResult>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => {
      const stdoutBytes = new Uint8Array(Buffer.concat(out));
      resolve({
        code: code ?? -1,
        stdout: new TextDecoder().decode(stdoutBytes),
        stdoutBytes,
        stderr: Buffer.concat(err).toString("utf8"),
      });
    });
  });
  return {
    pid: child.pid!,
    stderr: () => Buffer.concat(err).toString("utf8"),
    // process.kill, not child.kill: Deno's child.kill makes a child that handles the
    // signal and exits with a code look killed by it.
    kill: (signal) => {
      if (child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(child.pid!, signal);
        } catch {
          // already gone
        }
      }
    },
    done,
  };
}
