import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  BLOCK_SIZE,
  CompressorPool,
  parallelCompressStream,
} from "../../lib/compression/parallel_compress.ts";
import { decompressStream } from "../../lib/compression/compress.ts";
import { sha256Digest } from "../../lib/oci/digest.ts";
import { detectCompression } from "../../lib/oci/media_types.ts";
import { readAll, streamOf } from "../../lib/streams.ts";
import { CHUNK_SIZE } from "../../lib/chunk_pool.ts";
import { rangeStream } from "../../lib/archive/file_io.ts";
import { open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import process from "node:process";
import { join } from "node:path";

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

/** Passes a stream on unchanged, keeping every chunk it carried in `seen`. */
function recorded(stream: ReadableStream<Uint8Array>, seen: Uint8Array[]) {
  return stream.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        seen.push(chunk);
        controller.enqueue(chunk);
      },
    }),
  );
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

  it("shares its lanes among the streams compressing at once, until they end or stop", async () => {
    const lanes = pool.size; // two workers and the calling thread
    assert.equal(pool.depth, lanes);
    const streams = [1, 2, 3].map(() => parallelCompressStream(pool, "gzip", 1));
    const outputs = streams.map((stream) => readAll(stream.readable, 1e6, "d"));
    const writers = streams.map((stream) => stream.writable.getWriter());
    // A stream counts from its first bytes (a part of a block: nothing is compressed yet).
    for (const writer of writers) await writer.write(data.slice(0, 100));
    assert.equal(pool.depth, 1);
    await writers[0].abort(new Error("stopped"));
    await assert.rejects(outputs[0], /stopped/);
    assert.equal(pool.depth, Math.ceil(lanes / 2));
    await Promise.all(writers.slice(1).map((writer) => writer.close()));
    for (const out of await Promise.all(outputs.slice(1))) {
      const back = await readAll(streamOf(out).pipeThrough(decompressStream("gzip")), 1e6, "b");
      assert.equal(sha256Digest(back), sha256Digest(data.slice(0, 100)));
    }
    assert.equal(pool.depth, lanes);
  });

  it("keeps at most its share of blocks in flight, and a failed block ends its count", async () => {
    const spied = new CompressorPool(2);
    spied.acquire();
    try {
      let inFlight = 0;
      let most = 0;
      let blocks = 0;
      const compress = spied.compress.bind(spied);
      spied.compress = (block, ...rest) => {
        blocks++;
        if (block[0] === 0xee) return Promise.reject(new Error("injected failure"));
        most = Math.max(most, ++inFlight);
        return compress(block, ...rest).finally(() => inFlight--);
      };
      const lanes = spied.size;
      const streams = [1, 2, 3].map(() => parallelCompressStream(spied, "gzip", 1));
      const outputs = streams.map((stream) => readAll(stream.readable, 1e8, "s"));
      const writers = streams.map((stream) => stream.writable.getWriter());
      for (const writer of writers) await writer.write(data.slice(0, 100));
      const block = data.slice(0, BLOCK_SIZE);
      await Promise.all(writers.map(async (writer) => {
        for (let i = 0; i < 8; i++) await writer.write(block);
        await writer.close();
      }));
      await Promise.all(outputs);
      assert.equal(blocks, 3 * 9);
      // Each stream: the block it just handed over and `depth` (one) more, never its own lanes' worth.
      assert.ok(most <= 3 * 2, `${most} blocks in flight at once`);
      assert.equal(spied.depth, lanes);

      const open = parallelCompressStream(spied, "gzip", 1);
      const failing = parallelCompressStream(spied, "gzip", 1);
      const openOut = readAll(open.readable, 1e8, "o");
      const failingOut = readAll(failing.readable, 1e8, "f");
      const openWriter = open.writable.getWriter();
      const failingWriter = failing.writable.getWriter();
      await openWriter.write(data.slice(0, 100));
      await failingWriter.write(new Uint8Array(BLOCK_SIZE).fill(0xee));
      await new Promise((resolve) => setTimeout(resolve, 0));
      assert.equal(spied.depth, lanes); // the failed stream no longer counts
      await assert.rejects(failingWriter.close(), /injected failure/);
      await assert.rejects(failingOut, /injected failure/);
      await openWriter.close();
      assert.ok((await openOut).byteLength > 0);
    } finally {
      spied.release();
    }
  });

  it("takes whole chunks read from a file as blocks, and leaves other chunks intact", async () => {
    const path = join(tmpdir(), `parallel-compress-${process.pid}-${Date.now()}.bin`);
    await writeFile(path, data);
    const handle = await open(path);
    try {
      const seen: Uint8Array[] = [];
      const fromFile = recorded(rangeStream(handle, 0, data.byteLength), seen);
      const viaFile = await readAll(
        fromFile.pipeThrough(parallelCompressStream(pool, "gzip", 2)),
        1e8,
        "file",
      );
      // Three whole 1 MiB chunks were taken over (emptied), the short last one was copied.
      assert.deepEqual(seen.map((c) => c.byteLength), [0, 0, 0, 12345]);
      const copies: Uint8Array[] = [];
      const fromCopies = recorded(chunked(data, CHUNK_SIZE), copies);
      const viaCopies = await readAll(
        fromCopies.pipeThrough(parallelCompressStream(pool, "gzip", 2)),
        1e8,
        "copies",
      );
      assert.deepEqual(copies.map((c) => c.byteLength), [
        CHUNK_SIZE,
        CHUNK_SIZE,
        CHUNK_SIZE,
        12345,
      ]);
      assert.equal(sha256Digest(viaFile), sha256Digest(viaCopies));
      const back = await readAll(streamOf(viaFile).pipeThrough(decompressStream("gzip")), 1e8, "b");
      assert.equal(sha256Digest(back), sha256Digest(data));
    } finally {
      await handle.close();
      await rm(path, { force: true });
    }
  });
});
