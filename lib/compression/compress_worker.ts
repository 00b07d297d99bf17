/**
 * The code of a compression worker, kept as source text: the pool starts workers from
 * a Blob URL of it, so they need no file-read permission and start the same way when
 * the library is imported from a file, from JSR or from a URL.
 *
 * A worker compresses one block into a complete gzip member or zstd frame and transfers
 * the bytes back: gzip on the engine the message names, a native library (ISA-L or
 * libdeflate, whose loaders it embeds: ./ffi.ts with ./ffi_deno.ts and ./ffi_bun.ts,
 * ./isal.ts, ./libdeflate.ts), libdeflate as WebAssembly (./wasm_gzip.ts; the first such
 * job brings the compiled module), else on zlib. `node:zlib` is imported only when zlib is
 * used: a worker running WebAssembly is then 4.6 MiB smaller on Deno.
 *
 * @module
 */

import { openFirstLibrary } from "./ffi.ts";
import { openBunLibrary } from "./ffi_bun.ts";
import { openDenoLibrary } from "./ffi_deno.ts";
import { ISAL_NAMES, openIsal } from "./isal.ts";
import { LIBDEFLATE_NAMES, openLibdeflate } from "./libdeflate.ts";
import { gzipMember } from "./native_gzip.ts";
import { openWasmGzip } from "./wasm_gzip.ts";

/** JavaScript source of the worker (an ES module). */
export function compressWorkerSource(): string {
  return `
// Collect the garbage of zlib's blocks every few dozen MiB (see lib/gc.ts for why); set
// up with zlib, which alone makes garbage worth collecting here.
let collect = () => {};
async function startCollector() {
  if (globalThis.Bun?.gc) return () => globalThis.Bun.gc(true);
  try {
    const v8 = (await import("node:v8")).default;
    const vm = (await import("node:vm")).default;
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc");
    if (typeof gc === "function") return gc;
  } catch {
    // no collector: the runtime's own heuristics apply
  }
  return () => {};
}
let garbage = 0;
let zlib; // node:zlib, imported on first use

const openBunLibrary = ${openBunLibrary.toString()};
const openDenoLibrary = ${openDenoLibrary.toString()};
const openFirstLibrary = ${openFirstLibrary.toString()};
const openers = {
  isal: () => (${openIsal.toString()})(${JSON.stringify(ISAL_NAMES)}),
  libdeflate: () => (${openLibdeflate.toString()})(${JSON.stringify(LIBDEFLATE_NAMES)}),
};
const gzipMember = ${gzipMember.toString()};
const natives = new Map(); // engine name -> promise of the library, opened on first use
const scratch = {};
const openWasmGzip = ${openWasmGzip.toString()};
let wasm; // libdeflate as WebAssembly, instantiated on first use

self.onmessage = async (event) => {
  const { id, data, format, level, engine, wasmModule, crc } = event.data;
  try {
    if (engine === "libdeflate-wasm") {
      if (wasmModule) wasm ??= openWasmGzip(wasmModule);
      const member = wasm.compress(data, level, crc);
      // The member goes back in the block's own memory (its input is spent), so this
      // thread allocates nothing: memory a worker allocates and the calling thread frees
      // stays in this thread's malloc arena (zlib's workers grew to 60 MiB so).
      if (member.byteLength <= data.byteLength) {
        data.set(member);
        self.postMessage({ id, block: data, length: member.byteLength }, [data.buffer]);
      } else {
        const bytes = member.slice();
        self.postMessage({ id, bytes, block: data }, [bytes.buffer, data.buffer]);
      }
      return;
    }
    if (engine !== "zlib") {
      if (!natives.has(engine)) natives.set(engine, openers[engine]());
      const gzip = await natives.get(engine);
      // The calling thread loaded it: zlib here instead would make other bytes.
      if (!gzip) throw new Error(engine + " did not load in the compression worker");
      const bytes = gzipMember(gzip, data, level, scratch);
      self.postMessage({ id, bytes, block: data }, [bytes.buffer, data.buffer]);
      return;
    }
    if (!zlib) {
      zlib = (await import("node:zlib")).default;
      collect = await startCollector();
    }
    const out = format === "gzip"
      ? zlib.gzipSync(data, { level })
      : zlib.zstdCompressSync(data, {
        params: { [zlib.constants.ZSTD_c_compressionLevel]: level },
      });
    // Transfer the output as it is when it owns its memory, else a copy of it; the
    // input block goes back too, so the pool reuses it instead of allocating another.
    let bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    if (out.byteOffset !== 0 || out.byteLength !== out.buffer.byteLength) bytes = bytes.slice();
    self.postMessage({ id, bytes, block: data }, [bytes.buffer, data.buffer]);
    garbage += out.byteLength;
    if (garbage > 32 * 1024 * 1024) {
      garbage = 0;
      collect();
    }
  } catch (error) {
    self.postMessage({ id, error: String(error?.message ?? error) });
  }
};
`;
}
