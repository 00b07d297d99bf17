/**
 * What compresses layers: the two formats, the gzip engines, and the one table of the
 * default level of each.
 *
 * @module
 */

/** Compression applied to uncompressed layers on push. */
export type LayerCompression = "gzip" | "zstd";

/**
 * What compresses gzip blocks: a native library, libdeflate built as WebAssembly
 * (./wasm_gzip.ts), or zlib (`node:zlib`).
 */
export type GzipEngine = "isal" | "libdeflate" | "libdeflate-wasm" | "zlib";

/**
 * An engine, or `auto`: the fastest that loads and proves sound (ISA-L, libdeflate,
 * libdeflate as WebAssembly, zlib).
 */
export type GzipEngineChoice = "auto" | GzipEngine;

/** Every {@linkcode GzipEngineChoice}, for validating input. */
export const GZIP_ENGINE_CHOICES: readonly string[] = [
  "auto",
  "isal",
  "libdeflate",
  "libdeflate-wasm",
  "zlib",
];

/** The engines loaded through FFI. */
export type NativeEngine = "isal" | "libdeflate";

/** Whether `engine` is a native library loaded through FFI. */
export function isNativeEngine(engine: GzipEngine): engine is NativeEngine {
  return engine === "isal" || engine === "libdeflate";
}

/**
 * The default level of gzip on each engine, and of zstd (always on `node:zlib`), chosen by
 * measurement on the benchmark's software-like layers in 1 MiB blocks, one core
 * (bench/README.md): ISA-L level 3 makes 527 MiB/s at ratio 0.402, libdeflate level 1
 * 273 MiB/s at 0.403, zlib level 2 179 MiB/s at 0.414 (zlib level 6: 85 MiB/s at 0.402,
 * about half as fast for 3.5% fewer bytes; level 1: 13.5% more bytes). libdeflate as
 * WebAssembly (our build, ./wasm_gzip.ts) at level 1 makes about 220–250 MiB/s at 0.409 in
 * 512 KiB blocks; its level 2 only 125. Compression is what a push waits for;
 * `--compression-level 6` gives `docker push`'s ratio.
 */
export const DEFAULT_LEVEL: Readonly<Record<GzipEngine | "zstd", number>> = {
  isal: 3,
  libdeflate: 1,
  "libdeflate-wasm": 1,
  zlib: 2,
  zstd: 3,
};

/**
 * The default level of `format` on `engine` (zstd always runs on `node:zlib`).
 *
 * @example
 * ```ts
 * import { defaultLevel } from "./engines.ts";
 * console.log(defaultLevel("gzip"), defaultLevel("gzip", "isal"), defaultLevel("zstd")); // 2 3 3
 * ```
 */
export function defaultLevel(format: LayerCompression, engine: GzipEngine = "zlib"): number {
  return DEFAULT_LEVEL[format === "zstd" ? "zstd" : engine];
}
