/**
 * Fuzzing the manifest, index and config parsers (and `manifest.json` of `docker
 * save`): random bytes and JSON, nesting at and past the limit, layer counts around the
 * limit, mutations of valid documents, and valid documents that must parse to themselves.
 */

import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ImagesError } from "../../lib/errors.ts";
import {
  MAX_JSON_DEPTH,
  MAX_LAYERS,
  MAX_MANIFEST_BYTES,
  parseConfig,
  parseDescriptor,
  parseJson,
  parseManifest,
} from "../../lib/oci/manifest.ts";
import { parsePlatform } from "../../lib/oci/platform.ts";
import { MediaType } from "../../lib/oci/media_types.ts";
import { parseDockerSaveManifest } from "../../lib/archive/layout_files.ts";
import {
  applyJsonMutation,
  casesRun,
  check,
  jsonMutationArb,
  testTimeout,
  typed,
} from "../../testing/fuzz.ts";
import { linearWork } from "../../testing/work.ts";

const encoder = new TextEncoder();
const json = (value: unknown) => encoder.encode(JSON.stringify(value) ?? "");

/** Every parser of the module, called on the same bytes. */
function parseAll(bytes: Uint8Array): void {
  typed(() => parseJson(bytes, "doc"), "parseJson");
  typed(() => parseManifest(bytes, "doc"), "parseManifest");
  typed(() => parseManifest(bytes, "doc", MediaType.OciIndex), "parseManifest as index");
  typed(() => parseManifest(bytes, "doc", MediaType.DockerManifest), "parseManifest as manifest");
  typed(() => parseConfig(bytes, "doc"), "parseConfig");
  typed(() => parseDockerSaveManifest(bytes, "image.tar"), "parseDockerSaveManifest");
}

/** {@linkcode parseAll}, failing when the parsers did more than linear work on `bytes`. */
function parseAllLinear(bytes: Uint8Array): void {
  linearWork("parsers", bytes.length, () => parseAll(bytes));
}

const digest = fc.stringMatching(/^[a-f0-9]{64}$/).map((h) => `sha256:${h}`);
const annotations = fc.option(
  fc.dictionary(fc.string({ minLength: 1, maxLength: 20 }), fc.string({ maxLength: 30 }), {
    maxKeys: 3,
  }),
  { nil: undefined },
);
const descriptor = fc.record(
  {
    mediaType: fc.constantFrom(MediaType.OciLayerGzip, MediaType.DockerLayerGzip, "x/y"),
    digest,
    size: fc.nat(),
    annotations,
  },
  { requiredKeys: ["mediaType", "digest", "size"] },
);
const platformDescriptor = fc.record({
  mediaType: fc.constantFrom(MediaType.OciManifest, MediaType.DockerManifest),
  digest,
  size: fc.nat(),
  platform: fc.record({
    os: fc.constantFrom("linux", "windows"),
    architecture: fc.constantFrom("amd64", "arm64"),
  }),
});
const manifest = fc.record({
  schemaVersion: fc.constant(2),
  mediaType: fc.constantFrom(MediaType.OciManifest, MediaType.DockerManifest),
  config: descriptor,
  layers: fc.array(descriptor, { maxLength: 12 }),
});
const index = fc.record({
  schemaVersion: fc.constant(2),
  mediaType: fc.constantFrom(MediaType.OciIndex, MediaType.DockerManifestList),
  manifests: fc.array(platformDescriptor, { maxLength: 6 }),
});
const config = fc.record({
  architecture: fc.constant("amd64"),
  os: fc.constant("linux"),
  rootfs: fc.record({ type: fc.constant("layers"), diff_ids: fc.array(digest, { maxLength: 12 }) }),
});

/** How deep a JSON value nests (a scalar is 0, `[]` is 1). */
function depthOf(value: unknown): number {
  if (typeof value !== "object" || value === null) return 0;
  const children = Array.isArray(value) ? value : Object.values(value);
  return 1 + children.reduce((m: number, c) => Math.max(m, depthOf(c)), 0);
}

describe("fuzz: manifest, index and config parsers", () => {
  after(() => console.log(casesRun("fuzz_manifest_test.ts").line));

  it(
    "random bytes and text: a value or an ImagesError, fast",
    { timeout: testTimeout(5) },
    async () => {
      await check(
        "random bytes",
        fc.property(
          fc.oneof(
            fc.uint8Array({ maxLength: 2000 }),
            fc.string({ maxLength: 2000, unit: "binary" }).map((s) => encoder.encode(s)),
            fc.array(fc.constantFrom("{", "}", "[", "]", '"', "\\", ":", ",", "1", "a", " "), {
              maxLength: 3000,
            }).map((cs) => encoder.encode(cs.join(""))),
          ),
          (bytes) => linearWork("parsers", bytes.length, () => parseAll(bytes)),
        ),
      );
    },
  );

  it("random JSON: a value or an ImagesError", { timeout: testTimeout(5) }, async () => {
    await check(
      "random JSON",
      fc.property(fc.jsonValue({ maxDepth: 6 }), (value) => {
        parseAllLinear(json(value));
      }),
    );
  });

  it("nesting: refused exactly when deeper than the limit, brackets in strings not counted", {
    timeout: testTimeout(5),
  }, async () => {
    const leaf = fc.oneof(
      fc.constantFrom<unknown>(1, null, "x", '[[[{{{"', "\\[\\{", "]]]}}}", '\\"[[['),
      fc.string({ maxLength: 8 }),
    );
    await check(
      "nesting",
      fc.property(
        fc.integer({ min: 0, max: 300 }),
        fc.array(fc.boolean(), { maxLength: 300 }),
        leaf,
        (depth, kinds, inner) => {
          let value: unknown = inner;
          for (let i = 0; i < depth; i++) value = kinds[i] ? [value] : { k: value, s: "[{" };
          const doc = { schemaVersion: 2, config: value };
          const result = typed(() => parseJson(json(doc), "doc.json"));
          if (depthOf(doc) > MAX_JSON_DEPTH) {
            assert.ok(result instanceof ImagesError, `depth ${depthOf(doc)} accepted`);
            assert.equal(
              result.message,
              `doc.json: JSON nested deeper than ${MAX_JSON_DEPTH} levels`,
            );
          } else assert.deepEqual(result, doc);
        },
      ),
    );
  });

  it(
    "layer counts: refused exactly when over the limit",
    { timeout: testTimeout(20) },
    async () => {
      const layer = {
        mediaType: MediaType.OciLayerGzip,
        digest: "sha256:" + "a".repeat(64),
        size: 1,
      };
      await check(
        "layer counts",
        fc.property(
          fc.oneof(fc.integer({ min: 990, max: 1010 }), fc.integer({ min: 0, max: 20_000 })),
          (count) => {
            const m = typed(() =>
              parseManifest(
                json({
                  schemaVersion: 2,
                  mediaType: MediaType.OciManifest,
                  config: layer,
                  layers: Array(count).fill(layer),
                }),
                "m",
              )
            );
            const c = typed(() =>
              parseConfig(
                json({ rootfs: { type: "layers", diff_ids: Array(count).fill(layer.digest) } }),
                "c",
              )
            );
            if (count > MAX_LAYERS) {
              assert.ok(m instanceof ImagesError && c instanceof ImagesError);
              assert.equal(m.message, `m: ${count} layers is over the limit of ${MAX_LAYERS}`);
              assert.equal(c.message, `c: ${count} layers is over the limit of ${MAX_LAYERS}`);
            } else {
              assert.ok(!(m instanceof ImagesError), String(m));
              assert.ok(!(c instanceof ImagesError), String(c));
            }
          },
        ),
        { scale: 0.25 },
      );
    },
  );

  it(
    "valid manifests, indexes and configs parse to themselves",
    { timeout: testTimeout(5) },
    async () => {
      await check(
        "valid documents",
        fc.property(manifest, index, config, (m, i, c) => {
          const pm = parseManifest(json(m), "m");
          assert.equal(pm.kind, "manifest");
          assert.equal(pm.mediaType, m.mediaType);
          assert.deepEqual(pm.kind === "manifest" && pm.manifest, JSON.parse(JSON.stringify(m)));
          const pi = parseManifest(json(i), "i");
          assert.equal(pi.kind, "index");
          assert.deepEqual(pi.kind === "index" && pi.index, JSON.parse(JSON.stringify(i)));
          assert.deepEqual(parseConfig(json(c), "c"), JSON.parse(JSON.stringify(c)));
        }),
      );
    },
  );

  it(
    "mutated valid documents: a value or an ImagesError",
    { timeout: testTimeout(5) },
    async () => {
      await check(
        "mutated documents",
        fc.property(
          fc.oneof(manifest, index, config) as fc.Arbitrary<unknown>,
          fc.array(jsonMutationArb(), { minLength: 1, maxLength: 4 }),
          (doc, mutations) => {
            let value = doc;
            for (const m of mutations) value = applyJsonMutation(value, m);
            parseAllLinear(json(value));
          },
        ),
      );
    },
  );

  it("descriptors and platforms: random values give a value or an ImagesError", {
    timeout: testTimeout(5),
  }, async () => {
    await check(
      "descriptors",
      fc.property(fc.oneof(fc.jsonValue({ maxDepth: 3 }), descriptor), (value) => {
        typed(() => parseDescriptor(value, "d"));
      }),
    );
    await check(
      "platforms",
      fc.property(fc.string({ maxLength: 40 }), (text) => {
        const p = typed(() => parsePlatform(text));
        if (!(p instanceof ImagesError)) assert.ok(p.os !== "" && p.architecture !== "");
      }),
    );
  });

  it("documents near the size limit: accepted up to 4 MiB, refused above", () => {
    const doc = json({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] });
    for (const size of [MAX_MANIFEST_BYTES - 1, MAX_MANIFEST_BYTES, MAX_MANIFEST_BYTES + 1]) {
      const bytes = new Uint8Array(size).fill(0x20);
      bytes.set(doc);
      const result = typed(() => parseManifest(bytes, "index.json"));
      if (size > MAX_MANIFEST_BYTES) {
        assert.ok(result instanceof ImagesError);
        assert.equal(result.code, "MANIFEST_TOO_LARGE");
      } else assert.ok(!(result instanceof ImagesError));
    }
  });
});
