import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  DigestCounter,
  sha256Digest,
  verifyingStream,
  vouch,
  vouchedDigest,
} from "../../lib/oci/digest.ts";
import { readAll, streamOf } from "../../lib/streams.ts";

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
