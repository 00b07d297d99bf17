/**
 * Random access to a tar archive: one pass over the headers (the data is skipped,
 * never read) builds an index of every entry, then any entry is streamed from its
 * offset. Memory depends on the number of entries, not on the size of the archive.
 *
 * Reads ustar (with the `prefix` field), pax extended headers (`path`, `linkpath`,
 * `size`, also global ones), GNU long names and link names (`L`/`K`) and base-256
 * sizes over 8 GiB. Symlinks and hard links inside the archive are followed; anything
 * that would lead outside it is refused.
 *
 * @module
 */

import { type FileHandle, open } from "node:fs/promises";
import { constants } from "node:fs";
import { ArchiveError } from "../errors.ts";
import { CHUNK_SIZE, fsProblem, rangeStream, readAt } from "./file_io.ts";
import {
  BLOCK_SIZE,
  decodePaxRecords,
  decodeTarHeader,
  paddedSize,
  type TarHeader,
} from "./tar_header.ts";
import {
  archiveDirname,
  MAX_PATH_LENGTH,
  normalizeArchivePath,
  resolveSymlinkTarget,
  showPath,
} from "./tar_path.ts";

/** The kind of a tar entry. */
export type TarEntryType = "file" | "hardlink" | "symlink" | "directory" | "other";

/** One entry of a {@linkcode TarIndex}. */
export interface TarEntry {
  /** Normalised name (no `./`, no trailing `/`). */
  name: string;
  /** What the entry is. */
  type: TarEntryType;
  /** Offset of the entry's data in the file. */
  offset: number;
  /** Size of the data in bytes. */
  size: number;
  /** Target of a symlink (as written) or of a hard link (normalised). */
  linkname?: string;
  /** Permission bits. */
  mode: number;
}

/** Options of {@linkcode TarIndex.open}. */
export interface TarIndexOptions {
  /** The most entries accepted (default one million), so a hostile archive cannot exhaust memory. */
  maxEntries?: number;
  /** The name used in error messages instead of the path. */
  displayName?: string;
}

/** Options of {@linkcode TarIndex.openEntry}. */
export interface OpenEntryOptions {
  /** Bytes per read (default 1 MiB). */
  chunkSize?: number;
  /** Cancels the stream. */
  signal?: AbortSignal;
}

const MAX_META_BYTES = 1024 * 1024;
const MAX_LINK_HOPS = 64;
const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

/**
 * What a tar type flag stands for.
 *
 * @example
 * ```ts
 * import { entryType } from "./tar_index.ts";
 * entryType("2"); // "symlink"
 * ```
 */
export function entryType(typeflag: string): TarEntryType {
  switch (typeflag) {
    case "0":
    case "7":
      return "file";
    case "1":
      return "hardlink";
    case "2":
      return "symlink";
    case "5":
      return "directory";
    default:
      return "other";
  }
}

/**
 * A hard link's target, normalised (hard links name archive paths); an
 * {@linkcode ArchiveError} when it leaves the archive.
 *
 * @example
 * ```ts
 * import { hardLinkTarget } from "./tar_index.ts";
 * hardLinkTarget("a.tar", "b", "./dir/a"); // "dir/a"
 * ```
 */
export function hardLinkTarget(file: string, name: string, linkname: string): string {
  const target = normalizeArchivePath(linkname);
  if (target === undefined || target === "") {
    throw new ArchiveError(
      file,
      showPath(name),
      `hard link to ${showPath(linkname)} leaves the archive`,
    );
  }
  return target;
}

function describeNotTar(head: Uint8Array): string {
  const starts = (magic: number[]) => magic.every((b, i) => head[i] === b);
  if (head.length === 0) return "not a tar archive: the file is empty";
  if (starts(GZIP_MAGIC)) {
    return "not a tar archive: it is gzip-compressed (decompress it first, e.g. gunzip)";
  }
  if (starts(ZSTD_MAGIC)) return "not a tar archive: it is zstd-compressed (decompress it first)";
  return "not a tar archive: no valid tar header at offset 0";
}

/**
 * An index of a tar archive's entries, built by reading only the headers.
 *
 * @example
 * ```ts ignore
 * import { TarIndex } from "./tar_index.ts";
 * const index = await TarIndex.open("image.tar");
 * try {
 *   const manifest = await index.readEntry("manifest.json", 1024 * 1024);
 *   console.log(new TextDecoder().decode(manifest));
 * } finally {
 *   await index.close();
 * }
 * ```
 */
export class TarIndex {
  /** The archive's path. */
  readonly path: string;
  /** The name errors use for the archive (the path unless told otherwise). */
  readonly displayName: string;
  /** The archive's size in bytes. */
  readonly size: number;
  #handle: FileHandle;
  #entries: Map<string, TarEntry>;

  private constructor(
    path: string,
    displayName: string,
    handle: FileHandle,
    size: number,
    entries: Map<string, TarEntry>,
  ) {
    this.path = path;
    this.displayName = displayName;
    this.#handle = handle;
    this.size = size;
    this.#entries = entries;
  }

  /**
   * Opens a tar file and indexes it with one pass over its headers. Throws an
   * {@linkcode ArchiveError} for a file that is not a tar, a header whose checksum does
   * not match, an entry running past the end of the file, or a name leaving the archive.
   *
   * @example
   * ```ts ignore
   * import { TarIndex } from "./tar_index.ts";
   * const index = await TarIndex.open("image.tar");
   * console.log([...index.names()]);
   * await index.close();
   * ```
   */
  static async open(path: string, options: TarIndexOptions = {}): Promise<TarIndex> {
    const displayName = options.displayName ?? path;
    let handle: FileHandle;
    try {
      // Non-blocking, so that a named pipe put in place of the archive is refused below
      // instead of blocking the open until some writer comes.
      handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (e) {
      throw new ArchiveError(displayName, undefined, `cannot open: ${fsProblem(e)}`, { cause: e });
    }
    try {
      const info = await handle.stat();
      if (!info.isFile()) {
        throw new ArchiveError(
          displayName,
          undefined,
          "not a regular file (a pipe, socket or device cannot be read as an archive)",
        );
      }
      const { size } = info;
      const entries = await scan(handle, size, displayName, options.maxEntries ?? 1_000_000);
      return new TarIndex(path, displayName, handle, size, entries);
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  /**
   * The names of every entry, in archive order (a name written twice appears once,
   * the later entry winning as in `tar x`).
   *
   * @example
   * ```ts ignore
   * import { TarIndex } from "./tar_index.ts";
   * const index = await TarIndex.open("image.tar");
   * for (const name of index.names()) console.log(name);
   * await index.close();
   * ```
   */
  names(): IterableIterator<string> {
    return this.#entries.keys();
  }

  /**
   * The entry called `name` itself (links not followed), or undefined.
   *
   * @example
   * ```ts ignore
   * import { TarIndex } from "./tar_index.ts";
   * const index = await TarIndex.open("image.tar");
   * console.log(index.entry("abc/layer.tar")?.type); // "symlink"
   * await index.close();
   * ```
   */
  entry(name: string): TarEntry | undefined {
    const normal = normalizeArchivePath(name);
    return normal === undefined ? undefined : this.#entries.get(normal);
  }

  /**
   * The regular file `name` refers to, following symlinks (relative to the link's
   * directory, also in parent directories) and hard links. Returns undefined when
   * nothing is called `name`; throws an {@linkcode ArchiveError} for a link loop, a
   * link leading outside the archive, a dangling link or something that is not a file.
   *
   * @example
   * ```ts ignore
   * import { TarIndex } from "./tar_index.ts";
   * const index = await TarIndex.open("image.tar");
   * const layer = index.resolve("abc/layer.tar"); // the file the symlink points to
   * console.log(layer?.name, layer?.size);
   * await index.close();
   * ```
   */
  resolve(name: string): TarEntry | undefined {
    let path = normalizeArchivePath(name);
    if (path === undefined) {
      throw new ArchiveError(this.displayName, showPath(name), "path leaves the archive");
    }
    if (path.length > MAX_PATH_LENGTH) {
      throw new ArchiveError(
        this.displayName,
        showPath(name),
        `path is ${path.length} characters long, over the ${MAX_PATH_LENGTH}-character limit`,
      );
    }
    let hops = 0;
    // Walk the components of `path`; a link met on the way rewrites the path and the
    // walk starts again, until a plain entry (or nothing) is reached. Paths are at most
    // MAX_PATH_LENGTH long and links at most MAX_LINK_HOPS deep, so this is bounded.
    walk: for (;;) {
      const parts = path.split("/");
      let prefix = "";
      for (let i = 0; i < parts.length; i++) {
        prefix = i === 0 ? parts[0] : `${prefix}/${parts[i]}`;
        const entry: TarEntry | undefined = this.#entries.get(prefix);
        const last = i === parts.length - 1;
        if (entry === undefined) {
          if (last) break;
          continue; // directories often have no entry of their own
        }
        if (entry.type === "symlink" || (entry.type === "hardlink" && last)) {
          if (++hops > MAX_LINK_HOPS) {
            throw new ArchiveError(
              this.displayName,
              showPath(name),
              `too many levels of links (a link loop?) at ${showPath(prefix)}`,
            );
          }
          const target = entry.type === "symlink"
            ? resolveSymlinkTarget(archiveDirname(prefix), entry.linkname ?? "")
            : entry.linkname;
          if (target === undefined) {
            throw new ArchiveError(
              this.displayName,
              showPath(name),
              `symlink ${showPath(prefix)} -> ${
                showPath(entry.linkname ?? "")
              } points outside the archive`,
            );
          }
          const rest = parts.slice(i + 1).join("/");
          const next = normalizeArchivePath(rest === "" ? target : `${target}/${rest}`);
          if (next === undefined || next === "") {
            throw new ArchiveError(
              this.displayName,
              showPath(name),
              "link leads outside the archive",
            );
          }
          if (next.length > MAX_PATH_LENGTH) {
            throw new ArchiveError(
              this.displayName,
              showPath(name),
              `link ${showPath(prefix)} leads to a path of ${next.length} characters, over the ` +
                `${MAX_PATH_LENGTH}-character limit`,
            );
          }
          path = next;
          continue walk;
        }
        if (last) {
          if (entry.type !== "file") {
            const what = entry.type === "other" ? "special file" : entry.type;
            throw new ArchiveError(this.displayName, showPath(name), `is a ${what}, not a file`);
          }
          return entry;
        }
      }
      if (hops > 0) {
        throw new ArchiveError(
          this.displayName,
          showPath(name),
          `is a link to ${showPath(path)}, which is not in the archive`,
        );
      }
      return undefined;
    }
  }

  /**
   * The file `name` refers to (links followed); throws an {@linkcode ArchiveError}
   * naming `name` when it is not in the archive.
   *
   * @example
   * ```ts ignore
   * import { TarIndex } from "./tar_index.ts";
   * const index = await TarIndex.open("image.tar");
   * console.log(index.require("manifest.json").size);
   * await index.close();
   * ```
   */
  require(name: string): TarEntry {
    const entry = this.resolve(name);
    if (!entry) throw new ArchiveError(this.displayName, showPath(name), "not in the archive");
    return entry;
  }

  /**
   * Reads a whole small entry (links followed), refusing one over `maxBytes`.
   *
   * @example
   * ```ts ignore
   * import { TarIndex } from "./tar_index.ts";
   * const index = await TarIndex.open("image.tar");
   * const bytes = await index.readEntry("manifest.json", 4 * 1024 * 1024);
   * await index.close();
   * ```
   */
  async readEntry(name: string, maxBytes: number): Promise<Uint8Array> {
    const entry = this.require(name);
    if (entry.size > maxBytes) {
      throw new ArchiveError(
        this.displayName,
        name,
        `${entry.size} bytes is over the ${maxBytes}-byte limit`,
      );
    }
    const bytes = await readAt(this.#handle, entry.offset, entry.size);
    if (bytes.length !== entry.size) throw this.#truncated(name, entry, bytes.length);
    return bytes;
  }

  /**
   * The first `length` bytes of an entry (fewer if it is shorter), e.g. to tell its
   * compression by magic bytes.
   *
   * @example
   * ```ts ignore
   * import { TarIndex } from "./tar_index.ts";
   * const index = await TarIndex.open("image.tar");
   * const head = await index.readHead("blobs/sha256/" + "ab".repeat(32), 6);
   * await index.close();
   * ```
   */
  async readHead(name: string, length: number): Promise<Uint8Array> {
    const entry = this.require(name);
    return await readAt(this.#handle, entry.offset, Math.min(length, entry.size));
  }

  /**
   * Streams an entry's data from its offset (links followed), one chunk at a time as
   * the consumer pulls: memory stays bounded whatever the entry's size.
   *
   * @example
   * ```ts ignore
   * import { TarIndex } from "./tar_index.ts";
   * const index = await TarIndex.open("image.tar");
   * const stream = index.openEntry("manifest.json");
   * console.log(await new Response(stream).text());
   * await index.close();
   * ```
   */
  openEntry(name: string, options: OpenEntryOptions = {}): ReadableStream<Uint8Array> {
    const entry = this.require(name);
    return rangeStream(this.#handle, entry.offset, entry.size, {
      chunkSize: options.chunkSize ?? CHUNK_SIZE,
      signal: options.signal,
      onShort: (got) => this.#truncated(name, entry, got),
    });
  }

  #truncated(name: string, entry: TarEntry, got: number): ArchiveError {
    return new ArchiveError(
      this.displayName,
      name,
      `truncated: expected ${entry.size} bytes at offset ${entry.offset}, the file ends after ${got}`,
    );
  }

  /**
   * Closes the file. Streams still open fail afterwards.
   *
   * @example
   * ```ts ignore
   * import { TarIndex } from "./tar_index.ts";
   * const index = await TarIndex.open("image.tar");
   * await index.close();
   * ```
   */
  async close(): Promise<void> {
    await this.#handle.close();
  }
}

/** The one pass over the headers. */
async function scan(
  handle: FileHandle,
  fileSize: number,
  file: string,
  maxEntries: number,
): Promise<Map<string, TarEntry>> {
  const entries = new Map<string, TarEntry>();
  const global: Record<string, string> = Object.create(null);
  let local: Record<string, string> = Object.create(null);
  let longName: string | undefined;
  let longLink: string | undefined;
  let pos = 0;
  let count = 0;
  const decoder = new TextDecoder();

  const readMeta = async (header: TarHeader, at: number): Promise<Uint8Array> => {
    if (header.size > MAX_META_BYTES) {
      throw new ArchiveError(
        file,
        showPath(header.name),
        `extended header at offset ${at} is ${header.size} bytes, over the ${MAX_META_BYTES}-byte limit`,
      );
    }
    return await readAt(handle, at + BLOCK_SIZE, header.size);
  };

  while (pos < fileSize) {
    if (pos + BLOCK_SIZE > fileSize) {
      if (pos === 0) {
        throw new ArchiveError(file, undefined, describeNotTar(await readAt(handle, 0, 8)));
      }
      throw new ArchiveError(
        file,
        undefined,
        `truncated: the file ends inside a header block at offset ${pos}`,
      );
    }
    const block = await readAt(handle, pos, BLOCK_SIZE);
    const header = decodeTarHeader(block);
    if (header === "zero") break; // end of archive (the second zero block is optional)
    if (header === "checksum" || header === "field") {
      if (pos === 0) throw new ArchiveError(file, undefined, describeNotTar(block));
      throw new ArchiveError(
        file,
        undefined,
        header === "checksum"
          ? `header checksum mismatch at offset ${pos} (corrupt archive?)`
          : `header at offset ${pos} has an invalid size field`,
      );
    }
    const isMeta = "xgLK".includes(header.typeflag);
    const size = isMeta ? header.size : Number(local.size ?? global.size ?? header.size);
    const rawName = isMeta ? header.name : local.path ?? longName ?? global.path ?? header.name;
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new ArchiveError(
        file,
        showPath(rawName),
        `invalid size ${JSON.stringify(showPath(local.size ?? global.size ?? ""))}`,
      );
    }
    const dataOffset = pos + BLOCK_SIZE;
    if (dataOffset + size > fileSize) {
      throw new ArchiveError(
        file,
        showPath(rawName),
        `truncated: the entry claims ${size} bytes at offset ${dataOffset}, but the file ends at ${fileSize}`,
      );
    }
    switch (header.typeflag) {
      case "x":
      case "g": {
        const records = decodePaxRecords(await readMeta(header, pos));
        if (!records) {
          throw new ArchiveError(
            file,
            showPath(header.name),
            `malformed pax header at offset ${pos}`,
          );
        }
        if (header.typeflag === "x") local = Object.assign(Object.create(null), local, records);
        else Object.assign(global, records);
        break;
      }
      case "L":
      case "K": {
        const text = decoder.decode(await readMeta(header, pos)).replace(/\0.*$/s, "");
        if (header.typeflag === "L") longName = text;
        else longLink = text;
        break;
      }
      default: {
        const type = entryType(header.typeflag);
        const name = normalizeArchivePath(rawName);
        if (name === undefined) {
          throw new ArchiveError(
            file,
            showPath(rawName),
            "path leaves the archive (absolute or ..)",
          );
        }
        if (name.length > MAX_PATH_LENGTH) {
          throw new ArchiveError(
            file,
            showPath(rawName),
            `name at offset ${pos} is ${name.length} characters long, over the ` +
              `${MAX_PATH_LENGTH}-character limit`,
          );
        }
        let linkname = local.linkpath ?? longLink ?? global.linkpath ?? header.linkname;
        if (linkname.length > MAX_PATH_LENGTH) {
          throw new ArchiveError(
            file,
            showPath(rawName),
            `link target at offset ${pos} is ${linkname.length} characters long, over the ` +
              `${MAX_PATH_LENGTH}-character limit`,
          );
        }
        if (type === "hardlink") linkname = hardLinkTarget(file, rawName, linkname);
        if (name !== "") {
          if (++count > maxEntries) {
            throw new ArchiveError(file, undefined, `more than ${maxEntries} entries`);
          }
          entries.delete(name); // a later entry replaces an earlier one, and moves to the end
          entries.set(name, {
            name,
            type,
            offset: dataOffset,
            size: type === "file" ? size : 0,
            linkname: type === "hardlink" || type === "symlink" ? linkname : undefined,
            mode: header.mode,
          });
        }
        local = Object.create(null);
        longName = undefined;
        longLink = undefined;
      }
    }
    pos = dataOffset + paddedSize(size);
  }
  if (pos === 0 && fileSize === 0) {
    throw new ArchiveError(file, undefined, describeNotTar(new Uint8Array()));
  }
  return entries;
}
