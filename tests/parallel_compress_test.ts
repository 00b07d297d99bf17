import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  BLOCK_SIZE,
  CompressorPool,
  parallelCompressStream,
} from "../lib/copy/parallel_compress.ts";
import { decompressStream } from "../lib/copy/compress.ts";
import { sha256Digest } from "../lib/oci/digest.ts";
import { detectCompression } from "../lib/oci/media_types.ts";
import { readAll, streamOf } from "../lib/streams.ts";

/** Input cut into uneven chunks, so block boundaries never line up with chunks. */
function chunked(data: Uint8Array, chunk: number): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= data.byteLength) return controller.close();
      controller.enqueue(data.slice(at, at + chunk));
      at += chunk;
    },
  });
}

describe("parallel compression", () => {
  const pool = new CompressorPool(2);
  pool.acquire();
  after(() => pool.release());
  const data = new Uint8Array(3 * BLOCK_SIZE + 12345).map((_, i) => (i * 7919) % 251 ^ (i >> 12));

  for (const format of ["gzip", "zstd"] as const) {
    it(`${format}: members decompress to the input, the same bytes whatever the chunking`, async () => {
      const a = await readAll(
        chunked(data, 100_003).pipeThrough(parallelCompressStream(pool, format, 3)),
        1e8,
        "a",
      );
      const b = await readAll(
        chunked(data, 1 << 20).pipeThrough(parallelCompressStream(pool, format, 3)),
        1e8,
        "b",
      );
      assert.equal(sha256Digest(a), sha256Digest(b));
      assert.equal(detectCompression(a), format);
      const back = await readAll(streamOf(a).pipeThrough(decompressStream(format)), 1e8, "c");
      assert.equal(sha256Digest(back), sha256Digest(data));
    });
  }

  it("compresses an empty layer into one valid empty member", async () => {
    const gz = await readAll(
      streamOf(new Uint8Array(0)).pipeThrough(parallelCompressStream(pool, "gzip")),
      1e6,
      "e",
    );
    assert.ok(gz.byteLength > 0);
    const back = await readAll(streamOf(gz).pipeThrough(decompressStream("gzip")), 1e6, "f");
    assert.equal(back.byteLength, 0);
  });

  it("keeps several streams apart on one pool", async () => {
    const inputs = [1, 2, 3].map((n) => data.subarray(0, n * 700_000));
    const outputs = await Promise.all(
      inputs.map((input) =>
        readAll(streamOf(input).pipeThrough(parallelCompressStream(pool, "gzip", 1)), 1e8, "g")
      ),
    );
    for (const [i, out] of outputs.entries()) {
      const back = await readAll(streamOf(out).pipeThrough(decompressStream("gzip")), 1e8, "h");
      assert.equal(sha256Digest(back), sha256Digest(inputs[i]));
    }
  });
});
