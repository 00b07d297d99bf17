/**
 * The `apolo-images` command line: `apolo image` commands without a Docker daemon.
 *
 * Run it with `deno run jsr:@apolo/images/cli --help` (help needs no permission; README
 * lists the few each command needs), or `deno task cli --help` in the repository.
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
import { COMMAND_HELP, GLOBAL_HELP, MAIN_HELP } from "./help.ts";
import { parseCommandLine, UsageError } from "./options.ts";
import { isPermissionRefusal, requirePermissions } from "../permissions.ts";
import { VERSION } from "../version.ts";
import { uploadCancellations } from "../registry/upload_session.ts";

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
    abort.abort(new ImagesError("interrupted", "ABORTED")); // the live display stops first
    noteCancelling();
  };
  process.on("SIGINT", onInterrupt);
  const suspend = new AbortController();
  let resumable = false;
  let pushing = false;
  // Requests in flight finish (up to 30 s) so their sessions can be cancelled: say so.
  const noteCancelling = () => {
    if (pushing) {
      process.stderr.write(
        "\napolo-images: cancelling the uploads in flight (a second Ctrl-C quits at once)\n",
      );
    }
  };
  const onTerminate = () => {
    if (++interrupts > 1) process.exit(EXIT_TERMINATED);
    suspend.abort(new ImagesError("terminated", "SUSPENDED"));
    if (!resumable) {
      abort.abort(new ImagesError("terminated", "ABORTED"));
      noteCancelling();
    }
  };
  process.on("SIGTERM", onTerminate);
  let deadline: ReturnType<typeof setTimeout> | undefined;
  let timedOut = "";
  try {
    // Help and version need nothing: not even the environment (Deno: no --allow-env).
    const bare = parseCommandLine(args, {});
    if (bare.version) {
      process.stdout.write(`apolo-images ${VERSION}\n`);
      return 0;
    }
    if (bare.help) {
      const help = bare.command ? `${COMMAND_HELP[bare.command]}\n\n${GLOBAL_HELP}` : MAIN_HELP;
      process.stdout.write(help + "\n");
      return 0;
    }
    requirePermissions([{ name: "env" }], "the environment (APOLO_*, HOME, XDG_*, DOCKER_CONFIG)");
    const line = parseCommandLine(args, process.env);
    debug = line.debug;
    if (line.timeoutSeconds !== undefined) {
      deadline = setTimeout(() => {
        timedOut = `timed out after ${line.timeoutSeconds} s (--timeout)`;
        abort.abort(new ImagesError(timedOut, "TIMEOUT"));
      }, Math.round(line.timeoutSeconds * 1000));
    }
    pushing = line.command === "push";
    resumable = pushing && line.options.resumable === true;
    // Loaded only now: `--help` and usage errors start without the library (its
    // node:crypto and node:zlib alone take Deno tens of milliseconds to load).
    const { runCommand } = await import("./commands.ts");
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
      const how = suspend.signal.aborted ? "terminated" : "interrupted";
      process.stderr.write(`apolo-images: ${how}; ${whatWasCancelled()}\n`);
      return suspend.signal.aborted ? EXIT_TERMINATED : EXIT_ABORTED;
    }
    if (error instanceof UsageError) {
      process.stderr.write(`apolo-images: ${error.message}\n${error.hint}\n`);
      return 2;
    }
    const message = error instanceof Error ? error.message : String(error);
    // Deno refusing what it was not granted says which flag is missing: a known error
    const known = error instanceof ImagesError || isPermissionRefusal(error);
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

/** What an interrupted run undid: the upload sessions it cancelled, or could not. */
function whatWasCancelled(): string {
  const { cancelled, refused } = uploadCancellations();
  const sessions = (n: number) => `${n} upload session${n === 1 ? "" : "s"}`;
  const parts = [];
  if (cancelled > 0) parts.push(`cancelled ${sessions(cancelled)} at the registry`);
  if (refused > 0) {
    parts.push(`could not cancel ${sessions(refused)} (the registry purges them later)`);
  }
  parts.push("nothing was left half-written");
  return parts.join("; ");
}

if (import.meta.main) {
  const code = await main(process.argv.slice(2));
  process.exit(code);
}
