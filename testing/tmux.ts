/**
 * Runs a command under a real pseudo-terminal: a private tmux server (its own socket in
 * a temporary folder, no user config) with one window of a given size, whose screen can
 * be read as a person would see it, resized, and sent keys (Ctrl-C).
 *
 * @example
 * ```ts ignore
 * import { startTerminal } from "./tmux.ts";
 * const term = await startTerminal(["echo", "hi"], { columns: 80, rows: 24 });
 * await term.exited();
 * console.log(await term.screen());
 * await term.close();
 * ```
 *
 * @module
 */

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { makeTempDir, removeTempDir } from "./fs.ts";
import { run } from "./tools.ts";

/** Options of {@linkcode startTerminal}. */
export interface TerminalOptions {
  /** Width, columns. */
  columns: number;
  /** Height, rows (default 40). */
  rows?: number;
  /** Environment of the command (on top of this process's). */
  env?: Record<string, string>;
}

/** A command running in a terminal. */
export interface Terminal {
  /** The visible screen, lines without trailing blanks, trailing empty lines dropped. */
  screen(): Promise<string[]>;
  /** Resizes the window. */
  resize(columns: number, rows?: number): Promise<void>;
  /** Sends keys as tmux names them (`C-c`). */
  sendKeys(...keys: string[]): Promise<void>;
  /** The command's exit code once it ended (polls, up to `timeoutMs`, default 120 s). */
  exited(timeoutMs?: number): Promise<number>;
  /** Kills the tmux server and removes its folder. */
  close(): Promise<void>;
}

const quote = (arg: string) => `'${arg.replaceAll("'", `'\\''`)}'`;

/** Starts `command` in a new terminal; see the module documentation. */
export async function startTerminal(
  command: string[],
  options: TerminalOptions,
): Promise<Terminal> {
  const dir = await makeTempDir("apolo-tmux");
  const socket = join(dir, "socket");
  const status = join(dir, "status");
  const tmux = (...args: string[]) =>
    run("tmux", ["-S", socket, "-f", "/dev/null", ...args], {
      env: { ...options.env, TERM: "xterm-256color" },
    });
  // The shell keeps the pane open after the command (so its last screen stays) and
  // writes the exit code where the test can find it.
  const script = `${command.map(quote).join(" ")}; echo $? > ${quote(status)}; exec sleep 600`;
  await tmux(
    "new-session",
    "-d",
    "-x",
    String(options.columns),
    "-y",
    String(options.rows ?? 40),
    "sh",
    "-c",
    script,
  );
  // tmux sizes the window to its clients; with none attached, keep the size given.
  await tmux("set-option", "-g", "window-size", "manual");
  return {
    screen: async () => {
      const { stdout } = await tmux("capture-pane", "-p");
      const lines = stdout.split("\n").map((l) => l.trimEnd());
      while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
      return lines;
    },
    resize: async (columns, rows) => {
      await tmux("resize-window", "-x", String(columns), "-y", String(rows ?? options.rows ?? 40));
    },
    sendKeys: async (...keys) => {
      await tmux("send-keys", ...keys);
    },
    exited: async (timeoutMs = 120_000) => {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const text = await readFile(status, "utf8").catch(() => "");
        if (text.trim() !== "") return Number(text.trim());
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      throw new Error(`the command did not end within ${timeoutMs} ms`);
    },
    close: async () => {
      await tmux("kill-server").catch(() => {});
      await removeTempDir(dir);
    },
  };
}
