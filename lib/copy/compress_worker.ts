/**
 * Worker side of {@linkcode ../copy/parallel_compress.ts}: compresses one block into a
 * complete gzip member or zstd frame and sends it back.
 *
 * @module
 */

import zlib from "node:zlib";

/** A block to compress. */
interface Job {
  id: number;
  data: Uint8Array;
  format: "gzip" | "zstd";
  level: number;
}

const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<Job>) => void) | null;
  postMessage(message: unknown, transfer: Transferable[]): void;
};

scope.onmessage = (event) => {
  const { id, data, format, level } = event.data;
  try {
    const out = format === "gzip" ? zlib.gzipSync(data, { level }) : zlib.zstdCompressSync(data, {
      params: { [zlib.constants.ZSTD_c_compressionLevel]: level },
    });
    // Copy out of the Buffer pool so the bytes can be transferred, not cloned.
    const bytes = new Uint8Array(out.byteLength);
    bytes.set(out);
    scope.postMessage({ id, bytes }, [bytes.buffer]);
  } catch (error) {
    scope.postMessage({ id, error: String((error as Error)?.message ?? error) }, []);
  }
};
