/**
 * gzip on the system's libdeflate, when there is one and the runtime may load it
 * (Deno: `--allow-ffi`; Bun: always). On the benchmark's layers, in 1 MiB blocks on one
 * core, libdeflate level 1 makes 273 MiB/s at ratio 0.403, where zlib level 2 (our
 * default without it) makes 179 MiB/s at 0.414 and zlib level 6 85 MiB/s at 0.402
 * (bench/README.md). Compression is most of a push's CPU, so this is most of its speed.
 *
 * It writes into memory the caller gives, so a compression worker allocates nothing per
 * block. Without the library, or without FFI permission, pushes compress with zlib.
 *
 * {@linkcode openLibdeflate} is self-contained (no imports, no outer names): the
 * compression worker embeds its source text, as it cannot import modules by path.
 *
 * @module
 */

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
  // deno-lint-ignore no-explicit-any
  const runtime = globalThis as any;
  // Bun's FFI module, imported by a computed name so Deno's checker leaves it alone.
  const bunFfi = runtime.Bun ? await import(["bun", "ffi"].join(":")) : undefined;
  const deno = runtime.Deno;
  if (!bunFfi) {
    if (typeof deno?.dlopen !== "function") return undefined;
    if (deno.permissions.querySync({ name: "ffi" }).state !== "granted") return undefined;
  }
  const open = (name: string) => {
    if (bunFfi) {
      return bunFfi.dlopen(name, {
        libdeflate_alloc_compressor: { args: ["i32"], returns: "ptr" },
        libdeflate_free_compressor: { args: ["ptr"], returns: "void" },
        libdeflate_gzip_compress: {
          args: ["ptr", "ptr", "usize", "ptr", "usize"],
          returns: "usize",
        },
        libdeflate_gzip_compress_bound: { args: ["ptr", "usize"], returns: "usize" },
      });
    }
    return deno.dlopen(name, {
      libdeflate_alloc_compressor: { parameters: ["i32"], result: "pointer" },
      libdeflate_free_compressor: { parameters: ["pointer"], result: "void" },
      libdeflate_gzip_compress: {
        parameters: ["pointer", "buffer", "usize", "buffer", "usize"],
        result: "usize",
      },
      libdeflate_gzip_compress_bound: { parameters: ["pointer", "usize"], result: "usize" },
    });
  };
  for (const name of names) {
    let library;
    try {
      library = open(name);
    } catch {
      continue; // not there: try the next name
    }
    const lib = library.symbols;
    // One compressor per level, made on first use (each holds its match-finder tables).
    const compressors = new Map<number, unknown>();
    const compressor = (level: number) => {
      let made = compressors.get(level);
      if (!made) {
        made = lib.libdeflate_alloc_compressor(level);
        if (!made) throw new Error(`libdeflate has no compression level ${level}`);
        compressors.set(level, made);
      }
      return made;
    };
    // Bun passes sizes as numbers; Deno wants BigInt for usize parameters.
    const size = bunFfi ? (n: number) => n : (n: number) => BigInt(n);
    const spare = new Uint8Array(1);
    return {
      name: "libdeflate",
      compress(input, level, output) {
        // Bun cannot point at empty memory: an empty input points at a spare byte.
        return Number(
          lib.libdeflate_gzip_compress(
            compressor(level),
            input.byteLength > 0 ? input : spare,
            size(input.byteLength),
            output,
            size(output.byteLength),
          ),
        );
      },
      bound(length) {
        return Number(lib.libdeflate_gzip_compress_bound(compressor(1), size(length)));
      },
      close() {
        for (const made of compressors.values()) lib.libdeflate_free_compressor(made);
        compressors.clear();
        library.close();
      },
    };
  }
  return undefined;
}
