/**
 * Paths inside an archive: normalising entry names and link targets so that nothing
 * can point outside the archive.
 *
 * @module
 */

/**
 * The longest path (in UTF-16 code units, after normalising) looked up or indexed in an
 * archive: Linux's `PATH_MAX`. Longer names are refused, so a hostile archive or
 * `manifest.json` cannot make following links cost time or memory without bound.
 */
export const MAX_PATH_LENGTH = 4096;

/**
 * A path shortened for an error message (the first 200 characters and a count).
 *
 * @example
 * ```ts
 * import { showPath } from "./tar_path.ts";
 * showPath("a".repeat(300)); // "aaa…(300 characters)"
 * ```
 */
export function showPath(path: string): string {
  return path.length <= 200 ? path : `${path.slice(0, 200)}…(${path.length} characters)`;
}

/**
 * Normalises a path inside an archive: drops `./` and empty components, resolves `..`
 * and a trailing `/`. Returns `undefined` when the path is absolute or climbs above the
 * archive root. The archive root itself normalises to `""`.
 *
 * @example
 * ```ts
 * import { normalizeArchivePath } from "./tar_path.ts";
 * normalizeArchivePath("./blobs//sha256/ab"); // "blobs/sha256/ab"
 * normalizeArchivePath("../etc/passwd"); // undefined
 * ```
 */
export function normalizeArchivePath(path: string): string | undefined {
  if (path.startsWith("/")) return undefined;
  const parts: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (parts.length === 0) return undefined;
      parts.pop();
    } else parts.push(part);
  }
  return parts.join("/");
}

/**
 * The directory part of a normalised archive path (`""` for a top-level entry).
 *
 * @example
 * ```ts
 * import { archiveDirname } from "./tar_path.ts";
 * archiveDirname("abc/layer.tar"); // "abc"
 * ```
 */
export function archiveDirname(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "" : path.slice(0, slash);
}

/**
 * Joins a symlink's target to the directory holding the link, as the file system
 * would, and normalises it; `undefined` when the target is absolute or leaves the archive.
 *
 * @example
 * ```ts
 * import { resolveSymlinkTarget } from "./tar_path.ts";
 * resolveSymlinkTarget("abc", "../def.tar"); // "def.tar"
 * resolveSymlinkTarget("abc", "../../etc/passwd"); // undefined
 * ```
 */
export function resolveSymlinkTarget(linkDir: string, target: string): string | undefined {
  if (target.startsWith("/")) return undefined;
  return normalizeArchivePath(linkDir === "" ? target : `${linkDir}/${target}`);
}
