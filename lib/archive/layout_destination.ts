/**
 * Writing images into an OCI layout directory (`oci:`), where several images live side
 * by side and share blobs.
 *
 * Blobs are written to temporary names inside `blobs/sha256/` and renamed into place
 * once verified; a blob already present is not written again. `commit` replaces
 * `index.json` atomically (write to a temporary file, then rename), dropping an
 * existing entry of the same name. `abort` removes the blobs this destination added
 * (and the directory, when it created it). Blobs of images replaced in `index.json`
 * are left in place, as other tools do.
 *
 * @module
 */

import { basename, dirname, resolve } from "node:path";
import {
  mkdir,
  open,
  readdir,
  realpath,
  rename,
  rm,
  rmdir,
  stat,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { AbortedError, ArchiveError, ImagesError } from "../errors.ts";
import type { BlobInfo, ImageDestination, TransferOptions } from "../copy/ends.ts";
import {
  checkDigest,
  DigestCounter,
  streamDigest,
  Verifier,
  vouchedDigest,
} from "../oci/digest.ts";
import { type Descriptor, MAX_MANIFEST_BYTES, parseManifest } from "../oci/manifest.ts";
import { MediaType } from "../oci/media_types.ts";
import { errorCode, fsProblem, rangeStream, readAt, removeFile, writeAt } from "./file_io.ts";
import { ImageSet } from "./image_set.ts";
import { blobPath, indexEntryName, inEntry, jsonBytes, OCI_LAYOUT_BYTES } from "./layout_files.ts";
import { sameImageName } from "./names.ts";
import { removeDeadTemps, tempName } from "./temp_files.ts";
import { referencedBlobs, withLayoutLock } from "./layout_lock.ts";

/**
 * Removes a layout directory this writer created, if nothing but its own empty
 * skeleton is left in it (another process may have written into it meanwhile).
 */
async function removeIfEmpty(dir: string): Promise<boolean> {
  try {
    await rmdir(join(dir, "blobs", "sha256"));
    await rmdir(join(dir, "blobs"));
    const left = await readdir(dir);
    if (left.some((name) => name !== "oci-layout")) return false;
    await removeFile(join(dir, "oci-layout"));
    await rmdir(dir);
    return true;
  } catch {
    // not empty, or gone: leave it
    return false;
  }
}

/**
 * Removes the folders above `dir` up to `first` (the first one a recursive `mkdir`
 * created), deepest first, as long as they are empty: a failed run leaves no folder
 * it made. Another process's files in one of them stop it there.
 */
async function removeEmptyParents(dir: string, first: string | undefined): Promise<void> {
  if (first === undefined) return;
  const top = resolve(first);
  for (let at = dirname(resolve(dir)); at.length >= top.length; at = dirname(at)) {
    try {
      await rmdir(at);
    } catch {
      return;
    }
    if (at === top) return;
  }
}

/** `sha256:<hex>` of a file's first `size` bytes, read a chunk at a time. */
async function fileDigest(path: string, size: number): Promise<string> {
  const handle = await open(path, "r");
  try {
    return await streamDigest(rangeStream(handle, 0, size));
  } finally {
    await handle.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    if (errorCode(e) === "ENOENT") return false;
    throw e;
  }
}

/**
 * Opens (creating it if needed) an OCI layout directory as an {@linkcode ImageDestination}.
 * A non-empty directory that is not an OCI layout is refused.
 *
 * @example
 * ```ts
 * import { openOciLayoutDestination } from "./layout_destination.ts";
 * const dest = await openOciLayoutDestination("/tmp/layout");
 * await dest.abort();
 * ```
 */
export async function openOciLayoutDestination(dir: string): Promise<OciLayoutDestination> {
  let created = false;
  /** The first of the folders above `dir` this call created, if it created any. */
  let parents: string | undefined;
  if (await exists(dir)) {
    const info = await stat(dir);
    if (!info.isDirectory()) throw new ArchiveError(dir, undefined, "is not a directory");
    const entries = await readdir(dir);
    if (entries.length > 0 && !entries.includes("oci-layout")) {
      throw new ArchiveError(
        dir,
        "oci-layout",
        "missing: the directory is not empty and not an OCI layout",
      );
    }
  } else {
    // Create it with a plain mkdir: of two processes creating it at once, only one
    // owns it (and may remove it on abort). Its oci-layout goes in first, so the other
    // one sees a layout being made, not a directory of something else.
    try {
      // The parent only when missing: a run allowed to write only the layout's folder
      // (Deno) must not touch the one above.
      await mkdir(dir).catch(async (e) => {
        if (errorCode(e) !== "ENOENT") throw e;
        parents = await mkdir(dirname(dir), { recursive: true });
        await mkdir(dir);
      });
      created = true;
      await writeFile(join(dir, "oci-layout"), OCI_LAYOUT_BYTES, { flag: "wx" });
    } catch (e) {
      if (created) await rm(dir, { recursive: true, force: true });
      await removeEmptyParents(dir, parents);
      if (errorCode(e) !== "EEXIST" || created) throw e;
      parents = undefined;
    }
  }
  try {
    await checkBlobsDirectory(dir, created);
  } catch (e) {
    if (created) await removeEmptyParents(dir, parents);
    throw e;
  }
  if (!created) {
    // Blobs and index files a killed run left half-written.
    await removeDeadTemps(join(dir, "blobs", "sha256"));
    await removeDeadTemps(dir);
  }
  return new OciLayoutDestination(dir, created, created ? parents : undefined);
}

/**
 * Makes sure `blobs/sha256` exists and is a directory inside `dir`. Blobs are created in
 * it, so a layout whose `blobs/` or `blobs/sha256/` is a link to elsewhere would have us
 * write outside the directory: it is refused.
 */
async function checkBlobsDirectory(dir: string, created: boolean): Promise<void> {
  const blobsDir = join(dir, "blobs", "sha256");
  const refuse = async (problem: string, cause?: unknown): Promise<never> => {
    if (created) await rm(dir, { recursive: true, force: true });
    throw new ArchiveError(dir, "blobs/sha256", problem, cause ? { cause } : undefined);
  };
  try {
    await mkdir(blobsDir, { recursive: true });
  } catch (e) {
    // EEXIST: something that is not a plain directory is there (a file, or a link).
    if (errorCode(e) !== "EEXIST") return await refuse(fsProblem(e), e);
  }
  let root: string;
  let blobs: string;
  try {
    [root, blobs] = await Promise.all([realpath(dir), realpath(blobsDir)]);
  } catch (e) {
    return await refuse(fsProblem(e), e);
  }
  if (blobs !== join(root, "blobs", "sha256")) {
    return await refuse(`is a link to ${blobs}: blobs must be stored inside the layout directory`);
  }
  if (!(await stat(blobs)).isDirectory()) await refuse("is not a directory");
}

/**
 * An OCI layout directory being written; see {@linkcode openOciLayoutDestination}.
 *
 * @example
 * ```ts
 * import { openOciLayoutDestination } from "./layout_destination.ts";
 * const dest = await openOciLayoutDestination("/tmp/layout-example");
 * const d = await dest.putBlob(new Blob(["{}"]).stream(), { mediaType: "application/json" });
 * console.log(await dest.hasBlob(d)); // true
 * await dest.abort();
 * ```
 */
export class OciLayoutDestination implements ImageDestination {
  /** The layout directory. */
  readonly location: string;
  /** An OCI layout holds OCI media types only (umoci, skopeo and podman look for them). */
  readonly ociOnly = true;
  #created: boolean;
  #parents?: string;
  #added: string[] = [];
  #temps = new Set<string>();
  #images: ImageSet;
  #state: "open" | "committed" | "aborted" = "open";

  /** Use {@linkcode openOciLayoutDestination}. */
  constructor(dir: string, created: boolean, parents?: string) {
    this.location = dir;
    this.#created = created;
    this.#parents = parents;
    this.#images = new ImageSet(dir);
  }

  #checkOpen(): void {
    if (this.#state !== "open") {
      throw new ImagesError(`${this.location}: destination already ${this.#state}`, "STATE");
    }
  }

  /**
   * Whether `blobs/sha256/<hex>` exists with the descriptor's size.
   *
   * @example
   * ```ts
   * import { openOciLayoutDestination } from "./layout_destination.ts";
   * const dest = await openOciLayoutDestination("/tmp/layout-has");
   * console.log(await dest.hasBlob({ mediaType: "x", digest: "sha256:" + "0".repeat(64), size: 1 }));
   * await dest.abort();
   * ```
   */
  async hasBlob(descriptor: Descriptor): Promise<boolean> {
    checkDigest(descriptor.digest, `blob for ${this.location}`);
    const path = join(this.location, blobPath(descriptor.digest));
    try {
      const info = await stat(path);
      if (!info.isFile() || info.size !== descriptor.size) return false;
      // The right size is not the right content (a damaged or planted file): it is
      // hashed again before being relied on, as a downloaded blob is hashed anyway.
      return await fileDigest(path, info.size) === descriptor.digest;
    } catch (e) {
      if (errorCode(e) === "ENOENT") return false;
      throw e;
    }
  }

  /**
   * Stores a blob (verified while it streams to a temporary name, then renamed into
   * `blobs/sha256/<hex>`); a blob already present is not written again.
   *
   * @example
   * ```ts
   * import { openOciLayoutDestination } from "./layout_destination.ts";
   * const dest = await openOciLayoutDestination("/tmp/layout-put");
   * await dest.putBlob(new Blob(["x"]).stream(), { mediaType: "application/octet-stream" });
   * await dest.abort();
   * ```
   */
  async putBlob(
    stream: ReadableStream<Uint8Array>,
    info: BlobInfo,
    options: TransferOptions = {},
  ): Promise<Descriptor> {
    this.#checkOpen();
    if (info.digest !== undefined && info.size !== undefined) {
      const known = { mediaType: info.mediaType, digest: info.digest, size: info.size };
      if (await this.hasBlob(known)) {
        await stream.cancel().catch(() => {});
        return known;
      }
    }
    const temp = join(this.location, "blobs", "sha256", tempName());
    this.#temps.add(temp);
    const what = `blob written to ${this.location}`;
    const check = new Verifier(
      { digest: info.digest, size: info.size, what },
      new DigestCounter(vouchedDigest(stream, info.digest)),
    );
    const handle = await open(temp, "wx", 0o644);
    try {
      const reader = stream.getReader();
      try {
        for (;;) {
          if (options.signal?.aborted) throw new AbortedError(`writing a ${what}`);
          const { done, value } = await reader.read();
          if (done) break;
          const at = check.size;
          check.update(value);
          await writeAt(handle, at, value);
          options.onProgress?.(check.size);
        }
      } catch (e) {
        await reader.cancel(e).catch(() => {});
        throw e;
      }
      await handle.close();
      const digest = check.end();
      const final = join(this.location, blobPath(digest));
      // Renamed over what is there, if anything: a file of other content under this
      // name (hasBlob said no) is replaced; one of the same content, written meanwhile
      // by another process, is replaced by equal bytes.
      const existed = await exists(final);
      await rename(temp, final);
      if (!existed) this.#added.push(final);
      return { mediaType: info.mediaType, digest, size: check.size };
    } finally {
      await handle.close().catch(() => {});
      await removeFile(temp);
      this.#temps.delete(temp);
    }
  }

  /**
   * Stores a manifest or index as a blob; with a `name` it is listed in `index.json`
   * at commit. Put the platform manifests of an index before the index.
   *
   * @example
   * ```ts
   * import { openOciLayoutDestination } from "./layout_destination.ts";
   * const dest = await openOciLayoutDestination("/tmp/layout-manifest");
   * // await dest.putManifest(bytes, descriptor, "nginx:latest");
   * await dest.abort();
   * ```
   */
  async putManifest(bytes: Uint8Array, descriptor: Descriptor, name?: string): Promise<void> {
    this.#checkOpen();
    const full = this.#images.add(bytes, descriptor, name);
    await this.putBlob(new Blob([bytes as BlobPart]).stream(), full);
  }

  async #readIndex(): Promise<Record<string, unknown> & { manifests: Descriptor[] }> {
    const path = join(this.location, "index.json");
    let handle;
    try {
      handle = await open(path, "r");
    } catch (e) {
      if (errorCode(e) === "ENOENT") return { schemaVersion: 2, manifests: [] };
      throw e;
    }
    let bytes: Uint8Array;
    try {
      const { size } = await handle.stat();
      if (size > MAX_MANIFEST_BYTES) {
        throw new ArchiveError(this.location, "index.json", `${size} bytes is over the limit`);
      }
      bytes = await readAt(handle, 0, size);
    } finally {
      await handle.close();
    }
    const parsed = inEntry(this.location, "index.json", () => parseManifest(bytes, "index.json"));
    if (parsed.kind !== "index") {
      throw new ArchiveError(this.location, "index.json", "is a manifest, expected an image index");
    }
    return parsed.index as unknown as Record<string, unknown> & { manifests: Descriptor[] };
  }

  async #replace(name: string, bytes: Uint8Array): Promise<void> {
    const temp = join(this.location, tempName());
    this.#temps.add(temp);
    try {
      const handle = await open(temp, "wx", 0o644);
      try {
        await writeAt(handle, 0, bytes);
      } finally {
        await handle.close();
      }
      await rename(temp, join(this.location, name));
    } finally {
      await removeFile(temp);
      this.#temps.delete(temp);
    }
  }

  /**
   * Checks every blob the new images need is present, then replaces `index.json`
   * atomically with the new images added (an entry of the same name is replaced).
   *
   * @example
   * ```ts
   * import { openOciLayoutDestination } from "./layout_destination.ts";
   * const dest = await openOciLayoutDestination("/tmp/layout-commit");
   * await dest.commit();
   * ```
   */
  async commit(): Promise<void> {
    this.#checkOpen();
    try {
      // Another process may be committing into the same layout: read, merge and replace
      // index.json holding the lock, so neither image is lost.
      await withLayoutLock(this.location, () => this.#commitLocked());
      this.#state = "committed";
    } catch (e) {
      await this.abort();
      throw e;
    }
  }

  /** Checks the blobs and replaces index.json; holds the layout's lock. */
  async #commitLocked(): Promise<void> {
    const tops = this.#images.tops();
    for (const [digest, what] of this.#images.requiredBlobs(tops)) {
      if (!(await exists(join(this.location, blobPath(digest))))) {
        throw new ImagesError(
          `${this.location}: blob ${digest} (${what}) was never written`,
          "BLOB_MISSING",
        );
      }
    }
    const index = await this.#readIndex();
    const kept = index.manifests.filter((d) => {
      const existing = indexEntryName(d);
      return existing === undefined ||
        !tops.some((t) => t.name !== undefined && sameImageName(existing, t.name));
    });
    const next = {
      ...index,
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [...kept, ...tops.map((t) => t.descriptor)],
    };
    if (!(await exists(join(this.location, "oci-layout")))) {
      await this.#replace("oci-layout", OCI_LAYOUT_BYTES);
    }
    await this.#replace("index.json", jsonBytes(next));
  }

  /**
   * Removes the blobs written since the destination was opened, except those an image
   * of `index.json` uses (another process may have committed one that relies on them),
   * and the directory if it created it and nothing else is in it; `index.json` is
   * untouched.
   *
   * @example
   * ```ts
   * import { openOciLayoutDestination } from "./layout_destination.ts";
   * const dest = await openOciLayoutDestination("/tmp/layout-abort");
   * await dest.abort();
   * ```
   */
  async abort(): Promise<void> {
    if (this.#state === "committed") return;
    this.#state = "aborted";
    for (const temp of this.#temps) await removeFile(temp);
    const added = this.#added;
    this.#added = [];
    if (added.length > 0) {
      await withLayoutLock(this.location, async () => {
        const used = await referencedBlobs(this.location).catch(() => undefined);
        if (!used) return; // an index.json we cannot read: keep the blobs rather than guess
        for (const blob of added) {
          if (!used.has(`sha256:${basename(blob)}`)) await removeFile(blob);
        }
      }).catch(() => {});
    }
    if (this.#created && await removeIfEmpty(this.location)) {
      await removeEmptyParents(this.location, this.#parents);
    }
  }
}
