/**
 * Reusable 512 KiB buffers for the bytes a push reads and compresses, so gigabytes of
 * layers do not leave gigabytes of garbage behind (each collection of it costs
 * milliseconds, and until it runs the memory stays taken).
 *
 * A buffer is reused only once nobody else can reach it: the reader hands out buffers
 * from {@linkcode takeChunk}; a consumer that is done with such a chunk takes it over
 * with {@linkcode adoptChunk}, which detaches it (every view anybody still holds becomes
 * empty), and later gives the memory back with {@linkcode giveChunk}. So a file stream's
 * chunks must not be kept by anyone who passes them on to compression (no `tee()` of such
 * a stream): the compressor takes them over.
 *
 * The types say who owns what: an {@linkcode OwnedChunk} is memory only its holder can
 * reach. Only such a chunk can be given back, or handed to something that takes memory
 * over (the compressor, which transfers it to a worker): a view merely held, such as a
 * chunk read from a stream, must be adopted first, and adopting it empties every other
 * view of it, so a `tee()` branch or a buffering transform that kept one reads nothing
 * rather than bytes of a later read.
 *
 * @module
 */

import { markDisposable, noteGarbage } from "./gc.ts";

/**
 * Bytes per chunk: the size file streams read and compression blocks hold. Half a MiB
 * rather than one keeps Deno's push at 96–98 MiB instead of 106–109 (blocks in flight,
 * kept and collected are all half the size) for 0.5 % more compressed bytes; Bun's push
 * is as fast (bench/README.md).
 */
export const CHUNK_SIZE = 512 * 1024;

/** Buffers kept for reuse at most (more in flight are dropped when given back). */
const MAX_FREE = 4;

declare const owned: unique symbol;

/**
 * Bytes only their holder can reach: from {@linkcode takeChunk}, {@linkcode adoptChunk}
 * or {@linkcode ownedCopy}. Handing one on hands on its ownership: the giver keeps no view
 * of it, since the taker may reuse or transfer (detach) its memory.
 */
export type OwnedChunk = Uint8Array<ArrayBuffer> & { readonly [owned]: true };

const free: ArrayBuffer[] = [];
const handedOut = new WeakSet<ArrayBuffer>();

/**
 * A chunk of {@linkcode CHUNK_SIZE} bytes to read into: a returned one if any, else a
 * new one (counted as future garbage). Its content is whatever it last held.
 *
 * @example
 * ```ts
 * import { CHUNK_SIZE, takeChunk } from "./chunk_pool.ts";
 * const chunk = takeChunk();
 * console.log(chunk.byteLength === CHUNK_SIZE); // true
 * ```
 */
export function takeChunk(): OwnedChunk {
  let buffer = free.pop();
  const fresh = !buffer;
  if (!buffer) {
    buffer = new ArrayBuffer(CHUNK_SIZE);
    noteGarbage(CHUNK_SIZE);
  }
  handedOut.add(buffer);
  const chunk = new Uint8Array(buffer) as OwnedChunk;
  // Sent as it is (a blob pushed without compression), it can go once sent.
  markDisposable(chunk, fresh);
  return chunk;
}

/**
 * Takes over a whole chunk that came from {@linkcode takeChunk}: returns a view of its
 * memory that only the caller holds (the given view and any other become empty), or
 * `undefined` for any other bytes, which stay untouched.
 *
 * @example
 * ```ts
 * import { adoptChunk, takeChunk } from "./chunk_pool.ts";
 * const chunk = takeChunk();
 * const mine = adoptChunk(chunk)!;
 * console.log(chunk.byteLength, mine.byteLength); // 0 524288
 * ```
 */
export function adoptChunk(chunk: Uint8Array): OwnedChunk | undefined {
  const buffer = chunk.buffer;
  if (
    !(buffer instanceof ArrayBuffer) || !handedOut.has(buffer) ||
    chunk.byteOffset !== 0 || chunk.byteLength !== CHUNK_SIZE
  ) return undefined;
  handedOut.delete(buffer);
  return new Uint8Array(buffer.transfer()) as OwnedChunk;
}

/**
 * A copy of `bytes` in memory of its own, owned by the caller (for bytes that are not a
 * whole pooled chunk, to hand to something that takes memory over).
 *
 * @example
 * ```ts
 * import { ownedCopy } from "./chunk_pool.ts";
 * const mine = ownedCopy(new Uint8Array([1, 2, 3]).subarray(1));
 * console.log(mine); // Uint8Array [2, 3]
 * ```
 */
export function ownedCopy(bytes: Uint8Array): OwnedChunk {
  return bytes.slice() as OwnedChunk;
}

/**
 * Takes ownership of memory that came back from a worker by transfer: nobody else can
 * reach it, since transferring detached the sender's views.
 *
 * @example
 * ```ts ignore
 * worker.onmessage = (event) => giveChunk(transferredChunk(event.data.block));
 * ```
 */
export function transferredChunk(chunk: Uint8Array<ArrayBuffer>): OwnedChunk {
  return chunk as OwnedChunk;
}

/**
 * Gives back a chunk's memory for reuse: a chunk from {@linkcode adoptChunk}, or one
 * that came back from a worker by transfer. The memory is detached on the way in, so a
 * view anybody kept by mistake reads as empty instead of seeing later reads.
 *
 * @example
 * ```ts
 * import { adoptChunk, giveChunk, takeChunk } from "./chunk_pool.ts";
 * giveChunk(adoptChunk(takeChunk())!);
 * ```
 */
export function giveChunk(chunk: OwnedChunk): void {
  const buffer = chunk.buffer;
  if (
    buffer instanceof ArrayBuffer && buffer.byteLength === CHUNK_SIZE &&
    chunk.byteLength === CHUNK_SIZE && free.length < MAX_FREE
  ) free.push(buffer.transfer());
}
