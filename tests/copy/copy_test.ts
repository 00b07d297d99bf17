import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { copyImage } from "../../lib/copy/copy.ts";
import { decompressStream } from "../../lib/compression/compress.ts";
import { sha256Digest } from "../../lib/oci/digest.ts";
import { MediaType } from "../../lib/oci/media_types.ts";
import type { ImageProgressStep } from "../../lib/progress.ts";
import { readAll, streamOf } from "../../lib/streams.ts";
import { MemoryEnd } from "../../testing/memory_end.ts";

const text = (s: string) => new TextEncoder().encode(s);

/**
 * A docker-style image with uncompressed layers, as a `docker save` source presents it;
 * `platform` holds the config's `os`, `architecture` and `variant` (linux unless it says).
 */
function dockerImage(
  source: MemoryEnd,
  name: string,
  layerTexts: string[],
  arch = "amd64",
  platform: Record<string, string | undefined> = { os: "linux", architecture: arch },
) {
  const layers = layerTexts.map((t) => {
    const bytes = text(t.repeat(1000));
    return {
      mediaType: MediaType.DockerLayer,
      digest: source.addBlob(bytes),
      size: bytes.byteLength,
    };
  });
  const configBytes = text(JSON.stringify({
    ...platform,
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.digest) },
  }));
  const config = {
    mediaType: MediaType.DockerConfig,
    digest: source.addBlob(configBytes),
    size: configBytes.byteLength,
  };
  return source.addManifest(
    { schemaVersion: 2, mediaType: MediaType.DockerManifest, config, layers },
    MediaType.DockerManifest,
    name,
  );
}

describe("copy engine", () => {
  it("compresses uncompressed layers, keeps the config byte for byte and reports steps", async () => {
    const source = new MemoryEnd();
    const top = dockerImage(source, "app:1", ["a", "bb", "ccc"]);
    const destination = new MemoryEnd();
    const steps: ImageProgressStep[] = [];
    const result = await copyImage(source, destination, {
      destinationName: "1",
      operation: "push",
      compression: { format: "gzip" },
      onStep: (s) => steps.push(s),
    });
    assert.ok(destination.committed);
    const manifest = JSON.parse(
      new TextDecoder().decode(destination.manifests.get(result.descriptor.digest)!.bytes),
    );
    const original = JSON.parse(new TextDecoder().decode(source.manifests.get(top.digest)!.bytes));
    assert.equal(manifest.mediaType, MediaType.DockerManifest);
    assert.equal(manifest.config.digest, original.config.digest);
    assert.deepEqual(
      destination.blobs.get(manifest.config.digest),
      source.blobs.get(original.config.digest),
    );
    for (const [i, layer] of manifest.layers.entries()) {
      assert.equal(layer.mediaType, MediaType.DockerLayerGzip);
      const gz = destination.blobs.get(layer.digest)!;
      assert.equal(layer.size, gz.byteLength);
      const raw = await readAll(streamOf(gz).pipeThrough(decompressStream("gzip")), 1e7, "layer");
      assert.equal(sha256Digest(raw), original.layers[i].digest);
    }
    assert.equal(destination.tags.get("1"), result.descriptor.digest);
    // Every layer goes Waiting → Preparing → Pushing … → Pushed, with byte counts that end at the total.
    for (const layer of original.layers) {
      const id = layer.digest.slice(7, 19);
      const mine = steps.filter((s) => s.layerId === id);
      assert.deepEqual([...new Set(mine.map((s) => s.status))], [
        "Waiting",
        "Preparing",
        "Pushing",
        "Pushed",
      ]);
      assert.equal(mine.at(-1)!.current, layer.size);
      const counts = mine.filter((s) => s.status === "Pushing").map((s) => s.current);
      assert.deepEqual(counts, [...counts].sort((a, b) => a - b));
    }
  });

  it("starts the largest layers first and keeps the manifest's layer order", async () => {
    const source = new MemoryEnd();
    const top = dockerImage(source, "app:1", ["bb", "a", "dddd", "ccc"]);
    const destination = new MemoryEnd();
    const started: string[] = [];
    const result = await copyImage(source, destination, {
      operation: "push",
      compression: { format: "gzip" },
      concurrency: 1,
      onStep: (s) => s.status === "Preparing" && started.push(s.layerId),
    });
    const original = JSON.parse(new TextDecoder().decode(source.manifests.get(top.digest)!.bytes));
    const ids = original.layers.map((l: { digest: string }) => l.digest.slice(7, 19));
    assert.deepEqual(started, [ids[2], ids[3], ids[0], ids[1]]);
    const manifest = JSON.parse(
      new TextDecoder().decode(destination.manifests.get(result.descriptor.digest)!.bytes),
    );
    for (const [i, layer] of manifest.layers.entries()) {
      const gz = destination.blobs.get(layer.digest)!;
      const raw = await readAll(streamOf(gz).pipeThrough(decompressStream("gzip")), 1e7, "layer");
      assert.equal(sha256Digest(raw), original.layers[i].digest);
    }
  });

  it("copies blobs as they are without compression and skips what the destination has", async () => {
    const source = new MemoryEnd();
    const top = dockerImage(source, "app:1", ["x", "y"]);
    const destination = new MemoryEnd();
    const original = JSON.parse(new TextDecoder().decode(source.manifests.get(top.digest)!.bytes));
    destination.blobs.set(original.layers[0].digest, source.blobs.get(original.layers[0].digest)!);
    const steps: ImageProgressStep[] = [];
    const result = await copyImage(source, destination, {
      destinationName: "app:1",
      onStep: (s) => steps.push(s),
    });
    assert.equal(result.descriptor.digest, top.digest, "manifest kept byte for byte");
    assert.ok(
      steps.some((s) =>
        s.status === "Already exists" && s.layerId === original.layers[0].digest.slice(7, 19)
      ),
    );
    assert.ok(
      steps.some((s) =>
        s.status === "Download complete" && s.layerId === original.layers[1].digest.slice(7, 19)
      ),
    );
  });

  it("picks a platform from an index, or copies it whole, and lists what it holds when none matches", async () => {
    const source = new MemoryEnd();
    const amd = dockerImage(source, "amd", ["1"], "amd64");
    const arm = dockerImage(source, "arm", ["2"], "arm64");
    source.addManifest(
      {
        schemaVersion: 2,
        mediaType: MediaType.OciIndex,
        manifests: [
          { ...amd, platform: { os: "linux", architecture: "amd64" } },
          { ...arm, platform: { os: "linux", architecture: "arm64", variant: "v8" } },
        ],
      },
      MediaType.OciIndex,
      "multi",
    );
    const one = new MemoryEnd();
    const picked = await copyImage(source, one, {
      sourceName: "multi",
      destinationName: "x",
      platform: { os: "linux", architecture: "arm64" },
    });
    assert.equal(picked.descriptor.digest, arm.digest);
    const all = new MemoryEnd();
    const whole = await copyImage(source, all, {
      sourceName: "multi",
      destinationName: "x",
      platform: "all",
    });
    assert.equal(whole.descriptor.digest, source.tags.get("multi"));
    assert.ok(all.manifests.has(amd.digest) && all.manifests.has(arm.digest));
    const none = new MemoryEnd();
    await assert.rejects(
      copyImage(source, none, {
        sourceName: "multi",
        platform: { os: "linux", architecture: "s390x" },
      }),
      /no image for platform linux\/s390x; the index holds linux\/amd64, linux\/arm64\/v8/,
    );
    assert.ok(none.aborted && !none.committed);
  });

  it("copies an image of one platform for its own, refuses it for another before any blob", async () => {
    const linux = (architecture: string, variant?: string) => ({
      os: "linux",
      architecture,
      ...(variant ? { variant } : {}),
    });
    const cases: {
      config: Record<string, string | undefined>;
      asked?: ReturnType<typeof linux> | "all";
      refused?: RegExp;
    }[] = [
      { config: linux("arm64"), asked: linux("arm64", "v8") }, // v8 is arm64's only variant
      { config: linux("aarch64"), asked: linux("arm64") }, // uname's name for it
      { config: linux("arm64", "v8"), asked: linux("arm64") },
      { config: linux("arm"), asked: linux("arm", "v7") }, // no variant: taken for the usual
      { config: linux("arm", "7"), asked: linux("arm", "v7") },
      { config: { os: "Linux", architecture: "AMD64" }, asked: linux("amd64") },
      { config: {}, asked: linux("amd64") }, // names no platform
      { config: { os: "", architecture: "" }, asked: linux("amd64") },
      { config: linux("arm64") }, // nothing asked: pulled whatever its platform
      { config: linux("arm64"), asked: "all" },
      {
        config: linux("arm64"),
        asked: linux("amd64"),
        refused: /the image is for linux\/arm64, not the linux\/amd64 asked for/,
      },
      {
        config: linux("arm", "v6"),
        asked: linux("arm", "v7"),
        refused: /the image is for linux\/arm\/v6, not the linux\/arm\/v7 asked for/,
      },
      {
        config: { os: "windows", architecture: "amd64" },
        asked: linux("amd64"),
        refused: /the image is for windows\/amd64, not the linux\/amd64/,
      },
    ];
    for (const { config, asked, refused } of cases) {
      const source = new MemoryEnd();
      const top = dockerImage(source, "one:1", ["a"], "amd64", config);
      const destination = new MemoryEnd();
      const copy = copyImage(source, destination, { sourceName: "one:1", platform: asked });
      const what = `${JSON.stringify(config)} asked ${JSON.stringify(asked)}`;
      if (refused) {
        await assert.rejects(copy, refused, what);
        assert.ok(destination.aborted && !destination.committed, what);
        assert.equal(destination.blobs.size, 0, `${what}: no blob copied`);
      } else {
        assert.equal((await copy).descriptor.digest, top.digest, what);
        assert.ok(destination.committed, what);
      }
    }
  });

  it("rolls the destination back when a blob fails or the copy is aborted", async () => {
    const source = new MemoryEnd();
    dockerImage(source, "app:1", ["a", "b", "c"]);
    const failing = new MemoryEnd();
    failing.failAfterBlobs = 1;
    await assert.rejects(copyImage(source, failing, { concurrency: 1 }), /injected failure/);
    assert.ok(failing.aborted && !failing.committed);
    const aborted = new MemoryEnd();
    const controller = new AbortController();
    controller.abort(new Error("stop"));
    await assert.rejects(copyImage(source, aborted, { signal: controller.signal }), /stop/);
    assert.ok(aborted.aborted && !aborted.committed);
  });

  it("refuses a manifest whose layer count disagrees with the config", async () => {
    const source = new MemoryEnd();
    const bytes = text("layer");
    const layer = {
      mediaType: MediaType.OciLayer,
      digest: source.addBlob(bytes),
      size: bytes.byteLength,
    };
    const cfg = text(JSON.stringify({ rootfs: { type: "layers", diff_ids: [] } }));
    const config = {
      mediaType: MediaType.OciConfig,
      digest: source.addBlob(cfg),
      size: cfg.byteLength,
    };
    source.addManifest(
      { schemaVersion: 2, mediaType: MediaType.OciManifest, config, layers: [layer] },
      MediaType.OciManifest,
      "x",
    );
    await assert.rejects(
      copyImage(source, new MemoryEnd()),
      /lists 1 layers but the config has 0 diff_ids/,
    );
  });
});
