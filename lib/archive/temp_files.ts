/**
 * Temporary files named for the process that writes them
 * (`<name>.tmp-<pid>-<host>-<random>`), so that a run killed before it could clean up
 * (SIGKILL, a power cut) leaves files the next run on the same output recognises: their
 * process is gone (or they were untouched for an hour), and they are removed. Files of
 * a process still running (another pull into the same layout) are left alone.
 *
 * @module
 */

import { createHash, randomBytes } from "node:crypto";
import { readdir, rm, stat } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { allowed } from "../permissions.ts";

/** Temporary files untouched this long are taken as abandoned whoever wrote them. */
export const TEMP_STALE_MS = 60 * 60 * 1000;

let host: string | undefined;

/**
 * This host, shortly (8 hex digits): a pid only means something on the host that gave
 * it. `00000000` when the name cannot be read (Deno without `--allow-sys`): such files
 * are judged by age only.
 */
function hostTag(): string {
  if (host === undefined) {
    host = UNKNOWN_HOST;
    // Asked only when granted already: Deno is never made to prompt for it.
    if (allowed({ name: "sys", kind: "hostname" })) {
      try {
        host = createHash("sha256").update(hostname()).digest("hex").slice(0, 8);
      } catch {
        // unknown
      }
    }
  }
  return host;
}
const UNKNOWN_HOST = "00000000";

/**
 * A temporary name for `name` in the same folder: `<name>.tmp-<pid>-<host>-<random>`
 * (just `.tmp-…` for an empty `name`).
 *
 * @example
 * ```ts
 * import { tempName } from "./temp_files.ts";
 * tempName("out.tar"); // e.g. "out.tar.tmp-4242-1a2b3c4d-9f86d081884c"
 * ```
 */
export function tempName(name = ""): string {
  return `${name}.tmp-${process.pid}-${hostTag()}-${randomBytes(6).toString("hex")}`;
}

/**
 * Removes the temporary files of `name` in `dir` (as {@linkcode tempName} makes them,
 * and anything named after them, such as spool files) that a run which is gone left:
 * their process no longer exists on this host (Deno needs `--allow-run` to ask), or
 * they were not touched for {@linkcode TEMP_STALE_MS}. Returns how many went; never
 * throws (a folder that cannot be read is left as it is).
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
    const owner = /^(\d+)-([0-9a-f]{8})-[0-9a-f]+/.exec(entry.slice(prefix.length));
    if (!owner) continue;
    const path = join(dir, entry);
    const here = owner[2] === hostTag() && owner[2] !== UNKNOWN_HOST;
    const gone = (here && processGone(Number(owner[1]))) || await stale(path);
    if (!gone) continue;
    try {
      await rm(path, { force: true, recursive: true });
      removed++;
    } catch {
      // not ours to remove after all (permissions): leave it
    }
  }
  return removed;
}

/** Whether process `pid` surely does not exist on this host (unknown counts as existing). */
function processGone(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return false;
  if (!allowed({ name: "run" })) return false; // Deno without --allow-run: cannot ask
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as { code?: string }).code === "ESRCH";
  }
}

async function stale(path: string): Promise<boolean> {
  try {
    return Date.now() - (await stat(path)).mtimeMs > TEMP_STALE_MS;
  } catch {
    return false;
  }
}
