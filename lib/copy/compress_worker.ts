/**
 * The code of a compression worker, kept as source text: the pool starts workers from
 * a Blob URL of it, so they need no file-read permission and start the same way when
 * the library is imported from a file, from JSR or from a URL.
 *
 * A worker compresses one block into a complete gzip member or zstd frame and transfers
 * the bytes back.
 *
 * @module
 */

/** JavaScript source of the worker (an ES module). */
export const COMPRESS_WORKER_SOURCE = `
import zlib from "node:zlib";

self.onmessage = (event) => {
  const { id, data, format, level } = event.data;
  try {
    const out = format === "gzip"
      ? zlib.gzipSync(data, { level })
      : zlib.zstdCompressSync(data, {
        params: { [zlib.constants.ZSTD_c_compressionLevel]: level },
      });
    // Copy out of the Buffer pool so the bytes can be transferred, not cloned.
    const bytes = new Uint8Array(out.byteLength);
    bytes.set(out);
    self.postMessage({ id, bytes }, [bytes.buffer]);
  } catch (error) {
    self.postMessage({ id, error: String(error?.message ?? error) });
  }
};
`;
