/**
 * One interface over the two places archive entries live: a tar file (through a
 * {@linkcode TarIndex}) and a directory (an OCI layout or an unpacked `docker save`),
 * so the image source reads both with the same code.
 *
 * @module
 */

import { type FileHandle, open, realpath, stat } from "node:fs/promises";
import { constants } from "node:fs";
import { join, sep } from "node:path";
import { ArchiveError } from "../errors.ts";
import { CHUNK_SIZE, errorCode, fsProblem, rangeStream, readAt } from "./file_io.ts";
import { TarIndex } from "./tar_index.ts";
import { MAX_PATH_LENGTH, normalizeArchivePath, showPath } from "./tar_path.ts";

/** A file found in an entry store. */
export interface StoredFile {
  /** The name it was asked for, normalised. */
  name: string;
  /** The name of the file reached after following links. */
  resolved: string;
  /** Its size in bytes. */
  size: number;
}

/** Options of {@linkcode EntryStore.stream}. */
export interface StoreStreamOptions {
  /** Cancels the stream. */
  signal?: AbortSignal;
  /** Bytes per read (default 1 MiB). */
  chunkSize?: number;
}

/**
 * Read access to the entries of an archive or layout directory.
 *
 * @example
 * ```ts ignore
 * import { openEntryStore } from "./entry_store.ts";
 * const store = await openEntryStore("image.tar");
 * console.log(store.kind, (await store.stat("manifest.json"))?.size);
 * await store.close();
 * ```
 */
export interface EntryStore {
  /** The path of the archive or directory, as used in messages. */
  readonly location: string;
  /** `tar` for an archive file, `directory` for a directory. */
  readonly kind: "tar" | "directory";
  /**
   * The file called `name` (links followed), or undefined if there is none. Throws an
   * {@linkcode ArchiveError} for a path or link leading outside.
   */
  stat(name: string): Promise<StoredFile | undefined>;
  /** The whole of a small file; an {@linkcode ArchiveError} if absent or over `maxBytes`. */
  read(name: string, maxBytes: number): Promise<Uint8Array>;
  /** The first `length` bytes of a file (fewer if it is shorter). */
  head(name: string, length: number): Promise<Uint8Array>;
  /** A stream of a file's bytes with bounded memory. */
  stream(name: string, options?: StoreStreamOptions): Promise<ReadableStream<Uint8Array>>;
  /** Releases the open file. */
  close(): Promise<void>;
}

/**
 * Opens a tar file or a directory as an {@linkcode EntryStore}.
 *
 * @example
 * ```ts ignore
 * import { openEntryStore } from "./entry_store.ts";
 * const store = await openEntryStore("layout-dir");
 * await store.close();
 * ```
 */
export async function openEntryStore(path: string): Promise<EntryStore> {
  let info;
  let root: string | undefined;
  try {
    info = await stat(path);
    if (info.isDirectory()) root = await realpath(path);
  } catch (e) {
    throw new ArchiveError(path, undefined, fsProblem(e), { cause: e });
  }
  if (root !== undefined) return new DirectoryStore(path, root);
  if (!info.isFile()) {
    throw new ArchiveError(
      path,
      undefined,
      "not a regular file or directory (a pipe, socket or device cannot be read as an archive)",
    );
  }
  return new TarStore(await TarIndex.open(path));
}

class TarStore implements EntryStore {
  readonly kind = "tar" as const;
  readonly location: string;
  #index: TarIndex;

  constructor(index: TarIndex) {
    this.#index = index;
    this.location = index.displayName;
  }

  stat(name: string): Promise<StoredFile | undefined> {
    const entry = this.#index.resolve(name);
    return Promise.resolve(
      entry && { name: normalizeArchivePath(name)!, resolved: entry.name, size: entry.size },
    );
  }

  read(name: string, maxBytes: number): Promise<Uint8Array> {
    return this.#index.readEntry(name, maxBytes);
  }

  head(name: string, length: number): Promise<Uint8Array> {
    return this.#index.readHead(name, length);
  }

  stream(name: string, options: StoreStreamOptions = {}): Promise<ReadableStream<Uint8Array>> {
    return Promise.resolve(this.#index.openEntry(name, options));
  }

  close(): Promise<void> {
    return this.#index.close();
  }
}

class DirectoryStore implements EntryStore {
  readonly kind = "directory" as const;
  readonly location: string;
  #root: string;

  constructor(location: string, root: string) {
    this.location = location;
    this.#root = root;
  }

  async stat(name: string): Promise<StoredFile | undefined> {
    const normal = normalizeArchivePath(name);
    if (normal === undefined || normal === "") {
      throw new ArchiveError(this.location, showPath(name), "path leaves the directory");
    }
    if (normal.length > MAX_PATH_LENGTH) {
      throw new ArchiveError(
        this.location,
        showPath(name),
        `path is ${normal.length} characters long, over the ${MAX_PATH_LENGTH}-character limit`,
      );
    }
    let real: string;
    let info;
    try {
      real = await realpath(join(this.#root, normal));
      info = await stat(real);
    } catch (e) {
      // ENOTDIR: a component on the way is a file, so nothing has this name.
      if (errorCode(e) === "ENOENT" || errorCode(e) === "ENOTDIR") return undefined;
      throw new ArchiveError(this.location, showPath(name), fsProblem(e), { cause: e });
    }
    if (!real.startsWith(this.#root + sep)) {
      throw new ArchiveError(
        this.location,
        showPath(name),
        "is a link pointing outside the directory",
      );
    }
    if (!info.isFile()) {
      throw new ArchiveError(this.location, showPath(name), "is not a regular file");
    }
    return { name: normal, resolved: real.slice(this.#root.length + 1), size: info.size };
  }

  async #open(name: string): Promise<{ handle: FileHandle; file: StoredFile }> {
    const file = await this.stat(name);
    if (!file) throw new ArchiveError(this.location, showPath(name), "not in the directory");
    let handle: FileHandle;
    try {
      // Non-blocking: a file swapped for a named pipe since `stat` must not block the open.
      handle = await open(
        join(this.#root, file.resolved),
        constants.O_RDONLY | constants.O_NONBLOCK,
      );
    } catch (e) {
      throw new ArchiveError(this.location, showPath(name), fsProblem(e), { cause: e });
    }
    return { handle, file };
  }

  async read(name: string, maxBytes: number): Promise<Uint8Array> {
    const { handle, file } = await this.#open(name);
    try {
      if (file.size > maxBytes) {
        throw new ArchiveError(
          this.location,
          name,
          `${file.size} bytes is over the ${maxBytes}-byte limit`,
        );
      }
      return await readAt(handle, 0, file.size);
    } finally {
      await handle.close();
    }
  }

  async head(name: string, length: number): Promise<Uint8Array> {
    const { handle } = await this.#open(name);
    try {
      return await readAt(handle, 0, length);
    } finally {
      await handle.close();
    }
  }

  async stream(
    name: string,
    options: StoreStreamOptions = {},
  ): Promise<ReadableStream<Uint8Array>> {
    const { handle, file } = await this.#open(name);
    const reader = rangeStream(handle, 0, file.size, {
      chunkSize: options.chunkSize ?? CHUNK_SIZE,
      signal: options.signal,
      onShort: (got) =>
        new ArchiveError(
          this.location,
          name,
          `shrank while being read: ${got} of ${file.size} bytes`,
        ),
    }).getReader();
    let closed = false;
    const release = async (): Promise<void> => {
      if (!closed) {
        closed = true;
        await handle.close().catch(() => {});
      }
    };
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          const { done, value } = await reader.read();
          if (done) {
            await release();
            controller.close();
          } else controller.enqueue(value);
        } catch (e) {
          await release();
          throw e;
        }
      },
      async cancel(reason) {
        await reader.cancel(reason).catch(() => {});
        await release();
      },
    }, { highWaterMark: 0 });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
