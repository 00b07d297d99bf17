import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { copyImage } from "../../lib/copy/copy.ts";
import { openArchiveDestination, openOciLayoutDestination } from "../../lib/archive/mod.ts";
import { MediaType } from "../../lib/oci/media_types.ts";
import { sha256Digest } from "../../lib/oci/digest.ts";
import { TarIndex } from "../../lib/archive/tar_index.ts";
import { makeTempDir, removeTempDir } from "../../testing/fs.ts";
import { MemoryEnd } from "../../testing/memory_end.ts";
import { layerTar, run } from "../../testing/tools.ts";

const json = (bytes: Uint8Array) => JSON.parse(new TextDecoder().decode(bytes));

/** A Docker manifest list of two platforms, each with a gzip layer, in memory. */
function dockerList(): { source: MemoryEnd; configs: Uint8Array[] } {
  const source = new MemoryEnd();
  const configs: Uint8Array[] = [];
  const children = ["amd64", "arm64"].map((architecture) => {
    const layer = layerTar({ "arch.txt": architecture });
    const gz = new Uint8Array(gzipSync(layer));
    const config = new TextEncoder().encode(JSON.stringify({
      architecture,
      os: "linux",
      rootfs: { type: "layers", diff_ids: [sha256Digest(layer)] },
    }));
    configs.push(config);
    const manifest = source.addManifest({
      schemaVersion: 2,
      mediaType: MediaType.DockerManifest,
      config: {
        mediaType: MediaType.DockerConfig,
        digest: source.addBlob(config),
        size: config.length,
      },
      layers: [{
        mediaType: MediaType.DockerLayerGzip,
        digest: source.addBlob(gz),
        size: gz.length,
      }],
    }, MediaType.DockerManifest);
    return { ...manifest, platform: { architecture, os: "linux" } };
  });
  source.addManifest(
    { schemaVersion: 2, mediaType: MediaType.DockerManifestList, manifests: children },
    MediaType.DockerManifestList,
    "v1",
  );
  return { source, configs };
}

describe("OCI outputs get OCI media types; docker archives keep Docker ones", () => {
  let dir: string;
  before(async () => {
    dir = await makeTempDir("oci-convert");
  });
  after(async () => {
    await removeTempDir(dir);
  });

  it("a Docker manifest list into an OCI layout: an OCI index of OCI manifests, configs and layers as they were; skopeo finds it by tag", async () => {
    const { source, configs } = dockerList();
    const layout = join(dir, "layout");
    const result = await copyImage(source, await openOciLayoutDestination(layout), {
      sourceName: "v1",
      destinationName: "app:v1",
      platform: "all",
    });
    assert.equal(result.descriptor.mediaType, MediaType.OciIndex);
    assert.notEqual(result.descriptor.digest, result.sourceDescriptor.digest);
    const top = json(await readFile(join(layout, "index.json"))).manifests[0];
    assert.equal(top.mediaType, MediaType.OciIndex);
    assert.equal(top.digest, result.descriptor.digest);
    assert.equal(top.annotations["org.opencontainers.image.ref.name"], "v1");
    const blob = (d: string) => readFile(join(layout, "blobs/sha256", d.slice(7)));
    const index = json(await blob(top.digest));
    assert.equal(index.mediaType, MediaType.OciIndex);
    const original = source.manifests.get(result.sourceDescriptor.digest)!;
    const before = json(original.bytes).manifests;
    for (const [i, child] of index.manifests.entries()) {
      assert.equal(child.mediaType, MediaType.OciManifest);
      assert.deepEqual(child.platform, before[i].platform);
      const manifest = json(await blob(child.digest));
      const old = json(source.manifests.get(before[i].digest)!.bytes);
      assert.equal(manifest.mediaType, MediaType.OciManifest);
      assert.equal(manifest.config.mediaType, MediaType.OciConfig);
      assert.equal(manifest.config.digest, old.config.digest, "config bytes kept: same image ID");
      assert.deepEqual(new Uint8Array(await blob(manifest.config.digest)), configs[i]);
      assert.equal(manifest.layers[0].mediaType, MediaType.OciLayerGzip);
      assert.equal(manifest.layers[0].digest, old.layers[0].digest);
    }
    // containers/image resolves oci:DIR:TAG only through an OCI-typed descriptor.
    const config = await run("skopeo", ["inspect", "--config", "--raw", `oci:${layout}:v1`]);
    assert.deepEqual(config.stdoutBytes, configs[0]);
  });

  it("a docker archive keeps the Docker types docker load reads", async () => {
    const { source } = dockerList();
    const path = join(dir, "docker.tar");
    const result = await copyImage(source, await openArchiveDestination(path), {
      sourceName: "v1",
      destinationName: "app:v1",
      platform: { os: "linux", architecture: "amd64" },
    });
    assert.equal(result.descriptor.mediaType, MediaType.DockerManifest);
    const tar = await TarIndex.open(path);
    try {
      const index = json(await tar.readEntry("index.json", 1 << 20));
      assert.equal(index.manifests[0].mediaType, MediaType.DockerManifest);
      // The platform manifest as the source holds it: nothing converted.
      const amd64 = json(source.manifests.get(result.sourceDescriptor.digest)!.bytes).manifests[0];
      assert.equal(index.manifests[0].digest, amd64.digest);
    } finally {
      await tar.close();
    }
  });
});
