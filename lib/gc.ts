/**
 * Keeps memory flat while gigabytes stream through: the only runtime-specific code of
 * the library.
 *
 * Streams allocate a new buffer per chunk. Those buffers live outside the JavaScript
 * heap, and V8 lets such garbage reach about 64 MiB per isolate before it collects, so
 * a push that moves data through three isolates (the main thread and two compression
 * workers) would sit at 250+ MiB of garbage. Collecting after every few MiB moved
 * keeps the peak near the live data. How often depends on what a collection costs:
 * Bun's takes a fraction of a millisecond and runs every 6 MiB (a 2 GiB push peaks under
 * 100 MiB instead of 140); Deno's, reached through a second context, is a full one of
 * about 12 ms and runs every 6 MiB (16 before: a push without FFI then peaked 2 MiB
 * higher, as fast; few buffers are left to it, see below).
 *
 * Better still is garbage that never needs a collection: a buffer the library made only
 * to hand on once (a compressed member, a pooled file chunk) is marked with
 * {@linkcode markDisposable}, and whoever hands it on last lets go of it with
 * {@linkcode dispose} once the taker holds it. A 2 GiB push then needs 2 forced
 * collections on Deno instead of 54 (0.6 s of pauses, and as much again on V8's helper
 * threads): 7.0 s instead of 8.2 s, at the same peak (bench/README.md; measured with a
 * collection per 16 MiB).
 *
 * @module
 */

import v8 from "node:v8";
import vm from "node:vm";

/** What became garbage: buffers the library allocated, or response bodies' chunks. */
export type GarbageKind = "buffer" | "response";

/** How to collect garbage now, after how many bytes, and how much each kind counts. */
interface Collector {
  collect(): void;
  threshold: number;
  weight: Record<GarbageKind, number>;
}

const MIB = 1024 * 1024;
/** Deno's library garbage between forced collections (see the module's text). */
const DENO_THRESHOLD = 6 * MIB;

/** The runtime's way to collect garbage, or nothing where there is none. */
function findCollector(): Collector {
  const bun = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun;
  // A synchronous full collection: Bun's asynchronous one left 20% more memory.
  if (bun?.gc) {
    return { collect: () => bun.gc(true), threshold: 6 * MIB, weight: { buffer: 1, response: 1 } };
  }
  try {
    // Deno (and Node) expose V8's collector to new contexts once the flag is set.
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc");
    if (typeof gc === "function") {
      return {
        collect: () => gc({ type: "major", execution: "async" }),
        threshold: DENO_THRESHOLD,
        // V8 reclaims response chunks well enough on its own: a 839 MiB pull peaks at
        // the same 86-99 MiB with one forced collection per 64 MiB of them instead of
        // one per 16, 0.35 s faster.
        weight: { buffer: 1, response: DENO_THRESHOLD / (64 * MIB) },
      };
    }
  } catch {
    // No collector: memory is then bounded by the runtime's own heuristics.
  }
  return { collect: () => {}, threshold: Infinity, weight: { buffer: 0, response: 0 } };
}

const collector = findCollector();
let pending = 0;
/** Buffers that may be disposed of, and whether they were counted as garbage. */
const disposable = new WeakMap<ArrayBuffer, boolean>();

/**
 * Notes that `bytes` of buffers became garbage; collects once enough has piled up.
 *
 * @example
 * ```ts
 * import { noteGarbage } from "./gc.ts";
 * noteGarbage(1024 * 1024); // after passing on a 1 MiB chunk
 * noteGarbage(65536, "response"); // after passing on a chunk of a response body
 * ```
 */
export function noteGarbage(bytes: number, kind: GarbageKind = "buffer"): void {
  pending += bytes * collector.weight[kind];
  if (pending < collector.threshold) return;
  pending = 0;
  collector.collect();
}

/**
 * Marks `bytes` as a buffer of the library's own that is handed on once and read by
 * nobody after its last taker: that taker may {@linkcode dispose} it. Only a view of a
 * whole buffer can be disposed. `counted`: whether its size was noted as garbage
 * ({@linkcode noteGarbage}), to be taken back when it is disposed of.
 *
 * @example
 * ```ts
 * import { markDisposable } from "./gc.ts";
 * const member = new Uint8Array(1024);
 * markDisposable(member);
 * ```
 */
export function markDisposable(bytes: Uint8Array, counted = true): void {
  if (bytes.buffer instanceof ArrayBuffer) disposable.set(bytes.buffer, counted);
}

/**
 * Lets go of a buffer marked with {@linkcode markDisposable} now instead of at a later
 * collection: it is detached (every view of it reads as empty), so its memory is freed
 * as soon as whoever was given it (the runtime's `fetch`, still sending it) is done with
 * it, and it no longer counts as garbage. Call it only once the taker holds the bytes
 * itself: for a stream, when the next chunk is asked for. Returns whether it did;
 * any other bytes, or a view of only part of a buffer, are left alone.
 *
 * @example
 * ```ts
 * import { dispose, markDisposable } from "./gc.ts";
 * const member = new Uint8Array(1024);
 * markDisposable(member);
 * console.log(dispose(member), member.byteLength); // true 0
 * ```
 */
export function dispose(bytes: Uint8Array): boolean {
  const buffer = bytes.buffer;
  if (
    !(buffer instanceof ArrayBuffer) || !disposable.has(buffer) ||
    bytes.byteOffset !== 0 || bytes.byteLength !== buffer.byteLength
  ) return false;
  const counted = disposable.get(buffer);
  disposable.delete(buffer);
  const size = buffer.byteLength;
  // A transfer to length 0 detaches the buffer and drops this thread's hold on its memory.
  buffer.transfer(0);
  if (counted) pending = Math.max(0, pending - size * collector.weight.buffer);
  return true;
}
