import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readAll, skipBytes, streamOf } from "../lib/streams.ts";
import { mapConcurrent } from "../lib/copy/pool.ts";

describe("stream helpers", () => {
  it("skips a prefix across chunk boundaries", async () => {
    const chunks = [new Uint8Array([1, 2]), new Uint8Array([3, 4, 5])];
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        chunks.forEach((x) => c.enqueue(x));
        c.close();
      },
    });
    assert.deepEqual([...await readAll(skipBytes(stream, 3), 10, "x")], [4, 5]);
    await assert.rejects(
      readAll(skipBytes(streamOf(new Uint8Array(2)), 3), 10, "x"),
      /before the resume offset/,
    );
  });

  it("refuses streams over the limit", async () => {
    await assert.rejects(
      readAll(streamOf(new Uint8Array(11)), 10, "config"),
      /config: larger than the 10-byte limit/,
    );
  });

  it("runs tasks concurrently, in order, and stops on the first failure", async () => {
    let running = 0;
    let peak = 0;
    const out = await mapConcurrent([1, 2, 3, 4, 5], 2, async (n) => {
      peak = Math.max(peak, ++running);
      await new Promise((r) => setTimeout(r, 5));
      running--;
      return n * 10;
    });
    assert.deepEqual(out, [10, 20, 30, 40, 50]);
    assert.equal(peak, 2);
    const started: number[] = [];
    await assert.rejects(
      mapConcurrent([1, 2, 3, 4], 1, (n) => {
        started.push(n);
        return n === 2 ? Promise.reject(new Error("boom")) : Promise.resolve(n);
      }),
      /boom/,
    );
    assert.deepEqual(started, [1, 2]);
  });
});
