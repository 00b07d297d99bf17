/**
 * gzip on the system's libdeflate, when there is one and the runtime may load it
 * (Deno: `--allow-ffi`; Bun: always). On the benchmark's layers, in 512 KiB blocks on
 * one core, libdeflate level 1 makes 253 MiB/s at ratio 0.407, where zlib level 2 (our
 * default without it) makes 180 MiB/s at 0.418 and zlib level 6 91 MiB/s at 0.404
 * (bench/README.md). Compression is most of a push's CPU, so this is most of its speed.
 *
 * It writes into memory the caller gives, reused from block to block. Without the
 * library, or without FFI permission, pushes compress with zlib.
 *
 * {@linkcode openLibdeflate} uses no outer name but {@linkcode openFirstLibrary}: the
 * compression worker embeds the source text of both, as it cannot import modules by path.
 *
 * @module
 */

import { openFirstLibrary } from "./ffi.ts";
import type { NativeGzip } from "./native_gzip.ts";

/** Where the library is looked for, in order, by the system's loader search. */
export const LIBDEFLATE_NAMES: readonly string[] = [
  "libdeflate.so.0",
  "libdeflate.so",
  "libdeflate.0.dylib",
  "libdeflate.dylib",
  "libdeflate.dll",
];

/**
 * Loads the first of `names` that opens; resolves `undefined` when none does, when the
 * runtime has no FFI, or when Deno lacks the FFI permission (asked, never prompted).
 *
 * @example
 * ```ts
 * import { LIBDEFLATE_NAMES, openLibdeflate } from "./libdeflate.ts";
 * const gzip = await openLibdeflate(LIBDEFLATE_NAMES);
 * if (gzip) {
 *   const input = new Uint8Array(1000);
 *   const output = new Uint8Array(gzip.bound(input.length));
 *   console.log(gzip.compress(input, 1, output) > 0);
 *   gzip.close();
 * }
 * ```
 */
export async function openLibdeflate(
  names: readonly string[],
): Promise<NativeGzip | undefined> {
  const opened = await openFirstLibrary(names, {
    bun: {
      libdeflate_alloc_compressor: { args: ["i32"], returns: "ptr" },
      libdeflate_free_compressor: { args: ["ptr"], returns: "void" },
      libdeflate_gzip_compress: {
        args: ["ptr", "ptr", "usize", "ptr", "usize"],
        returns: "usize",
      },
      libdeflate_gzip_compress_bound: { args: ["ptr", "usize"], returns: "usize" },
    },
    deno: {
      libdeflate_alloc_compressor: { parameters: ["i32"], result: "pointer" },
      libdeflate_free_compressor: { parameters: ["pointer"], result: "void" },
      libdeflate_gzip_compress: {
        parameters: ["pointer", "buffer", "usize", "buffer", "usize"],
        result: "usize",
      },
      libdeflate_gzip_compress_bound: { parameters: ["pointer", "usize"], result: "usize" },
      // The same call on a thread of Deno's pool: a promise, and this thread runs on.
      libdeflate_gzip_compress_nonblocking: {
        name: "libdeflate_gzip_compress",
        parameters: ["pointer", "buffer", "usize", "buffer", "usize"],
        result: "usize",
        nonblocking: true,
      },
    },
  });
  if (!opened) return undefined;
  const { library, bunFfi } = opened;
  const lib = library.symbols;
  // Compressors (each holds its match-finder tables) are not shared by calls in
  // progress: one per call, kept per level for the next.
  const idle = new Map<number, unknown[]>();
  const all: unknown[] = [];
  const take = (level: number) => {
    const reused = idle.get(level)?.pop();
    if (reused) return reused;
    const made = lib.libdeflate_alloc_compressor(level);
    if (!made) throw new Error(`libdeflate has no compression level ${level}`);
    all.push(made);
    return made;
  };
  const give = (level: number, made: unknown) => {
    if (!idle.has(level)) idle.set(level, []);
    idle.get(level)!.push(made);
  };
  // Bun passes sizes as numbers; Deno wants BigInt for usize parameters.
  const size = bunFfi ? (n: number) => n : (n: number) => BigInt(n);
  const spare = new Uint8Array(1);
  // Bun cannot point at empty memory: an empty input points at a spare byte.
  const args = (made: unknown, input: Uint8Array, output: Uint8Array) =>
    [
      made,
      input.byteLength > 0 ? input : spare,
      size(input.byteLength),
      output,
      size(output.byteLength),
    ] as const;
  const gzip: NativeGzip = {
    name: "libdeflate",
    compress(input, level, output) {
      const made = take(level);
      try {
        return Number(lib.libdeflate_gzip_compress(...args(made, input, output)));
      } finally {
        give(level, made);
      }
    },
    bound(length) {
      // The bound is the same for every level: any compressor will do.
      const made = take(1);
      try {
        return Number(lib.libdeflate_gzip_compress_bound(made, size(length)));
      } finally {
        give(1, made);
      }
    },
    close() {
      for (const made of all) lib.libdeflate_free_compressor(made);
      all.length = 0;
      idle.clear();
      library.close();
    },
  };
  if (!bunFfi) {
    gzip.compressAsync = async (input, level, output) => {
      const made = take(level);
      try {
        return Number(
          await lib.libdeflate_gzip_compress_nonblocking(...args(made, input, output)),
        );
      } finally {
        give(level, made);
      }
    };
  }
  return gzip;
}
