import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { adoptChunk, CHUNK_SIZE, giveChunk, takeChunk } from "../lib/chunk_pool.ts";

describe("chunk pool", () => {
  it("adopts only its own whole chunks, detaching them, and reuses what is given back", () => {
    const foreign = new Uint8Array(CHUNK_SIZE).fill(1);
    assert.equal(adoptChunk(foreign), undefined);
    assert.equal(foreign.byteLength, CHUNK_SIZE);
    const pooled = takeChunk();
    assert.equal(adoptChunk(pooled.subarray(0, 10)), undefined);
    const mine = adoptChunk(pooled)!;
    assert.equal(pooled.byteLength, 0);
    assert.equal(mine.byteLength, CHUNK_SIZE);
    assert.equal(adoptChunk(mine), undefined); // adopted memory is not handed out any more
    mine[0] = 42;
    giveChunk(mine);
    assert.equal(mine.byteLength, 0, "the giver keeps no view of reused memory");
    assert.equal(takeChunk()[0], 42);
  });
});
