import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DigestMismatchError } from "../../lib/errors.ts";
import { sha256Digest } from "../../lib/oci/digest.ts";
import { type ImageManifest, parseConfig, parseManifest } from "../../lib/oci/manifest.ts";
import { MediaType } from "../../lib/oci/media_types.ts";
import {
  openDockerArchiveDestination,
  openOciArchiveDestination,
} from "../../lib/archive/archive_destination.ts";
import { openOciLayoutDestination } from "../../lib/archive/layout_destination.ts";
import { openLocalSource } from "../../lib/archive/local_source.ts";
import { TarIndex } from "../../lib/archive/tar_index.ts";
import { listDir, makeTempDir, removeTempDir } from "../../testing/fs.ts";
import {
  acquireTestImages,
  layerTar,
  plainCopy,
  Podman,
  releaseTestImages,
  run,
  skopeoConfig,
  skopeoCopy,
  skopeoManifest,
  syntheticImage,
  type TestImages,
} from "../../testing/tools.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const hex = (digest: string) => digest.slice("sha256:".length);

/** The original image as buildah wrote it (OCI archive: gzip layers). */
interface Original {
  manifestBytes: Uint8Array;
  manifest: ImageManifest;
  config: Uint8Array;
  diffIds: string[];
}

async function original(images: TestImages): Promise<Original> {
  const manifestBytes = await skopeoManifest(`oci-archive:${images.ociArchive}`);
  const config = await skopeoConfig(`oci-archive:${images.ociArchive}`);
  const parsed = parseManifest(manifestBytes, "original");
  assert.equal(parsed.kind, "manifest");
  return {
    manifestBytes,
    manifest: (parsed as { manifest: ImageManifest }).manifest,
    config,
    diffIds: parseConfig(config, "config").rootfs.diff_ids,
  };
}

function blobStream(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new Blob([bytes as BlobPart]).stream();
}

describe("local destinations: our archives read back by skopeo and podman", () => {
  let images: TestImages;
  let orig: Original;
  let dir: string;
  let podman: Podman;
  before(async () => {
    images = await acquireTestImages();
    orig = await original(images);
    dir = await makeTempDir("archive-destination");
    podman = await Podman.create();
  });
  after(async () => {
    await podman?.cleanup();
    await removeTempDir(dir);
    await releaseTestImages();
  });

  it("docker-loadable archive: layout + manifest.json, blobs kept compressed, real files", async () => {
    const path = join(dir, "docker.tar");
    const source = await openLocalSource(images.ociArchive);
    try {
      await plainCopy(
        source,
        await openDockerArchiveDestination(path),
        undefined,
        "apolo/copied:v7",
      );
    } finally {
      await source.close();
    }
    assert.deepEqual(await listDir(dir), ["docker.tar"]);
    const configDigest = orig.manifest.config.digest;

    // The files inside, as docker load (old and new) and containerd expect them.
    const index = await TarIndex.open(path);
    try {
      for (const name of index.names()) assert.notEqual(index.entry(name)?.type, "symlink");
      const saved = JSON.parse(dec.decode(await index.readEntry("manifest.json", 1 << 20)));
      assert.deepEqual(saved, [{
        Config: `blobs/sha256/${hex(configDigest)}`,
        RepoTags: ["apolo/copied:v7"],
        Layers: orig.manifest.layers.map((l) => `blobs/sha256/${hex(l.digest)}`),
      }]);
      const ociIndex = JSON.parse(dec.decode(await index.readEntry("index.json", 1 << 20)));
      assert.deepEqual(ociIndex.manifests[0].annotations, {
        "io.containerd.image.name": "docker.io/apolo/copied:v7",
        "org.opencontainers.image.ref.name": "v7",
      });
      assert.equal(ociIndex.manifests[0].digest, sha256Digest(orig.manifestBytes));
      assert.deepEqual(
        JSON.parse(dec.decode(await index.readEntry("repositories", 1 << 20))),
        { "apolo/copied": { v7: hex(orig.manifest.layers.at(-1)!.digest) } },
      );
      assert.equal(
        dec.decode(await index.readEntry("oci-layout", 100)),
        '{"imageLayoutVersion":"1.0.0"}',
      );
      for (const layer of orig.manifest.layers) {
        const bytes = await index.readEntry(`blobs/sha256/${hex(layer.digest)}`, 1 << 24);
        assert.equal(sha256Digest(bytes), layer.digest); // stored as is: still gzip
        assert.deepEqual([...bytes.subarray(0, 2)], [0x1f, 0x8b]);
      }
    } finally {
      await index.close();
    }

    // skopeo reads it as a docker archive and as an OCI archive.
    assert.deepEqual(await skopeoConfig(`docker-archive:${path}`), orig.config);
    assert.deepEqual(await skopeoManifest(`oci-archive:${path}`), orig.manifestBytes);
    const copied = join(dir, "skopeo-copy");
    await skopeoCopy(`docker-archive:${path}`, `oci:${copied}:x`);
    await removeTempDir(copied);

    // podman loads it with the same image ID and diffIDs.
    const loaded = await podman.load(path);
    assert.deepEqual(loaded, ["docker.io/apolo/copied:v7"]);
    const inspected = await podman.inspect("docker.io/apolo/copied:v7");
    assert.equal(inspected.id, hex(configDigest));
    assert.deepEqual(inspected.diffIds, orig.diffIds);

    // And our own source reads it back through index.json: the manifest as copied.
    const back = await openLocalSource(path);
    try {
      assert.deepEqual(await back.names(), ["apolo/copied:v7"]);
      const resolved = await back.resolve("docker.io/apolo/copied:v7");
      const m = parseManifest(resolved.bytes, "back") as { manifest: ImageManifest };
      assert.equal(m.manifest.config.digest, configDigest);
      assert.deepEqual(
        m.manifest.layers.map((l) => l.digest),
        orig.manifest.layers.map((l) => l.digest),
      );
      assert.deepEqual(resolved.bytes, orig.manifestBytes);
    } finally {
      await back.close();
    }
  });

  it("docker archive from a docker-archive source (uncompressed layers) loads in podman", async () => {
    const path = join(dir, "from-docker.tar");
    const source = await openLocalSource(images.dockerArchive);
    try {
      await plainCopy(source, await openDockerArchiveDestination(path), images.name);
    } finally {
      await source.close();
    }
    const loaded = await podman.load(path);
    assert.deepEqual(loaded, [images.name]);
    const inspected = await podman.inspect(images.name);
    assert.equal(inspected.id, hex(orig.manifest.config.digest));
    assert.deepEqual(inspected.diffIds, orig.diffIds);
    assert.deepEqual(await skopeoConfig(`docker-archive:${path}`), orig.config);
  });

  it("OCI archive: skopeo sees the manifest as stored, podman loads it", async () => {
    const path = join(dir, "oci.tar");
    const source = await openLocalSource(images.ociArchive);
    try {
      await plainCopy(
        source,
        await openOciArchiveDestination(path),
        undefined,
        "apolo/copied:v8",
      );
    } finally {
      await source.close();
    }
    const index = await TarIndex.open(path);
    try {
      assert.equal(index.entry("manifest.json"), undefined);
      assert.equal(index.entry("repositories"), undefined);
    } finally {
      await index.close();
    }
    assert.deepEqual(await skopeoManifest(`oci-archive:${path}`), orig.manifestBytes);
    assert.deepEqual(await skopeoConfig(`oci-archive:${path}`), orig.config);
    const layout = join(dir, "skopeo-layout");
    await skopeoCopy(`oci-archive:${path}`, `oci:${layout}:copy`);
    await removeTempDir(layout);
    assert.deepEqual(await podman.load(path), ["docker.io/apolo/copied:v8"]);
    const inspected = await podman.inspect("docker.io/apolo/copied:v8");
    assert.equal(inspected.id, hex(orig.manifest.config.digest));
    assert.deepEqual(inspected.diffIds, orig.diffIds);
  });

  it("OCI layout directory: images side by side, shared blobs, same name replaced", async () => {
    const layout = join(dir, "layout");
    const source = await openLocalSource(images.ociArchive);
    try {
      await plainCopy(source, await openOciLayoutDestination(layout), undefined, "apolo/one:v1");
      await plainCopy(source, await openOciLayoutDestination(layout), undefined, "apolo/two:v2");
    } finally {
      await source.close();
    }
    // A second image with one layer of its own, pushed under the first name: it replaces it.
    const extra = syntheticImage([layerTar({ "x.txt": "x" })], { gzip: true });
    const other = await openOciLayoutDestination(layout);
    const config = await other.putBlob(blobStream(extra.config), {
      mediaType: MediaType.OciConfig,
      digest: extra.configDigest,
      size: extra.config.length,
    });
    const layer = await other.putBlob(blobStream(extra.layers[0]), {
      mediaType: MediaType.OciLayerGzip,
    });
    const manifest = enc.encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config,
      layers: [layer],
    }));
    await other.putManifest(manifest, {
      mediaType: MediaType.OciManifest,
      digest: sha256Digest(manifest),
      size: manifest.length,
    }, "apolo/one:v1");
    await other.commit();

    const index = JSON.parse(await readFile(join(layout, "index.json"), "utf8"));
    assert.deepEqual(
      index.manifests.map((d: { annotations: Record<string, string> }) =>
        d.annotations["io.containerd.image.name"]
      ),
      ["docker.io/apolo/two:v2", "docker.io/apolo/one:v1"],
    );
    const blobs = await readdir(join(layout, "blobs", "sha256"));
    // buildah's image once (manifest, config, 3 layers) + the new one (manifest, config, layer)
    assert.equal(blobs.length, 5 + 3);
    assert.ok(blobs.every((b) => /^[a-f0-9]{64}$/.test(b)), "no temporary file left");
    assert.deepEqual(await skopeoManifest(`oci:${layout}:v2`), orig.manifestBytes);
    assert.deepEqual(await skopeoConfig(`oci:${layout}:v1`), extra.config);
    const back = await openLocalSource(layout);
    try {
      assert.deepEqual(await back.names(), ["apolo/two:v2", "apolo/one:v1"]);
      const two = await back.resolve("apolo/two:v2");
      assert.deepEqual(two.bytes, orig.manifestBytes);
    } finally {
      await back.close();
    }
  });

  it("streams blobs of known size concurrently into reserved slots; duplicates written once", async () => {
    const path = join(dir, "concurrent.tar");
    const layers = [1, 2, 3, 4].map((n) => layerTar({ [`f${n}`]: "z".repeat(n * 100_000) }));
    const image = syntheticImage(layers, { gzip: true });
    const dest = await openDockerArchiveDestination(path);
    /** A stream that yields in small pieces with pauses, so the writes interleave. */
    const slow = (bytes: Uint8Array) => {
      let at = 0;
      return new ReadableStream<Uint8Array>({
        async pull(c) {
          await new Promise((r) => setTimeout(r, 1));
          if (at >= bytes.length) return c.close();
          c.enqueue(bytes.slice(at, at + 3000));
          at += 3000;
        },
      });
    };
    const descriptors = await Promise.all([
      ...image.layers.map((l, i) =>
        dest.putBlob(slow(l), {
          mediaType: MediaType.OciLayerGzip,
          digest: image.layerDigests[i],
          size: l.length,
        })
      ),
      dest.putBlob(slow(image.layers[0]), {
        mediaType: MediaType.OciLayerGzip,
        digest: image.layerDigests[0],
        size: image.layers[0].length,
      }),
      dest.putBlob(blobStream(image.config), { mediaType: MediaType.OciConfig }), // size unknown: spooled
    ]);
    const manifest = enc.encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: descriptors.at(-1),
      layers: descriptors.slice(0, 4),
    }));
    await dest.putManifest(manifest, {
      mediaType: MediaType.OciManifest,
      digest: sha256Digest(manifest),
      size: manifest.length,
    }, "apolo/concurrent:1");
    await dest.commit();
    const index = await TarIndex.open(path);
    try {
      assert.equal([...index.names()].filter((n) => n.startsWith("blobs/sha256/")).length, 6);
    } finally {
      await index.close();
    }
    const tarList = (await run("tar", ["-tf", path])).stdout.split("\n").filter(Boolean);
    assert.equal(new Set(tarList).size, tarList.length, "no entry written twice");
    assert.deepEqual(await podman.load(path), ["docker.io/apolo/concurrent:1"]);
    const inspected = await podman.inspect("docker.io/apolo/concurrent:1");
    assert.deepEqual(inspected.diffIds, image.diffIds);
    assert.equal(inspected.id, hex(image.configDigest));
  });

  it("an index: manifest.json describes the platform manifest that was stored", async () => {
    const amd = syntheticImage([layerTar({ arch: "amd64" })], { gzip: true, env: ["A=amd64"] });
    const arm = syntheticImage([layerTar({ arch: "arm64" })], { gzip: true, env: ["A=arm64"] });
    const manifestOf = (image: typeof amd) =>
      enc.encode(JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        config: {
          mediaType: MediaType.OciConfig,
          digest: image.configDigest,
          size: image.config.length,
        },
        layers: [{
          mediaType: MediaType.OciLayerGzip,
          digest: image.layerDigests[0],
          size: image.layers[0].length,
        }],
      }));
    const mAmd = manifestOf(amd);
    const mArm = manifestOf(arm);
    const descOf = (bytes: Uint8Array, architecture: string) => ({
      mediaType: MediaType.OciManifest,
      digest: sha256Digest(bytes),
      size: bytes.length,
      platform: { os: "linux", architecture },
    });
    const indexBytes = enc.encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [descOf(mAmd, "amd64"), descOf(mArm, "arm64")],
    }));
    const indexDesc = {
      mediaType: MediaType.OciIndex,
      digest: sha256Digest(indexBytes),
      size: indexBytes.length,
    };

    for (const all of [false, true]) {
      const path = join(dir, `index-${all}.tar`);
      const dest = await openDockerArchiveDestination(path);
      for (const [image, bytes, arch] of [[amd, mAmd, "amd64"], [arm, mArm, "arm64"]] as const) {
        if (!all && arch === "arm64") continue; // only the host platform was pulled
        await dest.putBlob(blobStream(image.config), { mediaType: MediaType.OciConfig });
        await dest.putBlob(blobStream(image.layers[0]), { mediaType: MediaType.OciLayerGzip });
        await dest.putManifest(bytes, descOf(bytes, arch));
      }
      await dest.putManifest(indexBytes, indexDesc, "apolo/multi:1");
      await dest.commit();
      const index = await TarIndex.open(path);
      try {
        const saved = JSON.parse(dec.decode(await index.readEntry("manifest.json", 1 << 20)));
        assert.equal(saved.length, 1);
        assert.equal(saved[0].Config, `blobs/sha256/${hex(amd.configDigest)}`);
        const top =
          JSON.parse(dec.decode(await index.readEntry("index.json", 1 << 20))).manifests[0];
        // The index only when all of its platforms are in the archive.
        assert.equal(top.digest, all ? indexDesc.digest : sha256Digest(mAmd));
        assert.equal(top.annotations["io.containerd.image.name"], "docker.io/apolo/multi:1");
      } finally {
        await index.close();
      }
      assert.deepEqual(await skopeoConfig(`docker-archive:${path}`), amd.config);
    }
  });
});

describe("local destinations: failures leave the previous file, or nothing", () => {
  let dir: string;
  before(async () => {
    dir = await makeTempDir("archive-destination-fail");
  });
  after(async () => {
    await removeTempDir(dir);
  });

  const image = syntheticImage([layerTar({ a: "a" })], { gzip: true });

  for (
    const [label, create] of [
      ["docker archive", openDockerArchiveDestination],
      ["OCI archive", openOciArchiveDestination],
    ] as const
  ) {
    it(`${label}: a blob not matching its digest fails; abort keeps the previous file`, async () => {
      const path = join(dir, "out.tar");
      await writeFile(path, "previous");
      const dest = await create(path);
      await assert.rejects(
        dest.putBlob(blobStream(enc.encode("corrupt")), {
          mediaType: MediaType.OciLayerGzip,
          digest: image.layerDigests[0],
          size: 7,
        }),
        DigestMismatchError,
      );
      await dest.abort();
      assert.equal(await readFile(path, "utf8"), "previous");
      assert.deepEqual(await listDir(dir), ["out.tar"]);
    });

    it(`${label}: a blob longer than its size fails at once, lets its source go, spools nothing`, async () => {
      const path = join(dir, "long.tar");
      const dest = await create(path);
      let cancelled = false;
      let pulls = 0;
      // An endless source: only a check of the size as bytes arrive ends the write.
      const source = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (++pulls > 1000) throw new Error("the destination kept reading past the size");
          controller.enqueue(new Uint8Array(1024));
        },
        cancel() {
          cancelled = true;
        },
      });
      await assert.rejects(
        dest.putBlob(source, { mediaType: MediaType.OciLayerGzip, size: 4096 }),
        (e: Error & { code?: string }) => e.code === "SIZE_INVALID",
      );
      assert.ok(cancelled, "the source was not cancelled");
      await dest.abort();
      assert.deepEqual((await listDir(dir)).filter((n) => n.startsWith("long")), []);
    });

    it(`${label}: commit with a blob never written fails and leaves nothing`, async () => {
      const path = join(dir, "never.tar");
      const dest = await create(path);
      await dest.putBlob(blobStream(image.config), { mediaType: MediaType.OciConfig });
      const manifest = enc.encode(JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        config: {
          mediaType: MediaType.OciConfig,
          digest: image.configDigest,
          size: image.config.length,
        },
        layers: [{
          mediaType: MediaType.OciLayerGzip,
          digest: image.layerDigests[0],
          size: image.layers[0].length,
        }],
      }));
      await dest.putManifest(
        manifest,
        { mediaType: MediaType.OciManifest, digest: sha256Digest(manifest), size: manifest.length },
        "a:b",
      );
      await assert.rejects(
        dest.commit(),
        /blob sha256:[a-f0-9]{64} \(layer 0 of manifest .*\) was never written/,
      );
      assert.deepEqual((await listDir(dir)).filter((n) => n.startsWith("never")), []);
    });
  }

  it("OCI layout directory: abort removes the blobs it added and the directory it created", async () => {
    const layout = join(dir, "new-layout");
    const dest = await openOciLayoutDestination(layout);
    await dest.putBlob(blobStream(image.config), { mediaType: MediaType.OciConfig });
    await dest.abort();
    assert.ok(!(await listDir(dir)).includes("new-layout"));

    const existing = join(dir, "existing-layout");
    const first = await openOciLayoutDestination(existing);
    await first.commit();
    const before = await readFile(join(existing, "index.json"), "utf8");
    const second = await openOciLayoutDestination(existing);
    await second.putBlob(blobStream(image.layers[0]), { mediaType: MediaType.OciLayerGzip });
    await assert.rejects(
      second.putBlob(blobStream(enc.encode("x")), { mediaType: "x", digest: image.configDigest }),
      DigestMismatchError,
    );
    await second.abort();
    assert.equal(await readFile(join(existing, "index.json"), "utf8"), before);
    assert.deepEqual(await readdir(join(existing, "blobs", "sha256")), []);
  });
});
