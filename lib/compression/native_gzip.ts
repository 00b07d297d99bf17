/**
 * gzip on a native library loaded through FFI, when the system has one and the runtime
 * may load it (Deno: `--allow-ffi`; Bun: always): Intel's ISA-L (./isal.ts) or libdeflate
 * (./libdeflate.ts). Both write into memory the caller gives, reused from block to block;
 * each member is then copied into memory of its own size ({@linkcode gzipMember}).
 *
 * @module
 */

/** gzip compression into caller memory, on a native library. */
export interface NativeGzip {
  /** Which library: `libdeflate` or `isal`. */
  readonly name: string;
  /**
   * Compresses `input` at `level` (the library's own scale) into `output` as one complete gzip member.
   * Returns the bytes written, or 0 when `output` was too small.
   */
  compress(input: Uint8Array, level: number, output: Uint8Array): number;
  /**
   * The same on a thread of the runtime's own pool, where the runtime can call natives
   * that way (Deno's nonblocking FFI; absent on Bun). Calls in progress at once each get
   * a compressor of their own; the buffers must not be touched until it settles.
   */
  compressAsync?(input: Uint8Array, level: number, output: Uint8Array): Promise<number>;
  /** The most bytes a gzip member of `length` input bytes can take. */
  bound(length: number): number;
  /** Frees the compressors and unloads the library. */
  close(): void;
}

/** Output memory reused across blocks by {@linkcode gzipMember}. */
export interface GzipScratch {
  bytes?: Uint8Array;
}

/**
 * Compresses a block into one gzip member with `gzip`. The member gets memory of its own
 * size (about 0.4 of the block, so garbage stays small) and the block is left as it was,
 * free for reuse. `scratch` keeps the output memory between calls.
 *
 * Self-contained (no imports, no outer names): the compression worker embeds it.
 *
 * @example
 * ```ts
 * import { gzipMember } from "./native_gzip.ts";
 * import { LIBDEFLATE_NAMES, openLibdeflate } from "./libdeflate.ts";
 * const gzip = await openLibdeflate(LIBDEFLATE_NAMES);
 * if (gzip) {
 *   const member = gzipMember(gzip, new Uint8Array(4096), 1, {});
 *   console.log(member.byteLength < 4096);
 *   gzip.close();
 * }
 * ```
 */
export function gzipMember(
  gzip: NativeGzip,
  block: Uint8Array,
  level: number,
  scratch: GzipScratch,
): Uint8Array {
  const need = gzip.bound(block.byteLength);
  if (!scratch.bytes || scratch.bytes.byteLength < need) scratch.bytes = new Uint8Array(need);
  const written = gzip.compress(block, level, scratch.bytes);
  if (written === 0) throw new Error(`${gzip.name} found its output bound too small`);
  return scratch.bytes.slice(0, written);
}

/**
 * {@linkcode gzipMember} on a thread of the runtime's pool, for a `gzip` that has
 * `compressAsync`. The block and `scratch` are the call's own until the promise settles.
 *
 * @example
 * ```ts
 * import { gzipMemberAsync } from "./native_gzip.ts";
 * import { LIBDEFLATE_NAMES, openLibdeflate } from "./libdeflate.ts";
 * const gzip = await openLibdeflate(LIBDEFLATE_NAMES);
 * if (gzip?.compressAsync) {
 *   const member = await gzipMemberAsync(gzip, new Uint8Array(4096), 1, {});
 *   console.log(member.byteLength < 4096);
 * }
 * gzip?.close();
 * ```
 */
export async function gzipMemberAsync(
  gzip: NativeGzip,
  block: Uint8Array,
  level: number,
  scratch: GzipScratch,
): Promise<Uint8Array> {
  const need = gzip.bound(block.byteLength);
  if (!scratch.bytes || scratch.bytes.byteLength < need) scratch.bytes = new Uint8Array(need);
  const written = await gzip.compressAsync!(block, level, scratch.bytes);
  if (written === 0) throw new Error(`${gzip.name} found its output bound too small`);
  return scratch.bytes.slice(0, written);
}
