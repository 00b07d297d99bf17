/**
 * Temporary files named for the process that writes them (`<name>.tmp-<pid>-<random>`),
 * so that a run killed before it could clean up (SIGKILL, a power cut) leaves files the
 * next run on the same output recognises: their process is gone, and they are removed.
 * Files of a process still running (another pull into the same layout) are left alone.
 *
 * @module
 */

import { randomBytes } from "node:crypto";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";

/**
 * A temporary name for `name` in the same folder: `<name>.tmp-<pid>-<random>` (just
 * `.tmp-<pid>-<random>` for an empty `name`).
 *
 * @example
 * ```ts
 * import { tempName } from "./temp_files.ts";
 * tempName("out.tar"); // e.g. "out.tar.tmp-4242-9f86d081884c"
 * ```
 */
export function tempName(name = ""): string {
  return `${name}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`;
}

/**
 * Removes the temporary files of `name` in `dir` (as {@linkcode tempName} makes them,
 * and anything named after them, such as spool files) whose process is no longer
 * running. Returns how many went; never throws (a folder that cannot be read is left).
 *
 * @example
 * ```ts
 * import { removeDeadTemps } from "./temp_files.ts";
 * await removeDeadTemps("/tmp", "out.tar");
 * ```
 */
export async function removeDeadTemps(dir: string, name = ""): Promise<number> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch {
    return 0;
  }
  const prefix = `${name}.tmp-`;
  let removed = 0;
  for (const entry of entries) {
    if (!entry.startsWith(prefix)) continue;
    const pid = /^(\d+)-[0-9a-f]+/.exec(entry.slice(prefix.length))?.[1];
    if (pid === undefined || isRunning(Number(pid))) continue;
    try {
      await rm(join(dir, entry), { force: true, recursive: true });
      removed++;
    } catch {
      // not ours to remove after all (permissions): leave it
    }
  }
  return removed;
}

/** Whether process `pid` exists (ours included; one of another user's counts as running). */
function isRunning(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return true;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code !== "ESRCH";
  }
}
