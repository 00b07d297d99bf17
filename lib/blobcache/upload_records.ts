/**
 * Remembers the registry upload sessions of layers being pushed in chunks, so a push
 * stopped part-way (SIGTERM, a crash, a killed CI job) and run again continues each
 * unfinished layer from the offset the registry acknowledged instead of from zero.
 *
 * One small JSON file per (registry, repository, source layer, compression settings)
 * under `<cacheDir>/uploads/`, written to a temporary name and renamed after every
 * acknowledged chunk, removed when the blob is committed or the session cancelled.
 * A record holds the session's newest `Location` (the registry's state, which may
 * carry query parameters) and the offset; never a credential.
 *
 * @module
 */

import { createHash, randomUUID } from "node:crypto";
import { chmod, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

/**
 * Names one layer upload: where it goes and what it is made of.
 *
 * @example
 * ```ts
 * import type { UploadKey } from "./upload_records.ts";
 * const key: UploadKey = {
 *   host: "registry.example.com",
 *   repository: "alice/app",
 *   source: "sha256:" + "a".repeat(64),
 *   settings: "gzip-6-blocks-1048576-zlib-1.3",
 * };
 * ```
 */
export interface UploadKey {
  /** `host[:port]` of the registry. */
  host: string;
  /** The repository the blob goes to. */
  repository: string;
  /** Digest of the source bytes (an uncompressed layer's diffID, or the blob's digest). */
  source: string;
  /** How the source was turned into the blob (compression settings, or `as-is`). */
  settings: string;
}

/**
 * Where an upload session stood when it was last saved.
 *
 * @example
 * ```ts
 * import type { SavedUpload } from "./upload_records.ts";
 * const saved: SavedUpload = { location: "https://r.example.com/v2/app/blobs/uploads/x?_state=y", offset: 8388608 };
 * ```
 */
export interface SavedUpload {
  /** The newest `Location` of the session (absolute, without user info). */
  location: string;
  /** Bytes the registry acknowledged. */
  offset: number;
}

/**
 * The saved upload sessions, one file each.
 *
 * @example
 * ```ts
 * import { UploadRecords } from "./upload_records.ts";
 * const records = new UploadRecords("/tmp/apolo-cache-example");
 * const key = { host: "r.example.com", repository: "app", source: "sha256:" + "a".repeat(64), settings: "as-is" };
 * console.log(await records.load(key)); // undefined on a first run
 * ```
 */
export class UploadRecords {
  readonly #dir: string;

  /** @param dir the cache folder (the records go to its `uploads` folder) */
  constructor(dir: string) {
    this.#dir = join(dir, "uploads");
  }

  /** The file of a key's record. */
  path(key: UploadKey): string {
    const id = createHash("sha256")
      .update([key.host, key.repository, key.source, key.settings].join("\n"))
      .digest("hex");
    return join(this.#dir, `${id}.json`);
  }

  /** The saved session of a key, if a valid record exists. */
  async load(key: UploadKey): Promise<SavedUpload | undefined> {
    try {
      const entry = JSON.parse(await readFile(this.path(key), "utf8"));
      const valid = entry.host === key.host && entry.repository === key.repository &&
        entry.source === key.source && entry.settings === key.settings &&
        typeof entry.location === "string" && Number.isSafeInteger(entry.offset) &&
        entry.offset >= 0;
      return valid ? { location: entry.location, offset: entry.offset } : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Records where a session stands; failures to write are ignored (a record is a hint).
   * User info in the location is dropped: a record never holds a credential.
   */
  async save(key: UploadKey, saved: SavedUpload): Promise<void> {
    const path = this.path(key);
    const temporary = `${path}.tmp-${randomUUID()}`;
    try {
      const location = new URL(saved.location);
      location.username = "";
      location.password = "";
      // A location may be a pre-signed URL, as good as a credential for the upload:
      // the records are readable by their owner only.
      await mkdir(this.#dir, { recursive: true, mode: 0o700 });
      await chmod(this.#dir, 0o700);
      const entry = { ...key, location: location.href, offset: saved.offset, saved: Date.now() };
      await writeFile(temporary, JSON.stringify(entry), { mode: 0o600 });
      await rename(temporary, path);
    } catch {
      await rm(temporary, { force: true }).catch(() => {});
    }
  }

  /** Removes a key's record (the blob was committed, or the session is gone). */
  async remove(key: UploadKey): Promise<void> {
    await rm(this.path(key), { force: true }).catch(() => {});
  }
}
