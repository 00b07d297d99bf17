/**
 * The `apolo-images` command line: `apolo image` commands without a Docker daemon.
 *
 * Run it with `deno run -A jsr:@apolo/images/cli --help`, or `deno task cli --help`
 * in the repository.
 *
 * @example
 * ```ts ignore
 * import { main } from "@apolo/images/cli";
 * const code = await main(["digest", "image:app:1.0"]);
 * ```
 *
 * @module
 */

import process from "node:process";
import { ImagesError } from "../errors.ts";
import { printable } from "../printable.ts";
import { runCommand } from "./commands.ts";
import { COMMAND_HELP, MAIN_HELP } from "./help.ts";
import { parseCommandLine, UsageError } from "./options.ts";

/** Exit code of a run cancelled by Ctrl-C, as shells report SIGINT. */
export const EXIT_ABORTED = 130;

/** Exit code of a run stopped by SIGTERM, as shells report it. */
export const EXIT_TERMINATED = 143;

/**
 * Runs the command line with `args` (without the program name) and returns the exit code:
 * 0 on success, 1 on an error, 2 on a usage error, 130 when cancelled, 143 when stopped.
 *
 * SIGINT (Ctrl-C) cancels: upload sessions are cancelled. SIGTERM (what CI runners send
 * on timeout) stops a push gracefully: no new chunk starts, chunks in flight finish, and
 * the upload sessions are kept so the same push run again resumes them (with --resumable); other commands
 * are cancelled. A second signal of either kind exits at once.
 */
export async function main(args: string[]): Promise<number> {
  let debug = args.includes("--debug");
  const abort = new AbortController();
  let interrupts = 0;
  const onInterrupt = () => {
    // The first Ctrl-C cancels cleanly; a second one leaves at once.
    if (++interrupts > 1) process.exit(EXIT_ABORTED);
    abort.abort(new ImagesError("interrupted", "ABORTED"));
  };
  process.on("SIGINT", onInterrupt);
  const suspend = new AbortController();
  let resumable = false;
  const onTerminate = () => {
    if (++interrupts > 1) process.exit(EXIT_TERMINATED);
    suspend.abort(new ImagesError("terminated", "SUSPENDED"));
    if (!resumable) abort.abort(new ImagesError("terminated", "ABORTED"));
  };
  process.on("SIGTERM", onTerminate);
  let deadline: ReturnType<typeof setTimeout> | undefined;
  let timedOut = "";
  try {
    const line = parseCommandLine(args, process.env);
    debug = line.debug;
    if (line.timeoutSeconds !== undefined) {
      const ms = Math.round(line.timeoutSeconds * 1000);
      deadline = setTimeout(() => {
        timedOut = `timed out after ${line.timeoutSeconds} s (--timeout)`;
        abort.abort(new ImagesError(timedOut, "TIMEOUT"));
      }, ms);
    }
    resumable = line.command === "push" && line.options.resumable === true;
    if (line.help) {
      process.stdout.write((line.command ? COMMAND_HELP[line.command] : MAIN_HELP) + "\n");
      return 0;
    }
    const work = runCommand(line, abort.signal, suspend.signal);
    if (line.command === "push" || line.command === "pull") {
      await work; // they stop on the signal themselves, after rolling back
    } else {
      // The other commands only read (or delete one manifest) and do not take the
      // signal: Ctrl-C stops waiting for them at once.
      work.catch(() => {});
      await Promise.race([
        work,
        new Promise<never>((_, reject) => {
          if (abort.signal.aborted) reject(abort.signal.reason);
          abort.signal.addEventListener("abort", () => reject(abort.signal.reason), {
            once: true,
          });
        }),
      ]);
    }
    return 0;
  } catch (error) {
    if (suspend.signal.aborted && !abort.signal.aborted) {
      process.stderr.write(
        "apolo-images: terminated; unfinished uploads were kept: run the same push again " +
          "to resume them\n",
      );
      return EXIT_TERMINATED;
    }
    if (timedOut && !interrupts) {
      process.stderr.write(`apolo-images: ${timedOut}; nothing was left half-written\n`);
      return 1;
    }
    if (abort.signal.aborted) {
      process.stderr.write("apolo-images: interrupted; nothing was left half-written\n");
      return suspend.signal.aborted ? EXIT_TERMINATED : EXIT_ABORTED;
    }
    if (error instanceof UsageError) {
      process.stderr.write(`apolo-images: ${error.message}\n${error.hint}\n`);
      return 2;
    }
    const message = error instanceof Error ? error.message : String(error);
    const known = error instanceof ImagesError;
    // One line, whatever a registry put in the message (escape sequences, newlines).
    process.stderr.write(
      `apolo-images: ${known ? "" : "unexpected error: "}${printable(message, 4000)}\n`,
    );
    if (debug && error instanceof Error && error.stack) process.stderr.write(error.stack + "\n");
    else if (!known) process.stderr.write("(run with --debug for details)\n");
    return 1;
  } finally {
    clearTimeout(deadline);
    process.off("SIGINT", onInterrupt);
    process.off("SIGTERM", onTerminate);
  }
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  process.exit(code);
}
