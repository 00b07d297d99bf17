/**
 * Temporary directories for tests: created under the system temp dir, removed by the
 * test that made them.
 *
 * @module
 */

import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Creates a fresh temporary directory.
 *
 * @example
 * ```ts
 * import { makeTempDir, removeTempDir } from "./fs.ts";
 * const dir = await makeTempDir("example");
 * await removeTempDir(dir);
 * ```
 */
export async function makeTempDir(prefix = "apolo-images-test"): Promise<string> {
  return await mkdtemp(join(tmpdir(), `${prefix}-`));
}

/**
 * Removes a temporary directory and everything in it (no error if it is gone).
 *
 * @example
 * ```ts
 * import { makeTempDir, removeTempDir } from "./fs.ts";
 * await removeTempDir(await makeTempDir());
 * ```
 */
export async function removeTempDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/**
 * Runs `fn` with a fresh temporary directory that is removed afterwards, whatever happens.
 *
 * @example
 * ```ts
 * import { withTempDir } from "./fs.ts";
 * await withTempDir(async (dir) => console.log(dir));
 * ```
 */
export async function withTempDir<T>(
  fn: (dir: string) => Promise<T>,
  prefix?: string,
): Promise<T> {
  const dir = await makeTempDir(prefix);
  try {
    return await fn(dir);
  } finally {
    await removeTempDir(dir);
  }
}

/**
 * The names in a directory, sorted (e.g. to check nothing half-written was left).
 *
 * @example
 * ```ts
 * import { listDir, withTempDir } from "./fs.ts";
 * await withTempDir(async (dir) => console.log(await listDir(dir))); // []
 * ```
 */
export async function listDir(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort();
}
