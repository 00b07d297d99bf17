import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { NotFoundError } from "../../lib/errors.ts";
import { sha256Digest } from "../../lib/oci/digest.ts";
import { type ImageManifest, parseConfig, parseManifest } from "../../lib/oci/manifest.ts";
import { MediaType } from "../../lib/oci/media_types.ts";
import { type LocalSource, openLocalSource } from "../../lib/archive/local_source.ts";
import { makeTempDir, removeTempDir } from "../../testing/fs.ts";
import {
  acquireTestImages,
  docker25SaveEntries,
  layerTar,
  legacySaveEntries,
  releaseTestImages,
  skopeoConfig,
  skopeoManifest,
  type SyntheticImage,
  syntheticImage,
  type TestImages,
  writeTar,
} from "../../testing/tools.ts";

const hex = (digest: string) => digest.slice("sha256:".length);
const json = (value: unknown) => JSON.stringify(value);

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function manifestOf(source: LocalSource, name?: string): Promise<ImageManifest> {
  const resolved = await source.resolve(name);
  const parsed = parseManifest(resolved.bytes, "resolved", resolved.descriptor.mediaType);
  assert.equal(parsed.kind, "manifest");
  return (parsed as { manifest: ImageManifest }).manifest;
}

/** Reads every blob of the image through fetchBlob (which verifies them). */
async function readImage(source: LocalSource, name?: string) {
  const manifest = await manifestOf(source, name);
  const config = await readAll(await source.fetchBlob(manifest.config));
  const layers = [];
  for (const layer of manifest.layers) layers.push(await readAll(await source.fetchBlob(layer)));
  return { manifest, config, layers, diffIds: parseConfig(config, "config").rootfs.diff_ids };
}

describe("local sources: archives written by buildah, checked against skopeo", () => {
  let images: TestImages;
  before(async () => {
    images = await acquireTestImages();
  });
  after(async () => {
    await releaseTestImages();
  });

  const cases: [string, () => string, () => string, string][] = [
    [
      "docker-archive",
      () => images.dockerArchive,
      () => `docker-archive:${images.dockerArchive}`,
      "docker-archive",
    ],
    [
      "oci-archive",
      () => images.ociArchive,
      () => `oci-archive:${images.ociArchive}`,
      "oci-archive",
    ],
    [
      "oci: directory",
      () => images.ociDir,
      () => `oci:${images.ociDir}:${images.ociDirRef}`,
      "oci-layout",
    ],
  ];
  for (const [label, path, reference, format] of cases) {
    it(`reads ${label}: config digest, diffIDs and layer digests equal skopeo's`, async () => {
      const skopeoRaw = parseManifest(await skopeoManifest(reference()), "skopeo");
      assert.equal(skopeoRaw.kind, "manifest");
      const expected = (skopeoRaw as { manifest: ImageManifest }).manifest;
      const expectedConfig = await skopeoConfig(reference());
      const source = await openLocalSource(path());
      try {
        assert.equal(source.format, format);
        const image = await readImage(source);
        assert.equal(image.manifest.config.digest, expected.config.digest);
        assert.equal(image.manifest.config.digest, sha256Digest(expectedConfig));
        assert.deepEqual(image.config, expectedConfig);
        assert.deepEqual(image.diffIds, parseConfig(expectedConfig, "skopeo").rootfs.diff_ids);
        assert.deepEqual(
          image.manifest.layers.map((l) => l.digest),
          expected.layers.map((l) => l.digest),
        );
        assert.deepEqual(
          image.manifest.layers.map((l) => l.size),
          expected.layers.map((l) => l.size),
        );
        assert.equal(image.layers.length, images.layerCount);
        if (format !== "docker-archive") {
          // OCI layouts: the manifest is returned exactly as stored.
          assert.deepEqual((await source.resolve()).bytes, await skopeoManifest(reference()));
        } else {
          // docker save: layers are uncompressed, so digest = diffID; the last one is empty.
          assert.deepEqual(image.manifest.layers.map((l) => l.digest), image.diffIds);
          assert.ok(image.manifest.layers.every((l) => l.mediaType === MediaType.DockerLayer));
          assert.equal(image.layers.at(-1)!.length, 1024);
        }
      } finally {
        await source.close();
      }
    });
  }

  it("finds the image by the names the archives give it", async () => {
    for (const path of [images.dockerArchive, images.ociArchive]) {
      const source = await openLocalSource(path);
      try {
        assert.deepEqual(await source.names(), [images.name]);
        const byName = await source.resolve(images.name);
        assert.equal(byName.name, images.name);
        assert.equal((await source.resolve()).descriptor.digest, byName.descriptor.digest);
        await assert.rejects(source.resolve("localhost/apolo-test/img:v2"), NotFoundError);
      } finally {
        await source.close();
      }
    }
    const dir = await openLocalSource(images.ociDir);
    try {
      assert.deepEqual(await dir.names(), ["v1"]);
      const a = await dir.resolve("v1");
      // a tag-only ref name also answers a name:tag request
      const b = await dir.resolve("localhost/apolo-test/img:v1");
      assert.equal(a.descriptor.digest, b.descriptor.digest);
    } finally {
      await dir.close();
    }
  });
});

describe("local sources: synthesised archives of the formats buildah does not write", () => {
  let dir: string;
  const base = layerTar({ "etc/os-release": "ID=test\n", "bin/sh": "#!fake\n" });
  const app = layerTar({ "app/main.txt": "application\n".repeat(500) });
  const empty = layerTar({});
  before(async () => {
    dir = await makeTempDir("archive-source");
  });
  after(async () => {
    await removeTempDir(dir);
  });

  it("Docker 24 and older: <id>/layer.tar with a symlinked duplicate layer", async () => {
    const image = syntheticImage([base, app, empty, base]);
    const path = join(dir, "legacy.tar");
    await writeTar(path, [
      ...legacySaveEntries(image, ["apolo-test/legacy:1"]),
      { name: "repositories", data: json({ "apolo-test/legacy": { "1": "x" } }) },
    ]);
    const source = await openLocalSource(path);
    try {
      assert.equal(source.format, "docker-archive");
      assert.deepEqual(await source.names(), ["apolo-test/legacy:1"]);
      await assert.rejects(source.resolve("apolo-test/legacy"), NotFoundError); // means :latest
      const resolved = await source.resolve("docker.io/apolo-test/legacy:1");
      assert.equal(resolved.name, "apolo-test/legacy:1");
      assert.equal(resolved.descriptor.mediaType, MediaType.DockerManifest);
      assert.equal(resolved.descriptor.digest, sha256Digest(resolved.bytes));
      const read = await readImage(source);
      assert.equal(read.manifest.config.digest, image.configDigest);
      assert.equal(read.manifest.config.mediaType, MediaType.DockerConfig);
      assert.deepEqual(read.manifest.layers.map((l) => l.digest), image.diffIds);
      assert.deepEqual(read.layers, [base, app, empty, base]);
    } finally {
      await source.close();
    }
  });

  it("Docker 25+: OCI layout inside, manifest.json pointing into blobs/ (plain and gzip layers)", async () => {
    for (const gzip of [false, true]) {
      const image = syntheticImage([base, app], { gzip });
      const path = join(dir, `docker25-${gzip}.tar`);
      await writeTar(path, docker25SaveEntries(image, "apolo-test/modern", "2.0"));
      const source = await openLocalSource(path);
      try {
        assert.deepEqual(await source.names(), ["apolo-test/modern:2.0"]);
        const read = await readImage(source, "docker.io/apolo-test/modern:2.0");
        assert.equal(read.manifest.config.digest, image.configDigest);
        assert.deepEqual(read.manifest.layers.map((l) => l.digest), image.layerDigests);
        assert.deepEqual(
          read.manifest.layers.map((l) => l.mediaType),
          [
            gzip ? MediaType.OciLayerGzip : MediaType.OciLayer,
            gzip ? MediaType.OciLayerGzip : MediaType.OciLayer,
          ],
        );
        // Read through index.json: the stored manifest, its bytes and digest kept.
        const stored = JSON.parse(
          docker25SaveEntries(image, "x", "1").find((e) => e.name === "index.json")!
            .data as string,
        ).manifests[0].digest;
        assert.equal((await source.resolve()).descriptor.digest, stored);
        assert.deepEqual(read.layers, image.layers);
      } finally {
        await source.close();
      }
    }
  });

  it("podman/skopeo style with hard links instead of symlinks, media type by magic bytes", async () => {
    const image = syntheticImage([base, app], { gzip: true });
    const path = join(dir, "hardlinks.tar");
    // Named .tar but gzip inside, and the other way round for the config: the name must not matter.
    await writeTar(path, [
      { name: "first.tar", data: image.layers[0] },
      { name: "second.tar.gz", data: image.layers[1] },
      { name: "l1/layer.tar", type: "hardlink", linkname: "first.tar" },
      { name: "l2/layer.tar", type: "hardlink", linkname: "second.tar.gz" },
      { name: "config.json", data: image.config },
      {
        name: "manifest.json",
        data: json([{
          Config: "config.json",
          RepoTags: ["quay.io/apolo/hard:links"],
          Layers: ["l1/layer.tar", "l2/layer.tar"],
        }]),
      },
    ]);
    const source = await openLocalSource(path);
    try {
      const read = await readImage(source, "quay.io/apolo/hard:links");
      assert.deepEqual(read.manifest.layers.map((l) => l.digest), image.layerDigests);
      assert.ok(read.manifest.layers.every((l) => l.mediaType === MediaType.DockerLayerGzip));
      assert.deepEqual(read.layers, image.layers);
    } finally {
      await source.close();
    }
  });

  it("entries with pax long names (over 255 bytes)", async () => {
    const image = syntheticImage([base]);
    const longDir = `${"very-long-directory-name-".repeat(12)}`;
    const path = join(dir, "pax.tar");
    await writeTar(path, [
      { name: `${longDir}/layer.tar`, data: image.layers[0] },
      { name: `${longDir}/${hex(image.configDigest)}.json`, data: image.config },
      {
        name: "manifest.json",
        data: json([{
          Config: `${longDir}/${hex(image.configDigest)}.json`,
          RepoTags: [`apolo/${"n".repeat(100)}:t`],
          Layers: [`./${longDir}/layer.tar`],
        }]),
      },
    ]);
    const source = await openLocalSource(path);
    try {
      const read = await readImage(source);
      assert.deepEqual(read.layers, [base]);
      assert.equal(read.manifest.config.digest, image.configDigest);
    } finally {
      await source.close();
    }
  });

  it("archives holding several images: choose by RepoTags, list them when not found", async () => {
    const one = syntheticImage([base], { env: ["N=1"] });
    const two = syntheticImage([base, app], { env: ["N=2"] });
    const path = join(dir, "multi.tar");
    const e1 = legacySaveEntries(one, ["apolo/one:latest", "apolo/one:1"]);
    const e2 = legacySaveEntries(two, ["registry.example.com:5000/apolo/two:2"]);
    const m1 = JSON.parse(e1.pop()!.data as string);
    const m2 = JSON.parse(e2.pop()!.data as string);
    await writeTar(path, [...e1, ...e2, { name: "manifest.json", data: json([...m1, ...m2]) }]);
    const source = await openLocalSource(path);
    try {
      assert.deepEqual(await source.names(), [
        "apolo/one:latest",
        "apolo/one:1",
        "registry.example.com:5000/apolo/two:2",
      ]);
      await assert.rejects(source.resolve(), (e: unknown) => {
        assert.ok(e instanceof NotFoundError);
        assert.match(
          e.message,
          /holds 2 images; say which one: apolo\/one:latest = apolo\/one:1, registry/,
        );
        return true;
      });
      await assert.rejects(source.resolve("apolo/three"), (e: unknown) => {
        assert.ok(e instanceof NotFoundError);
        assert.match(
          e.message,
          /apolo\/three not found in .*multi\.tar; it holds: apolo\/one:latest/,
        );
        return true;
      });
      assert.equal((await manifestOf(source, "apolo/one")).config.digest, one.configDigest);
      assert.equal(
        (await manifestOf(source, "docker.io/apolo/one:1")).config.digest,
        one.configDigest,
      );
      assert.equal(
        (await manifestOf(source, "registry.example.com:5000/apolo/two:2")).config.digest,
        two.configDigest,
      );
      // the image ID selects too
      assert.equal((await manifestOf(source, two.configDigest)).layers.length, 2);
    } finally {
      await source.close();
    }
  });

  it("OCI layouts with tag-only ref names, nested indexes, and an unpacked docker save", async () => {
    const one = syntheticImage([base], { gzip: true, env: ["N=1"] });
    const two = syntheticImage([app], { gzip: true, env: ["N=2"] });
    const layout = join(dir, "layout");
    await mkdir(join(layout, "blobs", "sha256"), { recursive: true });
    const put = async (data: Uint8Array) => {
      const d = sha256Digest(data);
      await writeFile(join(layout, "blobs", "sha256", hex(d)), data);
      return { digest: d, size: data.length };
    };
    const manifestFor = async (image: SyntheticImage) => {
      const c = await put(image.config);
      const layers = [];
      for (const l of image.layers) {
        layers.push({ mediaType: MediaType.OciLayerGzip, ...(await put(l)) });
      }
      const bytes = new TextEncoder().encode(json({
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        config: { mediaType: MediaType.OciConfig, ...c },
        layers,
      }));
      return { mediaType: MediaType.OciManifest, ...(await put(bytes)), bytes };
    };
    const m1 = await manifestFor(one);
    const m2 = await manifestFor(two);
    const indexBytes = new TextEncoder().encode(json({
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [
        {
          mediaType: m1.mediaType,
          digest: m1.digest,
          size: m1.size,
          platform: { os: "linux", architecture: "amd64" },
        },
        {
          mediaType: m2.mediaType,
          digest: m2.digest,
          size: m2.size,
          platform: { os: "linux", architecture: "arm64" },
        },
      ],
    }));
    const idx = await put(indexBytes);
    await writeFile(join(layout, "oci-layout"), json({ imageLayoutVersion: "1.0.0" }));
    await writeFile(
      join(layout, "index.json"),
      json({
        schemaVersion: 2,
        manifests: [
          {
            mediaType: MediaType.OciManifest,
            digest: m1.digest,
            size: m1.size,
            annotations: { "org.opencontainers.image.ref.name": "v1" },
          },
          {
            mediaType: MediaType.OciIndex,
            ...idx,
            annotations: { "org.opencontainers.image.ref.name": "multi" },
          },
        ],
      }),
    );
    const source = await openLocalSource(layout);
    try {
      assert.equal(source.format, "oci-layout");
      assert.deepEqual(await source.names(), ["v1", "multi"]);
      assert.equal(
        (await manifestOf(source, "example.com/whatever:v1")).config.digest,
        one.configDigest,
      );
      const top = await source.resolve("multi");
      assert.equal(top.descriptor.mediaType, MediaType.OciIndex);
      assert.deepEqual(top.bytes, indexBytes);
      const child = await source.fetchManifest({
        mediaType: MediaType.OciManifest,
        digest: m2.digest,
        size: m2.size,
      });
      assert.deepEqual(child, m2.bytes);
      const layer = await readAll(
        await source.fetchBlob({
          mediaType: MediaType.OciLayerGzip,
          digest: two.layerDigests[0],
          size: two.layers[0].length,
        }),
      );
      assert.deepEqual(layer, two.layers[0]);
    } finally {
      await source.close();
    }

    // An unpacked docker save (a directory holding manifest.json) is read the same way.
    const unpacked = join(dir, "unpacked");
    await mkdir(unpacked);
    const image = syntheticImage([base, app]);
    for (const spec of legacySaveEntries(image, ["apolo/unpacked:1"], false)) {
      if (spec.type === "dir") await mkdir(join(unpacked, spec.name), { recursive: true });
      else await writeFile(join(unpacked, spec.name), spec.data ?? "");
    }
    const fromDir = await openLocalSource(unpacked);
    try {
      assert.equal(fromDir.format, "docker-directory");
      const read = await readImage(fromDir, "apolo/unpacked:1");
      assert.deepEqual(read.layers.map((l) => Buffer.from(l).length), [base.length, app.length]);
      assert.deepEqual(read.manifest.layers.map((l) => l.digest), image.diffIds);
    } finally {
      await fromDir.close();
    }
  });
});
