/**
 * Layer compression as a Web `TransformStream`, on `node:zlib` (gzip and zstd).
 *
 * @module
 */

import zlib from "node:zlib";
import { ImagesError } from "../errors.ts";
import { defaultLevel, type LayerCompression } from "./engines.ts";

/** Options of {@linkcode compressStream}. */
export interface CompressOptions {
  /** gzip: 1–9 (default 2); zstd: 1–19 (default 3). */
  level?: number;
}

/**
 * A stream that compresses what flows through it. Output is deterministic for the same
 * input, format and level, which lets a resumed push recompute what it already sent.
 *
 * @example
 * ```ts
 * import { compressStream } from "./compress.ts";
 * const gz = new Blob(["hello"]).stream().pipeThrough(compressStream("gzip"));
 * console.log((await new Response(gz).arrayBuffer()).byteLength > 0);
 * ```
 */
export function compressStream(
  format: LayerCompression,
  options: CompressOptions = {},
): TransformStream<Uint8Array, Uint8Array> {
  const level = options.level ?? defaultLevel(format);
  return zlibTransform(
    format === "gzip" ? zlib.createGzip({ level }) : zlib.createZstdCompress({
      params: { [zlib.constants.ZSTD_c_compressionLevel]: level },
    }),
  );
}

/**
 * A stream that decompresses gzip or zstd.
 *
 * @example
 * ```ts
 * import { compressStream, decompressStream } from "./compress.ts";
 * const round = new Blob(["hi"]).stream()
 *   .pipeThrough(compressStream("zstd"))
 *   .pipeThrough(decompressStream("zstd"));
 * console.log(await new Response(round).text()); // "hi"
 * ```
 */
export function decompressStream(
  format: LayerCompression,
): TransformStream<Uint8Array, Uint8Array> {
  return zlibTransform(format === "gzip" ? zlib.createGunzip() : zlib.createZstdDecompress());
}

/** Wraps a node zlib stream as a Web TransformStream that respects back-pressure. */
function zlibTransform(engine: zlib.Gzip | zlib.Gunzip | zlib.ZstdCompress | zlib.ZstdDecompress) {
  let failure: Error | undefined;
  return new TransformStream<Uint8Array, Uint8Array>({
    start(controller) {
      engine.on("data", (chunk: Uint8Array) => {
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      });
      engine.on("error", (e: Error) => {
        failure = new ImagesError(`compression failed: ${e.message}`, "COMPRESSION_FAILED");
      });
    },
    transform(chunk) {
      return new Promise<void>((resolve, reject) => {
        engine.write(chunk, (e) => (e ?? failure) ? reject(failure ?? e) : resolve());
      });
    },
    flush() {
      return new Promise<void>((resolve, reject) => {
        if (failure) return reject(failure);
        engine.once("end", () => failure ? reject(failure) : resolve());
        engine.once("error", () => reject(failure));
        engine.end();
      });
    },
    cancel() {
      engine.destroy();
    },
  });
}
