import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { CompressorPool, parallelCompressStream } from "../lib/compression/parallel_compress.ts";
import { adoptChunk, CHUNK_SIZE, takeChunk } from "../lib/chunk_pool.ts";
import { dispose, markDisposable } from "../lib/gc.ts";
import zlib from "node:zlib";

describe("disposal", () => {
  it("lets go only of whole buffers marked as the library's own, once", () => {
    const foreign = new Uint8Array(1000).fill(1);
    assert.equal(dispose(foreign), false);
    assert.equal(foreign.byteLength, 1000);
    const member = new Uint8Array(1000).fill(2);
    markDisposable(member);
    assert.equal(dispose(member.subarray(0, 10)), false, "a part is not the whole");
    assert.equal(member[999], 2);
    assert.equal(dispose(member), true);
    assert.equal(member.byteLength, 0);
    assert.equal(dispose(member), false);
    const chunk = takeChunk(); // a pooled chunk sent as it is can go too
    assert.equal(dispose(chunk), true);
    assert.equal(adoptChunk(chunk), undefined);
  });

  it("leaves compressed members to the reader, marked as disposable", async () => {
    const pool = new CompressorPool(1);
    pool.acquire();
    try {
      const input = new Uint8Array(3 * CHUNK_SIZE).map((_, i) => i % 251);
      const reader = new Blob([input]).stream().pipeThrough(parallelCompressStream(pool, "gzip"))
        .getReader();
      const members: Uint8Array[] = [];
      for (let r = await reader.read(); !r.done; r = await reader.read()) members.push(r.value);
      const gzip = new Uint8Array(members.flatMap((m) => [...m]));
      assert.deepEqual(new Uint8Array(zlib.gunzipSync(gzip)), input);
      // Members made whole (a worker's, a native engine's) can go; a view into a larger
      // zlib buffer made on the calling thread stays with the collector.
      const whole = members.map((m) => m.byteLength === m.buffer.byteLength);
      assert.ok(whole.includes(true));
      assert.deepEqual(members.map((m) => dispose(m)), whole);
      assert.ok(members.every((m, i) => !whole[i] || m.byteLength === 0));
    } finally {
      pool.release();
    }
  });
});
