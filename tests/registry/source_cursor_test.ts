// The source cursor: the bytes an upload reads, re-read from an offset on a resume.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { SourceCursor } from "../../lib/registry/source_cursor.ts";
import { markDisposable } from "../../lib/gc.ts";
import { vouch } from "../../lib/oci/digest.ts";
import { streamOf } from "../../lib/streams.ts";
import { bytesSource, digestOf, testBytes } from "../../testing/fake_registry.ts";

describe("source cursor", () => {
  /** A source whose every stream yields these very chunks, one by one. */
  const chunksSource = (chunks: Uint8Array[]) => ({
    open: () => {
      const queue = [...chunks];
      return new ReadableStream<Uint8Array>({
        pull: (c) => queue.length ? c.enqueue(queue.shift()!) : c.close(),
      });
    },
  });

  it("re-opens at a checkpoint and restores the hash", async () => {
    const bytes = testBytes(1_000_000, 3);
    const source = bytesSource(bytes, { piece: 70_000 });
    const cursor = new SourceCursor(source, "blob");
    await cursor.seek(0);
    await cursor.fill(300_000);
    cursor.checkpoint();
    await cursor.fill(400_000);
    await cursor.seek(450_000); // back: re-open at the checkpoint, skip to 450000
    assert.deepEqual(source.opens, [0, 300_000]);
    while (await cursor.read() !== null) { /* to the end */ }
    assert.equal(cursor.position, bytes.byteLength);
    assert.equal(cursor.digest(), digestOf(bytes));
    await cursor.seek(10); // before every checkpoint: from 0
    assert.deepEqual(source.opens, [0, 300_000, 0]);
    await cursor.close();
  });

  it("lets go of the library's own chunks once the body's reader asks for the next", async () => {
    const own = [testBytes(300_000, 1), testBytes(300_000, 2), testBytes(200_000, 3)];
    own.forEach((c) => markDisposable(c));
    const foreign = testBytes(100_000, 4); // not marked: a caller's bytes stay untouched
    const expected = new Uint8Array([...own.flatMap((c) => [...c]), ...foreign]);
    const cursor = new SourceCursor(chunksSource([...own, foreign]), "blob");
    await cursor.seek(0);
    const reader = cursor.stream(1 << 30, undefined, true).getReader();
    const received: Uint8Array[] = [];
    const seen: Uint8Array[] = [];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      seen.push(value);
      received.push(value.slice()); // what a sender holds on to while sending
      // Asking for this chunk let go of the one before (all but the last are the library's).
      if (seen.length > 1) assert.equal(seen.at(-2)!.byteLength, 0);
    }
    assert.deepEqual(seen.map((c) => c.byteLength), [0, 0, 0, 100_000]);
    assert.deepEqual(new Uint8Array(received.flatMap((c) => [...c])), expected);
    assert.equal(cursor.digest(), digestOf(expected));
  });

  it("keeps sent chunks for a taker that may hold on to them, and ends a superseded stream", async () => {
    const own = [testBytes(1000, 1), testBytes(1000, 2), testBytes(1000, 3)];
    own.forEach((c) => markDisposable(c));
    const cursor = new SourceCursor(chunksSource(own), "blob");
    await cursor.seek(0);
    const first = cursor.stream(1 << 30).getReader(); // a fetch given by the caller
    assert.equal((await first.read()).value!.byteLength, 1000);
    assert.equal((await first.read()).value!.byteLength, 1000);
    assert.deepEqual(own.map((c) => c.byteLength), [1000, 1000, 1000], "nothing let go");
    await cursor.seek(1000); // a new attempt, from what the registry holds
    await assert.rejects(first.read(), /this upload attempt is over/);
    assert.equal(cursor.position, 1000, "the old stream took nothing more");
  });

  it("fills chunks of an upload from the library's own buffers, then lets go of them", async () => {
    const pieces = Array.from({ length: 40 }, (_, i) => testBytes(50_000 + (i * 7919) % 60_000, i));
    const expected = new Uint8Array(pieces.flatMap((p) => [...p]));
    const own = pieces.map((p) => p.slice());
    own.forEach((c) => markDisposable(c));
    const cursor = new SourceCursor(chunksSource(own), "blob");
    await cursor.seek(0);
    const filled: Uint8Array[] = [];
    for (;;) {
      const chunk = await cursor.fill(300_000);
      if (chunk.byteLength === 0) break;
      filled.push(chunk);
      await cursor.atEnd();
    }
    assert.deepEqual(new Uint8Array(filled.flatMap((c) => [...c])), expected);
    assert.equal(cursor.digest(), digestOf(expected));
    // Copied whole into a chunk: let go; split between two chunks: left to the collector.
    assert.ok(own.filter((p) => p.byteLength === 0).length > own.length / 2);
  });

  it("takes the digest a source's maker vouched for instead of hashing again", async () => {
    const bytes = testBytes(100_000, 5);
    const claimed = digestOf(testBytes(10, 6)); // what the maker checks (here: nothing)
    const read = async (vouched: boolean) => {
      const cursor = new SourceCursor({
        open: () => vouched ? vouch(streamOf(bytes), claimed) : streamOf(bytes),
        digest: claimed,
      }, "blob");
      await cursor.seek(0);
      while (await cursor.read() !== null) { /* to the end */ }
      return cursor.digest();
    };
    assert.equal(await read(true), claimed, "not hashed again");
    assert.equal(await read(false), digestOf(bytes), "hashed");
  });

  it("fails when the source has more or fewer bytes than announced", async () => {
    const bytes = testBytes(1000);
    const more = new SourceCursor(bytesSource(bytes, { size: 999 }), "blob x");
    await more.seek(0);
    await assert.rejects(async () => {
      while (await more.read() !== null) { /* */ }
    }, /blob x: the source has more than the expected 999 bytes/);
    const fewer = new SourceCursor(bytesSource(bytes, { size: 1001 }), "blob y");
    await fewer.seek(0);
    await assert.rejects(async () => {
      while (await fewer.read() !== null) { /* */ }
    }, /blob y: the source ended after 1000 of 1001 bytes/);
  });
});
