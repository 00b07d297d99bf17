/**
 * gzip on Intel's ISA-L (`libisal.so.2`, Debian's `libisal2`), when the system has it and
 * the runtime may load it (Deno: `--allow-ffi`; Bun: always). On the benchmark's layers,
 * in 512 KiB blocks on one core, its level 3 makes 488 MiB/s at ratio 0.406: zlib level
 * 6's ratio at about twice libdeflate's level-1 speed and 2.7 times zlib level 2's
 * (bench/README.md).
 *
 * ISA-L takes its arguments in a `struct isal_zstream`, which this module fills in a
 * buffer of its own at the offsets of the library's ABI (soname 2; the compressor pool
 * compresses a sample with it before use).
 *
 * {@linkcode openIsal} uses no outer name but {@linkcode openFirstLibrary}: the compression
 * worker embeds the source text of both, as it cannot import modules by path.
 *
 * @module
 */

import { openFirstLibrary } from "./ffi.ts";
import type { NativeGzip } from "./native_gzip.ts";

/**
 * Where the library is looked for, in order, by the system's loader search: only names
 * of soname 2, whose struct layout this module writes (an unversioned link could lead to
 * another layout, and a crash inside the very call meant to check it).
 */
export const ISAL_NAMES: readonly string[] = ["libisal.so.2", "libisal.2.dylib"];

/**
 * Loads the first of `names` that opens; resolves `undefined` when none does, when the
 * runtime has no FFI, or when Deno lacks the FFI permission (asked, never prompted).
 * Levels are ISA-L's own: 0–3.
 *
 * @example
 * ```ts
 * import { ISAL_NAMES, openIsal } from "./isal.ts";
 * const gzip = await openIsal(ISAL_NAMES);
 * if (gzip) {
 *   const input = new Uint8Array(1000);
 *   const output = new Uint8Array(gzip.bound(input.length));
 *   console.log(gzip.compress(input, 3, output) > 0);
 *   gzip.close();
 * }
 * ```
 */
export async function openIsal(names: readonly string[]): Promise<NativeGzip | undefined> {
  const opened = await openFirstLibrary(names, {
    bun: {
      isal_deflate_stateless_init: { args: ["ptr"], returns: "void" },
      isal_deflate_stateless: { args: ["ptr"], returns: "i32" },
    },
    deno: {
      isal_deflate_stateless_init: { parameters: ["buffer"], result: "void" },
      isal_deflate_stateless: { parameters: ["buffer"], result: "i32" },
      // The same call on a thread of Deno's pool: a promise, and this thread runs on.
      isal_deflate_stateless_nonblocking: {
        name: "isal_deflate_stateless",
        parameters: ["buffer"],
        result: "i32",
        nonblocking: true,
      },
    },
  });
  if (!opened) return undefined;
  const { library, bunFfi, deno } = opened;
  // The address of a view's first byte, to store in the struct.
  const address = bunFfi
    ? (bytes: Uint8Array) => BigInt(bunFfi.ptr(bytes))
    : (bytes: Uint8Array) => BigInt(deno.UnsafePointer.value(deno.UnsafePointer.of(bytes)));
  // struct isal_zstream (igzip_lib.h, soname 2): byte offsets of the fields we set.
  const STREAM_SIZE = 82384;
  const NEXT_IN = 0, AVAIL_IN = 8, NEXT_OUT = 16, AVAIL_OUT = 24, TOTAL_OUT = 28;
  const LEVEL = 40, LEVEL_BUF_SIZE = 44, LEVEL_BUF = 48;
  const END_OF_STREAM = 56, FLUSH = 58, GZIP_FLAG = 60;
  // ISAL_DEF_LVLn_DEFAULT: the working memory each level wants.
  const LEVEL_BUFFER_SIZES = [0, 282624, 331776, 348160];
  const COMP_OK = 0, STATELESS_OVERFLOW = -1;
  const lib = library.symbols;
  const spare = new Uint8Array(1);
  // A stream struct with its level's working memory: one per call in progress.
  type Context = { stream: Uint8Array; fields: DataView; work: Uint8Array };
  const idle = new Map<number, Context[]>();
  const take = (level: number): Context => {
    if (!(level >= 0 && level < LEVEL_BUFFER_SIZES.length)) {
      throw new Error(`ISA-L has no compression level ${level} (0–3)`);
    }
    const reused = idle.get(level)?.pop();
    if (reused) return reused;
    // Room to spare past the struct, in case a build of soname 2 grew its private tail.
    const stream = new Uint8Array(STREAM_SIZE + 16384);
    const work = new Uint8Array(LEVEL_BUFFER_SIZES[level] || 1);
    return { stream, fields: new DataView(stream.buffer), work };
  };
  const give = (level: number, context: Context) => {
    if (!idle.has(level)) idle.set(level, []);
    idle.get(level)!.push(context);
  };
  const prepare = (context: Context, input: Uint8Array, level: number, output: Uint8Array) => {
    const { stream, fields, work } = context;
    lib.isal_deflate_stateless_init(stream);
    // Bun cannot point at empty memory: an empty input points at a spare byte.
    fields.setBigUint64(NEXT_IN, address(input.byteLength > 0 ? input : spare), true);
    fields.setUint32(AVAIL_IN, input.byteLength, true);
    fields.setBigUint64(NEXT_OUT, address(output), true);
    fields.setUint32(AVAIL_OUT, output.byteLength, true);
    fields.setUint32(LEVEL, level, true);
    fields.setUint32(LEVEL_BUF_SIZE, LEVEL_BUFFER_SIZES[level], true);
    fields.setBigUint64(LEVEL_BUF, LEVEL_BUFFER_SIZES[level] ? address(work) : 0n, true);
    fields.setUint16(END_OF_STREAM, 1, true);
    fields.setUint16(FLUSH, 0, true); // NO_FLUSH
    fields.setUint16(GZIP_FLAG, 1, true); // IGZIP_GZIP: header and trailer
  };
  const written = (context: Context, result: number) => {
    if (result === STATELESS_OVERFLOW) return 0;
    if (result !== COMP_OK) throw new Error(`ISA-L compression failed (code ${result})`);
    return context.fields.getUint32(TOTAL_OUT, true);
  };
  const gzip: NativeGzip = {
    name: "isal",
    compress(input, level, output) {
      const context = take(level);
      try {
        prepare(context, input, level, output);
        return written(context, lib.isal_deflate_stateless(context.stream));
      } finally {
        give(level, context);
      }
    },
    bound(length) {
      // Stored blocks at worst (5 bytes per 64 KiB), the gzip header and trailer, slack.
      return length + 5 * Math.ceil(length / 65535) + 1024;
    },
    close() {
      idle.clear();
      library.close();
    },
  };
  if (!bunFfi) {
    gzip.compressAsync = async (input, level, output) => {
      const context = take(level);
      try {
        prepare(context, input, level, output);
        return written(context, await lib.isal_deflate_stateless_nonblocking(context.stream));
      } finally {
        give(level, context);
      }
    };
  }
  return gzip;
}
