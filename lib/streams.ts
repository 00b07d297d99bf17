/**
 * Small helpers for Web streams of bytes.
 *
 * @module
 */

import { ImagesError } from "./errors.ts";

/**
 * A stream that yields `bytes` as one chunk.
 *
 * @example
 * ```ts
 * import { streamOf } from "./streams.ts";
 * const s = streamOf(new Uint8Array([1, 2, 3]));
 * ```
 */
export function streamOf(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (bytes.byteLength > 0) controller.enqueue(bytes);
      controller.close();
    },
  });
}

/**
 * Reads a whole (small) stream into memory, refusing more than `limit` bytes.
 *
 * @example
 * ```ts
 * import { readAll, streamOf } from "./streams.ts";
 * const bytes = await readAll(streamOf(new Uint8Array([1])), 10, "example");
 * ```
 */
export async function readAll(
  stream: ReadableStream<Uint8Array>,
  limit: number,
  what: string,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = stream.getReader();
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        await reader.cancel().catch(() => {});
        throw new ImagesError(`${what}: larger than the ${limit}-byte limit`, "MANIFEST_TOO_LARGE");
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  return concatBytes(chunks);
}

/**
 * The bytes of `parts` one after the other, in a new array.
 *
 * @example
 * ```ts
 * import { concatBytes } from "./streams.ts";
 * concatBytes([new Uint8Array([1]), new Uint8Array([2, 3])]); // Uint8Array [1, 2, 3]
 * ```
 */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.byteLength, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}

/**
 * A stream without its first `count` bytes (used to resume from an offset by
 * recomputing, not resending, what came before).
 *
 * @example
 * ```ts
 * import { readAll, skipBytes, streamOf } from "./streams.ts";
 * const rest = await readAll(skipBytes(streamOf(new Uint8Array([1, 2, 3])), 2), 10, "x");
 * console.log(rest); // Uint8Array [3]
 * ```
 */
export function skipBytes(
  stream: ReadableStream<Uint8Array>,
  count: number,
): ReadableStream<Uint8Array> {
  if (count === 0) return stream;
  let left = count;
  return stream.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        if (left >= chunk.byteLength) {
          left -= chunk.byteLength;
          return;
        }
        controller.enqueue(left > 0 ? chunk.subarray(left) : chunk);
        left = 0;
      },
      flush() {
        if (left > 0) {
          throw new ImagesError(
            `stream ended ${left} bytes before the resume offset ${count}`,
            "SIZE_INVALID",
          );
        }
      },
    }),
  );
}
