/**
 * Keeps memory flat while gigabytes stream through: the only runtime-specific code of
 * the library.
 *
 * Streams allocate a new buffer per chunk. Those buffers live outside the JavaScript
 * heap, and V8 lets such garbage reach about 64 MiB per isolate before it collects, so
 * a push that moves data through three isolates (the main thread and two compression
 * workers) would sit at 250+ MiB of garbage. Collecting after every few dozen MiB
 * moved keeps the peak near the live data, at a cost of a few milliseconds each time.
 *
 * @module
 */

import v8 from "node:v8";
import vm from "node:vm";

/** Bytes of chunk garbage after which a collection runs. */
const THRESHOLD = 32 * 1024 * 1024;

/** The runtime's way to collect garbage now, or nothing where there is none. */
function findCollector(): () => void {
  const bun = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun;
  if (bun?.gc) return () => bun.gc(false);
  try {
    // Deno (and Node) expose V8's collector to new contexts once the flag is set.
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc");
    if (typeof gc === "function") return () => gc({ type: "major", execution: "async" });
  } catch {
    // No collector: memory is then bounded by the runtime's own heuristics.
  }
  return () => {};
}

const collect = findCollector();
let pending = 0;

/**
 * Notes that `bytes` of buffers became garbage; collects once enough has piled up.
 *
 * @example
 * ```ts
 * import { noteGarbage } from "./gc.ts";
 * noteGarbage(1024 * 1024); // after passing on a 1 MiB chunk
 * ```
 */
export function noteGarbage(bytes: number): void {
  pending += bytes;
  if (pending < THRESHOLD) return;
  pending = 0;
  collect();
}
