/**
 * Several processes writing one OCI layout directory: a lock file around the read,
 * merge and replacement of `index.json` (so no writer's image is lost to another's
 * update), and the set of blobs the images in `index.json` use (so a writer rolling
 * back never removes a blob another writer's image has come to rely on).
 *
 * The lock is `index.json.lock`, created exclusively (`O_EXCL`) and holding its owner's
 * pid, host and time. A lock whose owner is gone (same host, no such process) or that
 * is older than {@linkcode LOCK_STALE_MS} is taken as abandoned and broken.
 *
 * @module
 */

import { hostname } from "node:os";
import { open, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { ImagesError } from "../errors.ts";
import { digestHex, isDigest } from "../oci/digest.ts";
import { type Descriptor, MAX_MANIFEST_BYTES, parseManifest } from "../oci/manifest.ts";
import { allowed } from "../permissions.ts";
import { errorCode, removeFile, writeAt } from "./file_io.ts";

/** The lock file's name inside the layout. */
export const LOCK_NAME = "index.json.lock";
/** How long a writer waits for the lock before giving up, ms. */
export const LOCK_WAIT_MS = 60_000;
/** A lock older than this is taken as abandoned, ms (a commit holds it for milliseconds). */
export const LOCK_STALE_MS = 30_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * This machine's name, when the runtime gives it without asking (Deno needs
 * `--allow-sys=hostname`, which a pull does not ask for): without it, a lock is judged
 * abandoned by its age alone.
 */
function thisHost(): string | undefined {
  if (!allowed({ name: "sys", kind: "hostname" })) return undefined;
  try {
    return hostname();
  } catch {
    return undefined;
  }
}

/** Whether the lock at `path` (whose text is `text`) was left by a writer that is gone. */
async function abandoned(path: string, text: string): Promise<boolean> {
  let age = 0;
  try {
    age = Date.now() - (await stat(path)).mtimeMs;
  } catch {
    return false; // gone already: try again
  }
  if (age > LOCK_STALE_MS) return true;
  try {
    const owner = JSON.parse(text) as { pid?: unknown; host?: unknown };
    const host = thisHost();
    if (host === undefined || owner.host !== host || typeof owner.pid !== "number") return false;
    if (owner.pid === process.pid || !allowed({ name: "run" })) return false;
    try {
      process.kill(owner.pid, 0);
      return false;
    } catch (e) {
      return errorCode(e) === "ESRCH"; // no such process (without permission to ask: unknown)
    }
  } catch {
    return false; // being written, or not ours to judge: wait
  }
}

/**
 * Runs `fn` holding the lock of the layout `dir`; waits up to {@linkcode LOCK_WAIT_MS}
 * for another writer to release it.
 *
 * @example
 * ```ts ignore
 * import { withLayoutLock } from "./layout_lock.ts";
 * await withLayoutLock("/tmp/layout", async () => {
 *   // read, merge and replace index.json
 * });
 * ```
 */
export async function withLayoutLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const path = join(dir, LOCK_NAME);
  const deadline = Date.now() + LOCK_WAIT_MS;
  let pause = 2;
  for (;;) {
    let handle;
    try {
      handle = await open(path, "wx", 0o644);
    } catch (e) {
      if (errorCode(e) !== "EEXIST") throw e;
      const text = await readFile(path, "utf8").catch(() => "");
      if (await abandoned(path, text)) {
        // Break it only if it is still the lock judged abandoned.
        if ((await readFile(path, "utf8").catch(() => undefined)) === text) {
          await removeFile(path);
        }
        continue;
      }
      if (Date.now() > deadline) {
        throw new ImagesError(
          `${dir}: another process has held ${LOCK_NAME} for over ${
            LOCK_WAIT_MS / 1000
          } s; if no other pull into this layout is running, remove ${path}`,
          "LAYOUT_LOCKED",
        );
      }
      await sleep(pause);
      pause = Math.min(pause * 2, 100);
      continue;
    }
    try {
      const owner = { pid: process.pid, host: thisHost(), since: new Date().toISOString() };
      await writeAt(handle, 0, new TextEncoder().encode(JSON.stringify(owner)));
    } catch (e) {
      await handle.close().catch(() => {});
      await removeFile(path);
      throw e;
    }
    await handle.close();
    try {
      return await fn();
    } finally {
      await removeFile(path);
    }
  }
}

/**
 * The digests of every blob the images listed in the layout's `index.json` use:
 * manifests and indexes (followed down), configs and layers. A manifest that cannot be
 * read counts only as itself. Missing `index.json`: nothing is used.
 *
 * @example
 * ```ts ignore
 * import { referencedBlobs } from "./layout_lock.ts";
 * const used = await referencedBlobs("/tmp/layout");
 * ```
 */
export async function referencedBlobs(dir: string): Promise<Set<string>> {
  const used = new Set<string>();
  let top: Uint8Array;
  try {
    top = new Uint8Array(await readFile(join(dir, "index.json")));
  } catch (e) {
    if (errorCode(e) === "ENOENT") return used;
    throw e;
  }
  const visit = async (descriptors: Descriptor[], depth: number): Promise<void> => {
    for (const d of descriptors) {
      if (!isDigest(d.digest) || used.has(d.digest)) continue;
      used.add(d.digest);
      if (depth > 8 || d.size > MAX_MANIFEST_BYTES) continue;
      let parsed;
      try {
        const bytes = new Uint8Array(
          await readFile(join(dir, "blobs", "sha256", digestHex(d.digest))),
        );
        parsed = parseManifest(bytes, d.digest, d.mediaType);
      } catch {
        continue; // not a manifest we can read: it uses nothing we know of
      }
      if (parsed.kind === "index") await visit(parsed.index.manifests, depth + 1);
      else {
        for (const blob of [parsed.manifest.config, ...parsed.manifest.layers]) {
          if (isDigest(blob.digest)) used.add(blob.digest);
        }
      }
    }
  };
  const parsed = parseManifest(top, "index.json");
  await visit(parsed.kind === "index" ? parsed.index.manifests : [], 0);
  return used;
}
