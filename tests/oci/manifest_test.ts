import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  DigestCounter,
  sha256Digest,
  verifyingStream,
  vouch,
  vouchedDigest,
} from "../../lib/oci/digest.ts";
import {
  MAX_LAYERS,
  MAX_MANIFEST_BYTES,
  parseConfig,
  parseManifest,
  parsePlatform,
} from "../../lib/oci/manifest.ts";
import { detectCompression, MediaType } from "../../lib/oci/media_types.ts";
import { readAll, skipBytes, streamOf } from "../../lib/streams.ts";
import { compressStream, decompressStream } from "../../lib/copy/compress.ts";
import { mapConcurrent } from "../../lib/copy/pool.ts";

const encode = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const zero = "sha256:" + "0".repeat(64);

describe("digests", () => {
  it("verifies a stream's digest and size", async () => {
    const bytes = new TextEncoder().encode("hello");
    const ok = streamOf(bytes).pipeThrough(
      verifyingStream({ what: "greeting", digest: sha256Digest(bytes), size: 5 }),
    );
    assert.deepEqual(await readAll(ok, 100, "x"), bytes);
  });

  it("fails a stream whose bytes do not match, naming the blob", async () => {
    const bad = streamOf(new TextEncoder().encode("hellO")).pipeThrough(
      verifyingStream({ what: "layer 2", digest: sha256Digest(new TextEncoder().encode("hello")) }),
    );
    await assert.rejects(readAll(bad, 100, "x"), /layer 2: digest mismatch/);
  });

  it("fails a truncated stream and one longer than announced", async () => {
    const short = streamOf(new Uint8Array(3)).pipeThrough(verifyingStream({ what: "b", size: 4 }));
    await assert.rejects(readAll(short, 100, "x"), /b: truncated: expected 4 bytes, got 3/);
    const long = streamOf(new Uint8Array(5)).pipeThrough(verifyingStream({ what: "c", size: 4 }));
    await assert.rejects(readAll(long, 100, "x"), /c: more data than the expected 4 bytes/);
  });

  it("trusts a stream only for the digest its maker vouched for, never one piped from it", () => {
    const bytes = new TextEncoder().encode("hello");
    const digest = sha256Digest(bytes);
    const checked = vouch(
      streamOf(bytes).pipeThrough(verifyingStream({ what: "greeting", digest })),
      digest,
    );
    assert.equal(vouchedDigest(checked, digest), digest);
    assert.equal(vouchedDigest(checked, zero), undefined, "another digest is checked by hashing");
    assert.equal(vouchedDigest(checked, undefined), undefined);
    assert.equal(vouchedDigest(checked.pipeThrough(new TransformStream()), digest), undefined);
    assert.equal(vouchedDigest(streamOf(bytes), digest), undefined);
    // A counter for vouched bytes counts them and takes the digest it was given.
    const counter = new DigestCounter(vouchedDigest(checked, digest));
    counter.update(bytes);
    assert.equal(counter.size, 5);
    assert.equal(counter.digest(), digest);
  });

  it("counts and hashes incrementally", () => {
    const counter = new DigestCounter();
    counter.update(new Uint8Array([1]));
    counter.update(new Uint8Array([2, 3]));
    assert.equal(counter.size, 3);
    assert.equal(counter.digest(), sha256Digest(new Uint8Array([1, 2, 3])));
  });
});

describe("manifest parsing", () => {
  it("tells manifests from indexes", () => {
    const m = parseManifest(
      encode({
        schemaVersion: 2,
        mediaType: MediaType.DockerManifest,
        config: { mediaType: MediaType.DockerConfig, digest: zero, size: 2 },
        layers: [{ mediaType: MediaType.DockerLayerGzip, digest: zero, size: 1 }],
      }),
      "m",
    );
    assert.equal(m.kind, "manifest");
    const i = parseManifest(encode({ schemaVersion: 2, manifests: [] }), "i");
    assert.equal(i.kind, "index");
    assert.equal(i.mediaType, MediaType.OciIndex);
  });

  it("refuses bad documents with the place named", () => {
    assert.throws(
      () => parseManifest(new TextEncoder().encode("{"), "index.json"),
      /index.json: not valid JSON/,
    );
    assert.throws(
      () => parseManifest(encode({ schemaVersion: 1 }), "m"),
      /m: schemaVersion must be 2/,
    );
    assert.throws(
      () =>
        parseManifest(
          encode({
            schemaVersion: 2,
            manifests: [{ mediaType: "x", digest: "sha256:12", size: 1 }],
          }),
          "idx",
        ),
      /idx manifests\[0\]\.digest: expected a sha256 digest/,
    );
    assert.throws(
      () =>
        parseManifest(
          encode({
            schemaVersion: 2,
            config: { mediaType: "x", digest: zero, size: -1 },
            layers: [],
          }),
          "m",
        ),
      /m config: size must be a non-negative integer/,
    );
  });

  it("enforces size, depth and layer-count limits", () => {
    assert.throws(
      () => parseManifest(new Uint8Array(MAX_MANIFEST_BYTES + 1), "big"),
      /big: 4194305 bytes is over the 4194304-byte limit/,
    );
    const deep = "[".repeat(10_000) + "]".repeat(10_000);
    assert.throws(
      () => parseManifest(new TextEncoder().encode(deep), "deep"),
      /deep: JSON nested deeper/,
    );
    const layer = { mediaType: MediaType.OciLayerGzip, digest: zero, size: 1 };
    assert.throws(
      () =>
        parseManifest(
          encode({ schemaVersion: 2, config: layer, layers: Array(MAX_LAYERS + 1).fill(layer) }),
          "many",
        ),
      /many: 1001 layers is over the limit of 1000/,
    );
  });

  it("checks a config's diff_ids", () => {
    assert.equal(
      parseConfig(encode({ rootfs: { type: "layers", diff_ids: [zero] } }), "c").rootfs.diff_ids
        .length,
      1,
    );
    assert.throws(() => parseConfig(encode({}), "cfg"), /cfg: rootfs.diff_ids is missing/);
    assert.throws(
      () => parseConfig(encode({ rootfs: { type: "layers", diff_ids: ["nope"] } }), "cfg"),
      /cfg rootfs.diff_ids\[0\]: expected a sha256 digest/,
    );
  });

  it("parses platforms", () => {
    assert.deepEqual(parsePlatform("linux/arm64/v8"), {
      os: "linux",
      architecture: "arm64",
      variant: "v8",
    });
    assert.throws(() => parsePlatform("linux"), /expected OS\/ARCH\[\/VARIANT\]/);
  });
});

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
