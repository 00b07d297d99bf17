/**
 * gzip on libdeflate built as WebAssembly (./libdeflate_wasm.ts, made by
 * tools/libdeflate_wasm/build.sh): needs no permission and no system library, runs the same
 * on Deno and Bun and makes the same bytes on every machine. On the benchmark's layers, in
 * 512 KiB blocks on one core, its level 1 makes about 150 MiB/s at ratio 0.407, where zlib
 * level 2 makes 130–180 MiB/s at 0.418 (bench/README.md); and unlike `node:zlib` it
 * allocates nothing per block, so a worker running it stays small.
 *
 * {@linkcode openWasmGzip} is self-contained (no imports, no outer names): the compression
 * worker embeds its source text, as it cannot import modules by path.
 *
 * @module
 */

/** gzip compression on one WebAssembly instance (one thread). */
export interface WasmGzip {
  /**
   * Compresses `block` at `level` (libdeflate's scale, 1–12) into one complete gzip member,
   * in memory of its own size; the block is left as it was.
   */
  member(block: Uint8Array, level: number): Uint8Array;
}

/**
 * Instantiates the module given as base64 (synchronously: it is small). Each instance
 * keeps one compressor per level used and one input and one output buffer, grown to the
 * largest block seen; nothing else is allocated per block.
 *
 * @example
 * ```ts
 * import { openWasmGzip } from "./wasm_gzip.ts";
 * import { LIBDEFLATE_WASM } from "./libdeflate_wasm.ts";
 * const gzip = openWasmGzip(LIBDEFLATE_WASM);
 * console.log(gzip.member(new Uint8Array(4096), 1).byteLength < 100);
 * ```
 */
export function openWasmGzip(base64: string): WasmGzip {
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {});
  // deno-lint-ignore no-explicit-any
  const wasm = instance.exports as any;
  const memory = wasm.memory as WebAssembly.Memory;
  wasm.wasm_init();
  const compressors = new Map<number, number>();
  let input = { at: 0, size: -1 };
  let output = { at: 0, size: -1 };
  // The allocator never frees (tools/libdeflate_wasm/glue.c): buffers only grow, doubling.
  const buffer = (have: { at: number; size: number }, need: number) => {
    if (have.size >= need) return have;
    const size = Math.max(need, 2 * have.size);
    const at = wasm.wasm_alloc(size) >>> 0;
    if (at === 0) throw new Error(`WebAssembly gzip could not allocate ${size} bytes`);
    return { at, size };
  };
  return {
    member(block, level) {
      let compressor = compressors.get(level);
      if (compressor === undefined) {
        compressor = wasm.libdeflate_alloc_compressor(level) >>> 0;
        if (compressor === 0) throw new Error(`libdeflate has no compression level ${level}`);
        compressors.set(level, compressor);
      }
      input = buffer(input, block.byteLength);
      output = buffer(output, wasm.libdeflate_gzip_compress_bound(compressor, block.byteLength));
      new Uint8Array(memory.buffer, input.at, block.byteLength).set(block);
      const written = wasm.libdeflate_gzip_compress(
        compressor,
        input.at,
        block.byteLength,
        output.at,
        output.size,
      ) >>> 0;
      if (written === 0) throw new Error("libdeflate found its output bound too small");
      return new Uint8Array(memory.buffer, output.at, written).slice();
    },
  };
}
