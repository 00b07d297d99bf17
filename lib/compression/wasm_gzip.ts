/**
 * gzip on libdeflate built as WebAssembly (./libdeflate_wasm.ts, made by
 * tools/libdeflate_wasm/build.sh): needs no permission and no system library, runs the same
 * on Deno and Bun and makes the same bytes on every machine. Its build tunes level 1 for
 * WebAssembly (64-bit words, one hash probe per position): on the benchmark's layers, in
 * 512 KiB blocks on one core, it makes 220–250 MiB/s on Deno and 260–275 on Bun at ratio
 * 0.409, about what native libdeflate's level 1 makes (0.407), where zlib level 2 makes
 * 130–180 MiB/s at 0.418 (bench/README.md); and unlike `node:zlib` it allocates nothing
 * per block, so a worker running it stays small.
 *
 * The module is compiled once per process ({@linkcode libdeflateWasmModule}) and handed to
 * the compression workers, which share its compiled code. {@linkcode openWasmGzip} is
 * self-contained (no imports, no outer names): the compression worker embeds its source
 * text, as it cannot import modules by path.
 *
 * @module
 */

/** gzip compression on one WebAssembly instance (one thread). */
export interface WasmGzip {
  /**
   * Compresses `block` at `level` (libdeflate's scale, 1–12) into one complete gzip member
   * and returns a view of it in the instance's memory, valid until the next call: the
   * caller copies it where it wants it, so nothing is allocated here. The block is left
   * as it was. `crc`: the block's CRC-32 when the caller has it (`zlib.crc32` computes it
   * 5–7 times faster than this module, whose own CRC took 7–11 % of a member's time); the
   * bytes are the same either way. A block takes at most 1 GiB (blocks are 512 KiB).
   */
  compress(block: Uint8Array, level: number, crc?: number): Uint8Array;
}

let compiling: Promise<WebAssembly.Module> | undefined;

/**
 * libdeflate's WebAssembly module (./libdeflate_wasm.ts), imported and compiled on first
 * use: a command that does not compress with it never loads its 86 KB of base64. (Loaded
 * with the command line, it kept a stalled `pull` into a layout from answering Ctrl-C on
 * Deno, every time, for a reason not found: tests/faults/abort_test.ts.) A
 * `WebAssembly.Module` can be posted to a worker, which then instantiates it without
 * compiling it again.
 *
 * @example
 * ```ts
 * import { libdeflateWasmModule } from "./wasm_gzip.ts";
 * console.log(WebAssembly.Module.exports(await libdeflateWasmModule()).length > 0);
 * ```
 */
export function libdeflateWasmModule(): Promise<WebAssembly.Module> {
  compiling ??= import("./libdeflate_wasm.ts").then(({ LIBDEFLATE_WASM }) => {
    // deno-lint-ignore no-explicit-any
    const fromBase64 = (Uint8Array as any).fromBase64 as
      | ((text: string) => Uint8Array<ArrayBuffer>)
      | undefined;
    const bytes = fromBase64
      ? fromBase64(LIBDEFLATE_WASM)
      : Uint8Array.from(atob(LIBDEFLATE_WASM), (char) => char.charCodeAt(0));
    return new WebAssembly.Module(bytes);
  });
  return compiling;
}

/**
 * Instantiates libdeflate's module (from {@linkcode libdeflateWasmModule}). Each instance
 * keeps one compressor per level used and one input and one output buffer, grown to the
 * largest block seen; nothing else is allocated per block.
 *
 * @example
 * ```ts
 * import { libdeflateWasmModule, openWasmGzip } from "./wasm_gzip.ts";
 * const gzip = openWasmGzip(await libdeflateWasmModule());
 * console.log(gzip.compress(new Uint8Array(4096), 1).byteLength < 100);
 * ```
 */
export function openWasmGzip(module: WebAssembly.Module): WasmGzip {
  const instance = new WebAssembly.Instance(module, {});
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
    compress(block, level, crc) {
      let compressor = compressors.get(level);
      if (compressor === undefined) {
        compressor = wasm.libdeflate_alloc_compressor(level) >>> 0;
        if (compressor === 0) throw new Error(`libdeflate has no compression level ${level}`);
        compressors.set(level, compressor);
      }
      input = buffer(input, block.byteLength);
      output = buffer(output, wasm.libdeflate_gzip_compress_bound(compressor, block.byteLength));
      new Uint8Array(memory.buffer, input.at, block.byteLength).set(block);
      const sum = crc ?? wasm.libdeflate_crc32(0, input.at, block.byteLength);
      const written = wasm.wasm_gzip_member(
        compressor,
        level,
        input.at,
        block.byteLength,
        output.at,
        output.size,
        sum,
      ) >>> 0;
      // 0: a block over the 1 GiB the build takes at once, or an output bound too small.
      if (written === 0) throw new Error(`libdeflate could not compress ${block.byteLength} bytes`);
      return new Uint8Array(memory.buffer, output.at, written);
    },
  };
}
