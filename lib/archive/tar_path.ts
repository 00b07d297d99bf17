/**
 * Paths inside an archive: normalising entry names and link targets so that nothing
 * can point outside the archive.
 *
 * @module
 */

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
