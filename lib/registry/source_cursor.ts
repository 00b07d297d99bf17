/**
 * Reading a blob's bytes for an upload that may have to go back: the source can be
 * re-opened at any offset, the SHA-256 is computed as bytes are taken, and snapshots
 * of the hash (`Hash.copy()`) at acknowledged offsets let a resumed upload continue
 * hashing without reading the blob from the start.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { ImagesError } from "../errors.ts";
import { dispose } from "../gc.ts";
import { vouchedDigest } from "../oci/digest.ts";
import { concatBytes } from "../streams.ts";

/**
 * Where an upload's bytes come from.
 *
 * @example
 * ```ts
 * import type { BlobSource } from "./source_cursor.ts";
 * const bytes = new TextEncoder().encode("hello");
 * const source: BlobSource = {
 *   open: (offset) => new Blob([bytes.subarray(offset)]).stream(),
 *   size: bytes.byteLength,
 * };
 * ```
 */
export interface BlobSource {
  /**
   * A stream of the blob's bytes from `offset` on. Called again after a failure; every
   * call must yield the same bytes (a deterministic source), so nothing is buffered.
   */
  open(offset: number): ReadableStream<Uint8Array> | Promise<ReadableStream<Uint8Array>>;
  /** The digest, when known in advance; the bytes are checked against it. */
  digest?: string;
  /** The size, when known in advance; the bytes are checked against it. */
  size?: number;
}

const MAX_CHECKPOINTS = 16;

/**
 * A position in a {@linkcode BlobSource} with the hash of every byte before it.
 *
 * @example
 * ```ts
 * import { SourceCursor } from "./source_cursor.ts";
 * const bytes = new TextEncoder().encode("hello world");
 * const cursor = new SourceCursor({ open: (o) => new Blob([bytes.subarray(o)]).stream() }, "greeting");
 * await cursor.seek(0);
 * await cursor.fill(5);
 * cursor.checkpoint();
 * await cursor.fill(100);
 * await cursor.seek(5); // re-opens at 5, hash state restored from the checkpoint
 * await cursor.fill(100);
 * console.log(cursor.position, cursor.digest());
 * ```
 */
export class SourceCursor {
  readonly #source: BlobSource;
  readonly #what: string;
  #hash: Hash = createHash("sha256");
  /**
   * Whether the source's first stream was vouched for with the digest announced
   * (lib/oci/digest.ts `vouch`): its maker checks every byte, so they are not hashed
   * again here, and the registry checks the digest on commit whatever was sent.
   */
  #trusted = false;
  #checkpoints: { offset: number; hash: Hash }[] = [];
  #reader?: ReadableStreamDefaultReader<Uint8Array>;
  /** Bytes read from the source but not taken yet (by `atEnd` and `peekWhole`). */
  #pending: Uint8Array[] = [];
  #ended = false;
  /** Counts the streams handed out and the seeks: a body stream of an older count is over. */
  #epoch = 0;
  /** A body stream's read in progress, which a seek waits for. */
  #bodyRead?: Promise<void>;
  /** Bytes taken (and hashed) so far. */
  position = 0;
  /** The error the source failed with, if it did: never worth a retry. */
  failure?: unknown;

  /**
   * Creates a cursor before the first byte; `seek(0)` opens the source.
   *
   * @param source the blob's bytes
   * @param what names the blob in errors
   */
  constructor(source: BlobSource, what: string) {
    this.#source = source;
    this.#what = what;
  }

  /** Whether every byte of the source has been taken. */
  get ended(): boolean {
    return this.#ended && this.#pending.length === 0;
  }

  /**
   * Moves to `offset`: forward by reading, backward by re-opening the source at the
   * nearest checkpoint before it and reading up to it.
   */
  async seek(offset: number): Promise<void> {
    // A body stream of an earlier attempt may still be pulled (Deno's fetch reads on
    // after an early answer): it gets nothing more, and its last read ends first.
    this.#epoch++;
    await this.#bodyRead?.catch(() => {});
    if (offset === this.position && (this.#reader || this.#ended)) return;
    if (offset < this.position || !this.#reader) {
      const at = this.#checkpoints.filter((c) => c.offset <= offset).at(-1);
      await this.#closeReader();
      this.#hash = at ? at.hash.copy() : createHash("sha256");
      this.position = at ? at.offset : 0;
      this.#ended = false;
      this.#pending = [];
      try {
        const stream = await this.#source.open(this.position);
        if (this.position === 0) {
          this.#trusted = vouchedDigest(stream, this.#source.digest) !== undefined;
        }
        this.#reader = stream.getReader();
      } catch (e) {
        this.failure = e;
        throw e;
      }
    }
    while (this.position < offset) {
      const got = await this.read(offset - this.position);
      if (got === null) {
        throw this.#fail(
          `the source ended at byte ${this.position}, before byte ${offset} the registry holds`,
        );
      }
      dispose(got); // already with the registry: hashed, not sent
    }
  }

  /** The next bytes (at most `max`), hashed; null at the end. */
  async read(max = Infinity): Promise<Uint8Array | null> {
    let chunk = this.#pending.shift() ?? await this.#next();
    if (chunk === null) return null;
    if (chunk.byteLength > max) {
      this.#pending.unshift(chunk.subarray(max));
      chunk = chunk.subarray(0, max);
    }
    if (!this.#trusted) this.#hash.update(chunk);
    this.position += chunk.byteLength;
    const size = this.#source.size;
    if (size !== undefined && this.position > size) {
      throw this.#fail(`the source has more than the expected ${size} bytes`);
    }
    return chunk;
  }

  /** Exactly `n` bytes in one new buffer, fewer only at the end of the source. */
  async fill(n: number): Promise<Uint8Array> {
    const first = await this.read(n);
    if (first === null) return new Uint8Array(0);
    if (first.byteLength === n) return copyAndDispose(first);
    const out = new Uint8Array(n);
    out.set(first, 0);
    let at = first.byteLength;
    dispose(first);
    while (at < n) {
      const more = await this.read(n - at);
      if (more === null) break;
      out.set(more, at);
      at += more.byteLength;
      dispose(more);
    }
    return at === n ? out : out.slice(0, at);
  }

  /** Whether the source has no more bytes (reads ahead, hashing nothing). */
  async atEnd(): Promise<boolean> {
    if (this.#pending.length > 0) return false;
    const next = await this.#next();
    if (next === null) return true;
    this.#pending.push(next);
    return false;
  }

  /**
   * A copy of the rest of the source when it is at most `limit` bytes, else undefined.
   * Takes nothing: the bytes read ahead stay to be taken (and hashed) by `read`.
   */
  async peekWhole(limit: number): Promise<Uint8Array | undefined> {
    let total = this.#pending.reduce((n, c) => n + c.byteLength, 0);
    while (total <= limit) {
      const next = await this.#next();
      if (next === null) break;
      this.#pending.push(next);
      total += next.byteLength;
    }
    if (total > limit) return undefined;
    return concatBytes(this.#pending);
  }

  /** Remembers the hash state at the current position, to come back to. */
  checkpoint(): void {
    const last = this.#checkpoints.at(-1);
    if (last && last.offset >= this.position) {
      this.#checkpoints = this.#checkpoints.filter((c) => c.offset < this.position);
    }
    this.#checkpoints.push({ offset: this.position, hash: this.#hash.copy() });
    if (this.#checkpoints.length > MAX_CHECKPOINTS) this.#checkpoints.shift();
  }

  /**
   * The digest of the bytes taken so far (the cursor can go on); for a source whose
   * maker vouched for its digest, that digest (ask at the end).
   */
  digest(): string {
    if (this.#trusted) return this.#source.digest!;
    return "sha256:" + this.#hash.copy().digest("hex");
  }

  /**
   * A stream of the rest of the source, for a streamed request body: a checkpoint is
   * kept every `checkpointEvery` bytes, and `onProgress` hears the position. With
   * `freeSent`, a chunk of the library's own is let go of when the next is asked for
   * (lib/gc.ts `dispose`): only for a taker that holds what it read, like the runtime's
   * `fetch`. The stream gets no more bytes once another is made or the cursor seeks.
   */
  stream(
    checkpointEvery: number,
    onProgress?: (position: number) => void,
    freeSent = false,
  ): ReadableStream<Uint8Array> {
    let mark = this.position;
    let handedOn: Uint8Array | undefined;
    const epoch = ++this.#epoch;
    const next = async (controller: ReadableStreamDefaultController<Uint8Array>) => {
      // Asked for more: the taker holds the last chunk now, so its memory can go.
      if (handedOn && freeSent) dispose(handedOn);
      const chunk = handedOn = (await this.read(1 << 20)) ?? undefined;
      if (chunk === undefined) {
        controller.close();
        return;
      }
      if (this.position - mark >= checkpointEvery) {
        this.checkpoint();
        mark = this.position;
      }
      onProgress?.(this.position);
      controller.enqueue(chunk);
    };
    return new ReadableStream<Uint8Array>({
      pull: (controller) => {
        if (epoch !== this.#epoch) {
          controller.error(new Error("this upload attempt is over"));
          return;
        }
        this.#bodyRead = next(controller);
        return this.#bodyRead;
      },
    }, { highWaterMark: 0 });
  }

  /** Releases the source. */
  async close(): Promise<void> {
    await this.#closeReader();
    this.#checkpoints = [];
  }

  async #closeReader(): Promise<void> {
    const reader = this.#reader;
    this.#reader = undefined;
    if (reader) await reader.cancel().catch(() => {});
  }

  async #next(): Promise<Uint8Array | null> {
    if (this.#ended || !this.#reader) return null;
    for (;;) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await this.#reader.read();
      } catch (e) {
        this.failure = e;
        throw e;
      }
      if (result.done) {
        this.#ended = true;
        const size = this.#source.size;
        const read = this.position + this.#pending.reduce((n, c) => n + c.byteLength, 0);
        if (size !== undefined && read < size) {
          throw this.#fail(`the source ended after ${read} of ${size} bytes`);
        }
        return null;
      }
      if (result.value.byteLength > 0) return result.value;
    }
  }

  #fail(problem: string): ImagesError {
    const e = new ImagesError(`${this.#what}: ${problem}`, "SIZE_INVALID");
    this.failure = e;
    return e;
  }
}

/** A copy of `bytes`, whose own memory is let go at once when the library made it. */
function copyAndDispose(bytes: Uint8Array): Uint8Array {
  const copy = bytes.slice();
  dispose(bytes);
  return copy;
}
