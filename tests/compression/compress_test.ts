import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { sha256Digest } from "../../lib/oci/digest.ts";
import { detectCompression } from "../../lib/oci/media_types.ts";
import { readAll, streamOf } from "../../lib/streams.ts";
import { compressStream, decompressStream } from "../../lib/compression/compress.ts";

describe("compression", () => {
  it("detects formats by magic bytes", () => {
    assert.equal(detectCompression(new Uint8Array([0x1f, 0x8b, 0x08, 0])), "gzip");
    assert.equal(detectCompression(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd])), "zstd");
    assert.equal(detectCompression(new Uint8Array([0x75, 0x73, 0x74, 0x61])), "none");
  });

  for (const format of ["gzip", "zstd"] as const) {
    it(`round-trips ${format} deterministically`, async () => {
      const data = new Uint8Array(3_000_000).map((_, i) => (i * 31) % 253);
      const once = await readAll(streamOf(data).pipeThrough(compressStream(format)), 1e8, "a");
      const twice = await readAll(streamOf(data).pipeThrough(compressStream(format)), 1e8, "b");
      assert.equal(sha256Digest(once), sha256Digest(twice));
      assert.equal(detectCompression(once), format);
      const back = await readAll(streamOf(once).pipeThrough(decompressStream(format)), 1e8, "c");
      assert.equal(sha256Digest(back), sha256Digest(data));
    });
  }

  it("fails cleanly on corrupt input", async () => {
    const bad = streamOf(new Uint8Array([0x1f, 0x8b, 0x08, 0, 9, 9, 9, 9, 9, 9, 9, 9]));
    await assert.rejects(
      readAll(bad.pipeThrough(decompressStream("gzip")), 100, "x"),
      /compression failed/,
    );
  });
});
