/**
 * Reading a tar archive front to back from a stream (a pipe, a gzip stream), where no
 * byte can be read twice: each entry's data is handed over as a stream of its own, and
 * whatever the reader leaves of it is skipped before the next header.
 *
 * Reads what {@linkcode TarIndex} reads: ustar with `prefix`, pax extended headers
 * (`path`, `linkpath`, `size`, global ones too), GNU long names and link names, base-256
 * sizes; names are normalised and refused when they leave the archive.
 *
 * @module
 */

import { ArchiveError } from "../errors.ts";
import { BLOCK_SIZE, decodePaxRecords, decodeTarHeader, paddedSize } from "./tar_header.ts";
import { entryType, hardLinkTarget, type TarEntryType } from "./tar_index.ts";
import { MAX_PATH_LENGTH, normalizeArchivePath, showPath } from "./tar_path.ts";

/** One entry of a streamed tar. */
export interface StreamedTarEntry {
  /** Normalised name (no `./`, no trailing `/`). */
  name: string;
  /** What the entry is. */
  type: TarEntryType;
  /** Size of the data (0 for anything but a file). */
  size: number;
  /** A link's target (a hard link's normalised). */
  linkname?: string;
  /**
   * The entry's data, readable once, before the next entry is asked for; what is left
   * unread is skipped.
   */
  data: ReadableStream<Uint8Array>;
}

const MAX_META_BYTES = 1024 * 1024;
/** What is read after the end of the archive, at most, before the stream is let go. */
const MAX_TRAILER_BYTES = 16 * 1024 * 1024;

/** Reads exact byte counts from a stream of chunks of any size. */
class ByteReader {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #buffer: Uint8Array = new Uint8Array(0);
  /** Bytes handed out so far (for offsets in messages). */
  position = 0;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  /** Up to `max` bytes (at least one unless the stream ended). */
  async some(max: number): Promise<Uint8Array | undefined> {
    if (this.#buffer.length === 0) {
      const { done, value } = await this.#reader.read();
      if (done) return undefined;
      this.#buffer = value;
    }
    const out = this.#buffer.subarray(0, max);
    this.#buffer = this.#buffer.subarray(out.length);
    this.position += out.length;
    return out;
  }

  /** Exactly `n` bytes, or fewer when the stream ends first. */
  async exact(n: number): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const part = await this.some(n - filled);
      if (!part) return out.subarray(0, filled);
      out.set(part, filled);
      filled += part.length;
    }
    return out;
  }

  /** Skips `n` bytes; false when the stream ends first. */
  async skip(n: number): Promise<boolean> {
    for (let left = n; left > 0;) {
      const part = await this.some(Math.min(left, 1 << 20));
      if (!part) return false;
      left -= part.length;
    }
    return true;
  }

  async cancel(reason?: unknown): Promise<void> {
    await this.#reader.cancel(reason).catch(() => {});
  }
}

/**
 * The entries of a tar read from `stream`, in order. `file` names the archive in errors
 * (e.g. `standard input`). Ask for the next entry only after reading or abandoning the
 * data of the previous one.
 *
 * @example
 * ```ts ignore
 * import { readTarStream } from "./tar_stream.ts";
 * const stream = (await Deno.open("image.tar")).readable;
 * for await (const entry of readTarStream(stream, "image.tar")) {
 *   console.log(entry.name, entry.size);
 * }
 * ```
 */
export async function* readTarStream(
  stream: ReadableStream<Uint8Array>,
  file: string,
): AsyncGenerator<StreamedTarEntry> {
  const input = new ByteReader(stream);
  let local: Record<string, string> = Object.create(null);
  const global: Record<string, string> = Object.create(null);
  let longName: string | undefined;
  let longLink: string | undefined;
  const decoder = new TextDecoder();
  try {
    for (;;) {
      const at = input.position;
      const block = await input.exact(BLOCK_SIZE);
      if (block.length === 0 && at > 0) return; // no end blocks: tolerated, as tar does
      if (block.length < BLOCK_SIZE) {
        throw new ArchiveError(
          file,
          undefined,
          at === 0
            ? "not a tar archive: it is empty or too short"
            : `truncated: the stream ends inside a header block at offset ${at}`,
        );
      }
      const header = decodeTarHeader(block);
      if (header === "zero") {
        // Read the rest (tar pads to its record size): a producer in a pipe whose last
        // write found the pipe closed would fail (EPIPE), and `set -o pipefail` with it.
        await input.skip(MAX_TRAILER_BYTES);
        return;
      }
      if (header === "checksum" || header === "field") {
        throw new ArchiveError(
          file,
          undefined,
          at === 0
            ? "not a tar archive: no valid tar header at offset 0"
            : `header checksum mismatch or invalid field at offset ${at} (corrupt archive?)`,
        );
      }
      const isMeta = "xgLK".includes(header.typeflag);
      const size = isMeta ? header.size : Number(local.size ?? global.size ?? header.size);
      const rawName = isMeta ? header.name : local.path ?? longName ?? global.path ?? header.name;
      if (!Number.isSafeInteger(size) || size < 0) {
        throw new ArchiveError(file, showPath(rawName), `invalid size at offset ${at}`);
      }
      const readMeta = async () => {
        if (size > MAX_META_BYTES) {
          throw new ArchiveError(
            file,
            showPath(header.name),
            `extended header at offset ${at} is ${size} bytes, over the ${MAX_META_BYTES}-byte limit`,
          );
        }
        const bytes = await input.exact(size);
        if (bytes.length < size || !(await input.skip(paddedSize(size) - size))) {
          throw new ArchiveError(file, showPath(header.name), "truncated extended header");
        }
        return bytes;
      };
      if (header.typeflag === "x" || header.typeflag === "g") {
        const records = decodePaxRecords(await readMeta());
        if (!records) {
          throw new ArchiveError(file, showPath(header.name), `malformed pax header at ${at}`);
        }
        if (header.typeflag === "x") local = Object.assign(Object.create(null), local, records);
        else Object.assign(global, records);
        continue;
      }
      if (header.typeflag === "L" || header.typeflag === "K") {
        const text = decoder.decode(await readMeta()).replace(/\0.*$/s, "");
        if (header.typeflag === "L") longName = text;
        else longLink = text;
        continue;
      }
      const type = entryType(header.typeflag);
      const name = normalizeArchivePath(rawName);
      if (name === undefined || name.length > MAX_PATH_LENGTH) {
        throw new ArchiveError(
          file,
          showPath(rawName),
          name === undefined ? "path leaves the archive (absolute or ..)" : "name too long",
        );
      }
      let linkname: string | undefined = local.linkpath ?? longLink ?? global.linkpath ??
        header.linkname;
      if (type === "hardlink") linkname = hardLinkTarget(file, rawName, linkname);
      else if (type !== "symlink") linkname = undefined;
      local = Object.create(null);
      longName = longLink = undefined;
      const dataSize = type === "file" ? size : 0;
      let left = dataSize;
      const data = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (left === 0) return controller.close();
          const part = await input.some(Math.min(left, 1 << 20));
          if (!part) {
            controller.error(
              new ArchiveError(
                file,
                showPath(name),
                `truncated: the stream ends ${left} bytes before the entry does`,
              ),
            );
            return;
          }
          left -= part.length;
          // A copy: the reader's buffer is reused by the next read.
          controller.enqueue(part.slice());
          if (left === 0) controller.close();
        },
      }, { highWaterMark: 0 });
      yield { name, type, size: dataSize, linkname, data };
      // Whatever the consumer left, and the padding (a non-file's data too).
      const rest = left + paddedSize(size) - dataSize;
      left = 0;
      if (!(await input.skip(rest))) {
        throw new ArchiveError(file, showPath(name), "truncated: the stream ends inside the entry");
      }
    }
  } finally {
    await input.cancel();
  }
}
