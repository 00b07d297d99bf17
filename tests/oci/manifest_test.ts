import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  MAX_LAYERS,
  MAX_MANIFEST_BYTES,
  parseConfig,
  parseDescriptor,
  parseManifest,
} from "../../lib/oci/manifest.ts";
import { findPlatform, normalizePlatform, parsePlatform } from "../../lib/oci/platform.ts";
import { MediaType } from "../../lib/oci/media_types.ts";

const encode = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const zero = "sha256:" + "0".repeat(64);

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

  it("refuses a platform named by other than strings, in a config or an index entry", () => {
    const rootfs = { type: "layers", diff_ids: [] };
    assert.throws(
      () => parseConfig(encode({ architecture: "arm", variant: 7, rootfs }), "cfg"),
      /cfg: variant must be a string, got 7/,
    );
    assert.throws(
      () => parseConfig(encode({ os: ["linux"], rootfs }), "cfg"),
      /cfg: os must be a string, got \["linux"\]/,
    );
    const entry = {
      mediaType: MediaType.OciManifest,
      digest: zero,
      size: 1,
      platform: { os: "linux", architecture: "arm", variant: 7 },
    };
    assert.throws(
      () => parseDescriptor(entry, "index.manifests[0]"),
      /index.manifests\[0\].platform: variant must be a string, got 7/,
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

  it("names a platform one way, and finds an index's entry exactly before loosely", () => {
    assert.deepEqual(normalizePlatform(parsePlatform("Linux/aarch64/8")), {
      os: "linux",
      architecture: "arm64",
    });
    assert.deepEqual(normalizePlatform(parsePlatform("linux/x86_64/v1")), {
      os: "linux",
      architecture: "amd64",
    });
    assert.deepEqual(normalizePlatform(parsePlatform("linux/arm/7")), {
      os: "linux",
      architecture: "arm",
      variant: "v7",
    });
    const entry = (platform: string, hex: string) => ({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: `sha256:${hex.repeat(64)}`,
      size: 400,
      platform: parsePlatform(platform),
    });
    const arm = [entry("linux/arm", "a"), entry("linux/arm/v6", "b"), entry("linux/arm/v7", "c")];
    assert.equal(findPlatform(arm, parsePlatform("linux/arm/v7"))?.digest, arm[2].digest);
    assert.equal(findPlatform(arm, parsePlatform("linux/arm/v6"))?.digest, arm[1].digest);
    assert.equal(findPlatform(arm, parsePlatform("linux/arm/v5"))?.digest, arm[0].digest);
    assert.equal(findPlatform(arm, parsePlatform("linux/arm"))?.digest, arm[0].digest);
    const arm64 = [entry("linux/amd64", "d"), entry("linux/arm64/v8", "e")];
    assert.equal(findPlatform(arm64, parsePlatform("linux/aarch64"))?.digest, arm64[1].digest);
    // arm64/v8 is plain arm64 (its only variant), which serves where no exact entry does.
    assert.equal(findPlatform(arm64, parsePlatform("linux/arm64/v9"))?.digest, arm64[1].digest);
    assert.equal(findPlatform(arm64, parsePlatform("linux/riscv64")), undefined);
  });
});
