/**
 * Positional file I/O on `node:fs/promises` file handles, shared by the tar reader,
 * the tar writer and the layout directory: exact reads, full writes and a bounded-memory
 * stream over a byte range.
 *
 * @module
 */

import { readSync } from "node:fs";
import { type FileHandle, unlink } from "node:fs/promises";
import { AbortedError, ImagesError } from "../errors.ts";
import { CHUNK_SIZE, takeChunk } from "../chunk_pool.ts";
import { noteGarbage } from "../gc.ts";

/** The chunk size streams read with (pooled buffers, see lib/chunk_pool.ts). */
export { CHUNK_SIZE };

/**
 * Reads up to `length` bytes at `position`, looping over short reads; returns fewer
 * bytes only at the end of the file.
 *
 * @example
 * ```ts
 * import { open } from "node:fs/promises";
 * import { readAt } from "./file_io.ts";
 * const fh = await open("deno.json");
 * const head = await readAt(fh, 0, 16);
 * await fh.close();
 * ```
 */
export async function readAt(
  handle: FileHandle,
  position: number,
  length: number,
): Promise<Uint8Array> {
  const buffer = new Uint8Array(length);
  const done = await readInto(handle, buffer, position);
  return done === length ? buffer : buffer.subarray(0, done);
}

/**
 * Fills `buffer` from `position`, looping over short reads; returns the bytes read,
 * fewer than the buffer holds only at the end of the file.
 *
 * @example
 * ```ts
 * import { open } from "node:fs/promises";
 * import { readInto } from "./file_io.ts";
 * const fh = await open("deno.json");
 * const got = await readInto(fh, new Uint8Array(16), 0);
 * await fh.close();
 * ```
 */
export function readInto(
  handle: FileHandle,
  buffer: Uint8Array,
  position: number,
): Promise<number> {
  // The executor runs at once; a read that throws rejects the promise.
  return new Promise((resolve) => {
    let done = 0;
    while (done < buffer.length) {
      // A synchronous positional read: on a pipe, socket or terminal it fails at once
      // (ESPIPE), on a regular file it waits on its file system. The asynchronous one hands
      // each read to another thread and, on Deno, copies it once more: a 2 GiB push spent
      // 0.15–0.2 s more CPU so, and was no faster with the file out of the page cache
      // (bench/README.md).
      const bytesRead = readSync(handle.fd, buffer, done, buffer.length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    resolve(done);
  });
}

/**
 * Writes all of `bytes` at `position`, looping over short writes.
 *
 * @example
 * ```ts
 * import { open, rm } from "node:fs/promises";
 * import { writeAt } from "./file_io.ts";
 * const fh = await open("/tmp/write-at-example", "w");
 * await writeAt(fh, 0, new TextEncoder().encode("hello"));
 * await fh.close();
 * await rm("/tmp/write-at-example");
 * ```
 */
export async function writeAt(
  handle: FileHandle,
  position: number,
  bytes: Uint8Array,
): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(
      bytes,
      done,
      bytes.length - done,
      position + done,
    );
    if (bytesWritten === 0) throw new Error("write made no progress");
    done += bytesWritten;
  }
}

/** Options of {@linkcode rangeStream}. */
export interface RangeStreamOptions {
  /** Bytes per read; default {@linkcode CHUNK_SIZE}. */
  chunkSize?: number;
  /** Cancels the stream with an {@linkcode AbortedError}. */
  signal?: AbortSignal;
  /** Builds the error raised when the file ends before `length` bytes were read. */
  onShort?: (got: number) => Error;
}

/**
 * A stream of `length` bytes of a file starting at `position`, read one chunk at a
 * time as the consumer pulls, so memory stays at about two chunks whatever the size.
 * The handle is not closed by the stream.
 *
 * @example
 * ```ts
 * import { open } from "node:fs/promises";
 * import { rangeStream } from "./file_io.ts";
 * const fh = await open("deno.json");
 * const text = await new Response(rangeStream(fh, 0, 10)).text();
 * await fh.close();
 * ```
 */
export function rangeStream(
  handle: FileHandle,
  position: number,
  length: number,
  options: RangeStreamOptions = {},
): ReadableStream<Uint8Array> {
  const chunkSize = options.chunkSize ?? CHUNK_SIZE;
  let offset = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (options.signal?.aborted) throw new AbortedError("read");
      if (offset >= length) {
        controller.close();
        return;
      }
      const want = Math.min(chunkSize, length - offset);
      let chunk: Uint8Array;
      if (want === CHUNK_SIZE) {
        // A pooled buffer: compression takes whole ones over and gives them back; any
        // other consumer leaves it to the garbage collector.
        const pooled = takeChunk();
        chunk = pooled.subarray(0, await readInto(handle, pooled, position + offset));
      } else {
        chunk = await readAt(handle, position + offset, want);
        noteGarbage(chunk.length);
      }
      if (chunk.length === 0) {
        throw options.onShort?.(offset) ??
          new Error(`file ended after ${offset} of ${length} bytes`);
      }
      offset += chunk.length;
      controller.enqueue(chunk);
      if (offset >= length) controller.close();
    },
  }, { highWaterMark: 1 });
}

/**
 * The `code` of a Node-style system error (`ENOENT`, `EEXIST`, …), or undefined.
 *
 * @example
 * ```ts
 * import { stat } from "node:fs/promises";
 * import { errorCode } from "./file_io.ts";
 * const exists = await stat("/nonexistent").then(() => true, (e) => {
 *   if (errorCode(e) === "ENOENT") return false;
 *   throw e;
 * });
 * ```
 */
export function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * What went wrong in a file system call, in words for a message (`permission denied`,
 * `too many levels of symbolic links (a link loop?)`, …).
 *
 * @example
 * ```ts
 * import { stat } from "node:fs/promises";
 * import { fsProblem } from "./file_io.ts";
 * await stat("/nonexistent").catch((e) => console.log(fsProblem(e))); // no such file or directory
 * ```
 */
export function fsProblem(error: unknown): string {
  const code = errorCode(error);
  switch (code) {
    case "ENOENT":
      return "no such file or directory";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "ELOOP":
      return "too many levels of symbolic links (a link loop?)";
    case "ENOTDIR":
      return "a component of the path is not a directory";
    case "ENAMETOOLONG":
      return "the path is too long";
    case "EISDIR":
      return "is a directory";
    case "ENOSPC":
      return "no space left on device";
    case "EDQUOT":
      return "disk quota exceeded";
    case "EFBIG":
      return "file too large for the file system or the process's limit";
    case "EROFS":
      return "read-only file system";
    case "EIO":
      return "input/output error";
    default:
      return code ?? String((error as Error | undefined)?.message ?? error);
  }
}

/**
 * A file-system error met while writing `path` (disk full, quota, read-only…) as an
 * {@linkcode ImagesError} naming the path and the problem in words; any other error
 * (ours, a network failure) is returned as it is.
 *
 * @example
 * ```ts
 * import { writeFailure } from "./file_io.ts";
 * const full = Object.assign(new Error("No space left on device (os error 28)"), { code: "ENOSPC" });
 * console.log((writeFailure("/out/app.tar", full) as Error).message);
 * // writing /out/app.tar: no space left on device
 * ```
 */
export function writeFailure(path: string, error: unknown): unknown {
  if (error instanceof ImagesError) return error;
  const code = errorCode(error);
  if (code === undefined || !/^E[A-Z]+$/.test(code)) return error;
  return new ImagesError(`writing ${path}: ${fsProblem(error)}`, "WRITE_FAILED", {
    cause: error,
  });
}

/**
 * Removes the file at `path`, if it is there. Unlike `rm(path, { force: true })`, which
 * looks at the file first (Deno: read access), this needs only write access, so a run
 * allowed to write a folder but not to read it still cleans up after itself.
 *
 * @example
 * ```ts
 * import { removeFile } from "./file_io.ts";
 * await removeFile("/tmp/nothing-here.tmp");
 * ```
 */
export async function removeFile(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (e) {
    if (errorCode(e) !== "ENOENT") throw e;
  }
}
