/**
 * Keeps memory flat while gigabytes stream through: the only runtime-specific code of
 * the library.
 *
 * Streams allocate a new buffer per chunk. Those buffers live outside the JavaScript
 * heap, and V8 lets such garbage reach about 64 MiB per isolate before it collects, so
 * a push that moves data through three isolates (the main thread and two compression
 * workers) would sit at 250+ MiB of garbage. Collecting after every few dozen MiB
 * moved keeps the peak near the live data. How often depends on what a collection costs:
 * Bun's takes a fraction of a millisecond and runs every 6 MiB (a 2 GiB push peaks under
 * 100 MiB instead of 140); Deno's, reached through a second context, is a full one of
 * about 12 ms and runs every 16 MiB (a 2 GiB push: 55 of them, 0.64 s, for 96–98 MiB
 * instead of 168 MiB without; bench/README.md).
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
        threshold: 16 * MIB,
        // V8 reclaims response chunks well enough on its own: a 839 MiB pull peaks at
        // the same 86-99 MiB with a quarter of the forced collections, 0.35 s faster.
        weight: { buffer: 1, response: 0.25 },
      };
    }
  } catch {
    // No collector: memory is then bounded by the runtime's own heuristics.
  }
  return { collect: () => {}, threshold: Infinity, weight: { buffer: 0, response: 0 } };
}

const collector = findCollector();
let pending = 0;

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
