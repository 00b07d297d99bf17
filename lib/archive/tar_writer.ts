/**
 * Writes tar archives (ustar, with pax headers for long names and sizes over 8 GiB).
 *
 * An entry whose size is known up front is *reserved*: its header is written at once
 * and it gets a slot with its own positional writer, so several downloads can stream
 * into their final place in the archive at the same time. Entries of unknown size are
 * spooled to a temporary file first. The archive is written to `<path>.tmp-<pid>-<random>`
 * and renamed onto `path` only by {@linkcode TarWriter.commit}; {@linkcode TarWriter.abort}
 * removes the temporary file and leaves any previous file in place.
 *
 * @module
 */

import { randomBytes } from "node:crypto";
import { type FileHandle, open, rename, statfs } from "node:fs/promises";
import { basename, dirname } from "node:path";
import { ImagesError } from "../errors.ts";
import { rangeStream, removeFile, writeAt } from "./file_io.ts";
import { removeDeadTemps, tempName } from "./temp_files.ts";
import {
  BLOCK_SIZE,
  encodePaxRecords,
  encodeTarHeader,
  needsPax,
  paddedSize,
  type TarHeaderFields,
} from "./tar_header.ts";
import { normalizeArchivePath } from "./tar_path.ts";

/** Options of one entry. */
export interface TarEntryOptions {
  /** Permission bits (default 0o644 for files, 0o755 for directories, 0o777 for links). */
  mode?: number;
  /** Modification time in seconds since the epoch (default: the writer's `mtime`). */
  mtime?: number;
}

/** Options of {@linkcode TarWriter.create}. */
export interface TarWriterOptions {
  /** Modification time given to every entry, default 0 (reproducible archives). */
  mtime?: number;
}

/**
 * The reserved place of one entry of known size; bytes written to it go straight to
 * their final offset in the archive.
 */
export interface TarSlot {
  /** The entry's name. */
  readonly name: string;
  /** The entry's size, fixed at reservation. */
  readonly size: number;
  /** Bytes written so far. */
  readonly written: number;
  /** Whether {@linkcode TarSlot.finish} succeeded. */
  readonly complete: boolean;
  /** Appends bytes (throws a `RangeError` past the reserved size). */
  write(chunk: Uint8Array): Promise<void>;
  /** Checks that exactly `size` bytes were written and writes the padding. */
  finish(): Promise<void>;
  /** Starts the entry over from its first byte (e.g. to retry a failed download). */
  reset(): void;
}

/** A stream spooled to a temporary file, waiting to be appended to the archive. */
export interface SpooledFile {
  /** Its size in bytes. */
  readonly size: number;
  /** Appends it to the archive as an entry called `name` and removes the spool file. */
  appendAs(name: string, options?: TarEntryOptions): Promise<void>;
  /** Removes the spool file without appending it. */
  discard(): Promise<void>;
}

/** Reservations from this size on are weighed against the free space first. */
const SPACE_CHECK_BYTES = 64 * 1024 * 1024;

function randomSuffix(): string {
  return randomBytes(6).toString("hex");
}

/** The last `length` characters of `text` with non-ASCII and `/` made `_` (fallback names). */
function asciiTail(text: string, length: number): string {
  return text.slice(-length).replace(/[^\x20-\x7e]|\//g, "_") || "_";
}

function entryName(name: string): string {
  const normal = normalizeArchivePath(name);
  if (normal === undefined || normal === "") {
    throw new RangeError(`invalid tar entry name ${JSON.stringify(name)}`);
  }
  return normal;
}

/**
 * A tar archive being written to a temporary file next to its final path.
 *
 * @example
 * ```ts
 * import { TarWriter } from "./tar_writer.ts";
 * const writer = await TarWriter.create("/tmp/example.tar");
 * try {
 *   await writer.addFile("hello.txt", new TextEncoder().encode("hello\n"));
 *   const slot = await writer.reserve("data.bin", 3);
 *   await slot.write(new Uint8Array([1, 2, 3]));
 *   await slot.finish();
 *   await writer.commit();
 * } catch (e) {
 *   await writer.abort();
 *   throw e;
 * }
 * ```
 */
export class TarWriter {
  /** The final path, written by `commit`. */
  readonly path: string;
  /** The temporary file being written. */
  readonly tempPath: string;
  #handle: FileHandle;
  #position = 0;
  #mtime: number;
  #pending = new Set<TarSlot>();
  #spools = new Map<string, FileHandle>();
  #finished = false;
  #closed = false;

  private constructor(path: string, tempPath: string, handle: FileHandle, mtime: number) {
    this.path = path;
    this.tempPath = tempPath;
    this.#handle = handle;
    this.#mtime = mtime;
  }

  /**
   * Creates `<path>.tmp-<pid>-<random>` and returns a writer for it; `path` is untouched
   * until `commit`. Temporary files of `path` that a killed run left are removed first.
   *
   * @example
   * ```ts
   * import { TarWriter } from "./tar_writer.ts";
   * const writer = await TarWriter.create("/tmp/out.tar");
   * await writer.abort();
   * ```
   */
  static async create(path: string, options: TarWriterOptions = {}): Promise<TarWriter> {
    // What a killed run left beside `path` goes first; the name tells the next run ours.
    await removeDeadTemps(dirname(path), basename(path));
    const tempPath = path + tempName();
    const handle = await open(tempPath, "wx", 0o644);
    return new TarWriter(path, tempPath, handle, options.mtime ?? 0);
  }

  /**
   * Refuses a reservation the file system cannot hold: a declared size (a manifest's
   * word) is weighed against the free space before any room is made for it, so a
   * hostile 1 TiB layer fails at once instead of after a sparse 1 TiB file was made.
   */
  async #checkSpace(name: string, size: number): Promise<void> {
    let free: number;
    try {
      const fs = await statfs(dirname(this.tempPath));
      free = Number(fs.bavail) * Number(fs.bsize);
    } catch {
      return; // cannot tell: the writes will say
    }
    let owed = size;
    for (const slot of this.#pending) owed += slot.size - slot.written;
    if (owed > free) {
      throw new ImagesError(
        `writing ${this.path}: ${name} is declared as ${size} bytes; with the entries still ` +
          `to come that is ${owed} bytes, more than the ${free} bytes free`,
        "NO_SPACE",
      );
    }
  }

  /** Bytes the archive holds so far, reserved space included. */
  get position(): number {
    return this.#position;
  }

  #check(): void {
    if (this.#finished || this.#closed) throw new Error(`${this.path}: tar writer is finished`);
  }

  /** Encodes the header blocks of an entry (a pax header first when needed). */
  #headers(fields: TarHeaderFields): Uint8Array {
    const pax = needsPax(fields);
    const main: TarHeaderFields = { ...fields, mtime: fields.mtime ?? this.#mtime };
    if (Object.keys(pax).length === 0) return encodeTarHeader(main);
    const records = encodePaxRecords(pax);
    const base = asciiTail(fields.name.split("/").pop()!, 80);
    const paxHeader = encodeTarHeader({
      name: `PaxHeaders.0/${base}`,
      typeflag: "x",
      size: records.length,
      mtime: this.#mtime,
    });
    // The ustar fields get a truncated name/link and a base-256 size; pax readers use the records.
    const shortName = pax.path !== undefined ? asciiTail(fields.name, 99) : fields.name;
    const shortLink = pax.linkpath !== undefined ? "" : fields.linkname;
    const out = new Uint8Array(BLOCK_SIZE + paddedSize(records.length) + BLOCK_SIZE);
    out.set(paxHeader, 0);
    out.set(records, BLOCK_SIZE);
    out.set(
      encodeTarHeader({ ...main, name: shortName, linkname: shortLink }),
      BLOCK_SIZE + paddedSize(records.length),
    );
    return out;
  }

  /** Allocates room for headers + data synchronously, then writes the headers. */
  async #place(fields: TarHeaderFields): Promise<number> {
    this.#check();
    const headers = this.#headers(fields);
    const at = this.#position;
    this.#position += headers.length + paddedSize(fields.size ?? 0);
    await writeAt(this.#handle, at, headers);
    return at + headers.length;
  }

  /**
   * Reserves an entry of `size` bytes: its header is written now and the returned slot
   * writes the data at its final offset. Slots may be filled concurrently and in any
   * order; `finish`/`commit` refuse an archive with a slot not completely written.
   *
   * @example
   * ```ts
   * import { TarWriter } from "./tar_writer.ts";
   * const writer = await TarWriter.create("/tmp/slots.tar");
   * const a = await writer.reserve("a", 2);
   * const b = await writer.reserve("b", 1);
   * await Promise.all([
   *   a.write(new Uint8Array([1, 2])).then(() => a.finish()),
   *   b.write(new Uint8Array([3])).then(() => b.finish()),
   * ]);
   * await writer.commit();
   * ```
   */
  async reserve(name: string, size: number, options: TarEntryOptions = {}): Promise<TarSlot> {
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`invalid size ${size}`);
    if (size >= SPACE_CHECK_BYTES) await this.#checkSpace(name, size);
    const dataOffset = await this.#place({
      name: entryName(name),
      size,
      mode: options.mode ?? 0o644,
      mtime: options.mtime,
    });
    const handle = this.#handle;
    const pending = this.#pending;
    let written = 0;
    let complete = false;
    const slot: TarSlot = {
      name,
      size,
      get written() {
        return written;
      },
      get complete() {
        return complete;
      },
      async write(chunk: Uint8Array): Promise<void> {
        if (complete) throw new Error(`${name}: entry already finished`);
        if (written + chunk.length > size) {
          throw new RangeError(`${name}: more than the ${size} bytes reserved`);
        }
        const at = dataOffset + written;
        written += chunk.length;
        await writeAt(handle, at, chunk);
      },
      async finish(): Promise<void> {
        if (complete) return;
        if (written !== size) {
          throw new RangeError(`${name}: ${written} of the ${size} bytes reserved were written`);
        }
        const padding = paddedSize(size) - size;
        if (padding > 0) await writeAt(handle, dataOffset + size, new Uint8Array(padding));
        complete = true;
        pending.delete(slot);
      },
      reset(): void {
        written = 0;
        complete = false;
        pending.add(slot);
      },
    };
    pending.add(slot);
    return slot;
  }

  /**
   * Adds a small entry whose bytes are all in memory.
   *
   * @example
   * ```ts
   * import { TarWriter } from "./tar_writer.ts";
   * const writer = await TarWriter.create("/tmp/file.tar");
   * await writer.addFile("oci-layout", new TextEncoder().encode('{"imageLayoutVersion":"1.0.0"}'));
   * await writer.commit();
   * ```
   */
  async addFile(name: string, data: Uint8Array, options: TarEntryOptions = {}): Promise<void> {
    const slot = await this.reserve(name, data.length, options);
    await slot.write(data);
    await slot.finish();
  }

  /**
   * Adds a directory entry.
   *
   * @example
   * ```ts
   * import { TarWriter } from "./tar_writer.ts";
   * const writer = await TarWriter.create("/tmp/dir.tar");
   * await writer.addDirectory("blobs/sha256");
   * await writer.commit();
   * ```
   */
  async addDirectory(name: string, options: TarEntryOptions = {}): Promise<void> {
    await this.#place({
      name: entryName(name) + "/",
      typeflag: "5",
      mode: options.mode ?? 0o755,
      mtime: options.mtime,
    });
  }

  /**
   * Adds a symbolic link; the target is written as given (relative to the link's directory).
   *
   * @example
   * ```ts
   * import { TarWriter } from "./tar_writer.ts";
   * const writer = await TarWriter.create("/tmp/link.tar");
   * await writer.addSymlink("abc/layer.tar", "../layer.tar");
   * await writer.commit();
   * ```
   */
  async addSymlink(name: string, target: string, options: TarEntryOptions = {}): Promise<void> {
    await this.#place({
      name: entryName(name),
      typeflag: "2",
      linkname: target,
      mode: options.mode ?? 0o777,
      mtime: options.mtime,
    });
  }

  /**
   * Adds a hard link to an earlier entry (`target` is relative to the archive root).
   *
   * @example
   * ```ts
   * import { TarWriter } from "./tar_writer.ts";
   * const writer = await TarWriter.create("/tmp/hard.tar");
   * await writer.addFile("a", new Uint8Array([1]));
   * await writer.addHardLink("b", "a");
   * await writer.commit();
   * ```
   */
  async addHardLink(name: string, target: string, options: TarEntryOptions = {}): Promise<void> {
    await this.#place({
      name: entryName(name),
      typeflag: "1",
      linkname: target,
      mode: options.mode ?? 0o644,
      mtime: options.mtime,
    });
  }

  /**
   * Writes a stream of unknown size to a spool file next to the archive, calling
   * `observe` with every chunk (e.g. to hash it); append it with `appendAs` once its
   * name is known, or `discard` it.
   *
   * @example
   * ```ts
   * import { TarWriter } from "./tar_writer.ts";
   * const writer = await TarWriter.create("/tmp/spool.tar");
   * const spooled = await writer.spool(new Blob(["data"]).stream());
   * await spooled.appendAs("data.txt");
   * await writer.commit();
   * ```
   */
  async spool(
    stream: ReadableStream<Uint8Array>,
    observe?: (chunk: Uint8Array) => void,
  ): Promise<SpooledFile> {
    this.#check();
    const spoolPath = `${this.tempPath}.spool-${randomSuffix()}`;
    const handle = await open(spoolPath, "wx+", 0o600);
    this.#spools.set(spoolPath, handle);
    let size = 0;
    const drop = async (): Promise<void> => {
      await handle.close().catch(() => {});
      await removeFile(spoolPath);
      this.#spools.delete(spoolPath);
    };
    const reader = stream.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        observe?.(value);
        await writeAt(handle, size, value);
        size += value.length;
      }
    } catch (e) {
      // The source is let go of (a registry body closed), without waiting on it: a
      // stalled body's cancel may never settle.
      void reader.cancel(e).catch(() => {});
      await drop();
      throw e;
    }
    return {
      size,
      appendAs: async (name: string, options: TarEntryOptions = {}): Promise<void> => {
        try {
          const slot = await this.reserve(name, size, options);
          const reader = rangeStream(handle, 0, size).getReader();
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            await slot.write(value);
          }
          await slot.finish();
        } finally {
          await drop();
        }
      },
      discard: drop,
    };
  }

  /**
   * Adds an entry of unknown size from a stream (spooled first, then appended).
   * Returns its size.
   *
   * @example
   * ```ts
   * import { TarWriter } from "./tar_writer.ts";
   * const writer = await TarWriter.create("/tmp/stream.tar");
   * await writer.addStream("greeting.txt", new Blob(["hi"]).stream());
   * await writer.commit();
   * ```
   */
  async addStream(
    name: string,
    stream: ReadableStream<Uint8Array>,
    options: TarEntryOptions = {},
  ): Promise<number> {
    const spooled = await this.spool(stream);
    await spooled.appendAs(name, options);
    return spooled.size;
  }

  /**
   * Ends the archive with two zero blocks, after checking every reserved slot was
   * completely written. Nothing can be added afterwards.
   *
   * @example
   * ```ts
   * import { TarWriter } from "./tar_writer.ts";
   * const writer = await TarWriter.create("/tmp/finish.tar");
   * await writer.finish();
   * await writer.commit();
   * ```
   */
  async finish(): Promise<void> {
    if (this.#finished) return;
    this.#check();
    if (this.#pending.size > 0) {
      const names = [...this.#pending].map((s) => `${s.name} (${s.written}/${s.size} bytes)`);
      throw new Error(`${this.path}: entries not completely written: ${names.join(", ")}`);
    }
    this.#finished = true;
    await writeAt(this.#handle, this.#position, new Uint8Array(2 * BLOCK_SIZE));
    this.#position += 2 * BLOCK_SIZE;
  }

  /**
   * Finishes the archive if needed, closes it and renames it onto `path` (replacing a
   * previous file atomically).
   *
   * @example
   * ```ts
   * import { TarWriter } from "./tar_writer.ts";
   * const writer = await TarWriter.create("/tmp/commit.tar");
   * await writer.addFile("a.txt", new Uint8Array(0));
   * await writer.commit();
   * ```
   */
  async commit(): Promise<void> {
    await this.finish();
    this.#closed = true;
    await this.#handle.close();
    await rename(this.tempPath, this.path);
  }

  /**
   * Discards the archive: closes and removes the temporary file and any spool files.
   * A previous file at `path` is left as it was. Safe to call more than once.
   *
   * @example
   * ```ts
   * import { TarWriter } from "./tar_writer.ts";
   * const writer = await TarWriter.create("/tmp/aborted.tar");
   * await writer.abort();
   * ```
   */
  async abort(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      await this.#handle.close().catch(() => {});
    }
    await removeFile(this.tempPath);
    for (const [spool, handle] of [...this.#spools]) {
      await handle.close().catch(() => {});
      await removeFile(spool);
    }
    this.#spools.clear();
  }
}
