/**
 * Remembers which compressed blob an uncompressed layer became, so a re-push of an
 * unchanged image asks the registry "do you have it?" instead of reading and
 * compressing the layer again; and where (registry, repository) each blob or manifest
 * was seen, pushed or pulled, so a push to another repository of the same registry
 * mounts it instead of uploading it again (as containers/image's blob-info cache does).
 *
 * One small JSON file per entry, written to a temporary name and renamed, so several
 * processes can share the cache; an unreadable or stale entry just means a normal upload
 * (a lost update between two processes only costs a mount not tried).
 *
 * @module
 */

import { createHash, randomUUID } from "node:crypto";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { env } from "node:process";
import { isDigest } from "../oci/digest.ts";
import { ImagesError } from "../errors.ts";
import { homeDirectory } from "../home.ts";
import type { Descriptor } from "../oci/manifest.ts";

/**
 * The default cache folder: `$XDG_CACHE_HOME/apolo-images`, else `~/.cache/apolo-images`.
 *
 * @example
 * ```ts
 * import { defaultCacheDir } from "./blob_cache.ts";
 * console.log(defaultCacheDir());
 * ```
 */
export function defaultCacheDir(environment: Record<string, string | undefined> = env): string {
  const home = homeDirectory(environment);
  if (!environment.XDG_CACHE_HOME && !home) {
    throw new ImagesError(
      "no cache folder: set XDG_CACHE_HOME or HOME (or disable the cache)",
      "NO_CACHE_DIR",
    );
  }
  return join(environment.XDG_CACHE_HOME || join(home!, ".cache"), "apolo-images");
}

/**
 * A cache from (uncompressed digest, compression settings) to the compressed blob.
 *
 * @example
 * ```ts
 * import { BlobCache } from "./blob_cache.ts";
 * const cache = new BlobCache("/tmp/apolo-cache-example");
 * const hit = await cache.lookup("sha256:" + "a".repeat(64), "gzip-6");
 * console.log(hit); // undefined on a first run
 * ```
 */
export class BlobCache {
  readonly #dir: string;
  readonly #locations: string;
  /** Locations recorded by this process, so a blob seen again costs no file access. */
  readonly #recorded = new Set<string>();

  /** @param dir the cache folder (created on first write) */
  constructor(dir: string) {
    this.#dir = join(dir, "compressed");
    this.#locations = join(dir, "locations");
  }

  #path(uncompressed: string, settings: string): string {
    const key = createHash("sha256").update(`${uncompressed}\n${settings}`).digest("hex");
    return join(this.#dir, `${key}.json`);
  }

  /** The compressed blob recorded for a layer and settings, if any. */
  async lookup(uncompressed: string, settings: string): Promise<Descriptor | undefined> {
    try {
      const entry = JSON.parse(await readFile(this.#path(uncompressed, settings), "utf8"));
      const valid = entry.uncompressed === uncompressed && entry.settings === settings &&
        isDigest(entry.digest) && Number.isSafeInteger(entry.size) &&
        typeof entry.mediaType === "string";
      return valid
        ? { mediaType: entry.mediaType, digest: entry.digest, size: entry.size }
        : undefined;
    } catch {
      return undefined;
    }
  }

  /** Records what a layer became; failures to write are ignored (the cache is a hint). */
  async store(uncompressed: string, settings: string, blob: Descriptor): Promise<void> {
    const path = this.#path(uncompressed, settings);
    const temporary = `${path}.tmp-${randomUUID()}`;
    try {
      await mkdir(this.#dir, { recursive: true });
      const entry = { uncompressed, settings, ...blob };
      await writeFile(temporary, JSON.stringify(entry));
      await rename(temporary, path);
    } catch {
      await rm(temporary, { force: true }).catch(() => {});
    }
  }

  #locationPath(digest: string): string {
    return join(this.#locations, `${digest.replace(":", "-")}.json`);
  }

  async #readLocations(digest: string): Promise<BlobLocation[]> {
    try {
      const entry = JSON.parse(await readFile(this.#locationPath(digest), "utf8"));
      if (entry.digest !== digest || !Array.isArray(entry.seen)) return [];
      return entry.seen.filter((l: Partial<BlobLocation>) =>
        typeof l?.host === "string" && typeof l.repository === "string" &&
        Number.isSafeInteger(l.at)
      );
    } catch {
      return [];
    }
  }

  /**
   * The repositories of registry `host` where a blob or manifest was last seen, the
   * most recent first. A hint: the registry may have deleted it since.
   */
  async whereSeen(digest: string, host: string): Promise<string[]> {
    if (!isDigest(digest)) return [];
    return (await this.#readLocations(digest))
      .filter((l) => l.host === host)
      .sort((a, b) => b.at - a.at)
      .map((l) => l.repository);
  }

  /**
   * Records that repository `repository` of registry `host` holds a blob or manifest;
   * failures to write are ignored. At most {@linkcode MAX_LOCATIONS} are kept per
   * digest, the most recent.
   */
  async seenAt(digest: string, host: string, repository: string): Promise<void> {
    const key = `${digest} ${host} ${repository}`;
    if (!isDigest(digest) || this.#recorded.has(key)) return;
    this.#recorded.add(key);
    const seen = (await this.#readLocations(digest))
      .filter((l) => l.host !== host || l.repository !== repository);
    seen.unshift({ host, repository, at: Date.now() });
    seen.sort((a, b) => b.at - a.at);
    const path = this.#locationPath(digest);
    const temporary = `${path}.tmp-${randomUUID()}`;
    try {
      await mkdir(this.#locations, { recursive: true });
      await writeFile(temporary, JSON.stringify({ digest, seen: seen.slice(0, MAX_LOCATIONS) }));
      await rename(temporary, path);
    } catch {
      await rm(temporary, { force: true }).catch(() => {});
    }
  }
}

/** How many locations are kept per digest. */
export const MAX_LOCATIONS = 16;

/**
 * Where a blob or manifest was seen.
 *
 * @example
 * ```ts
 * import type { BlobLocation } from "./blob_cache.ts";
 * const seen: BlobLocation = { host: "registry.example.com", repository: "alice/base", at: Date.now() };
 * ```
 */
export interface BlobLocation {
  /** `host[:port]` of the registry. */
  host: string;
  /** The repository. */
  repository: string;
  /** When, ms since the epoch. */
  at: number;
}
