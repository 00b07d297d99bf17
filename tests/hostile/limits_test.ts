/**
 * Limits on hostile input, each with the message a user sees: manifests and indexes
 * over 4 MiB, JSON nested absurdly deep, more than 1,000 layers, tar entries claiming
 * more bytes than the file has, extended headers and names without bound, and paths
 * or link chains that would make lookups cost time or memory without bound.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdir, open, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ArchiveError, ImagesError } from "../../lib/errors.ts";
import { openLocalSource } from "../../lib/archive/local_source.ts";
import { TarIndex } from "../../lib/archive/tar_index.ts";
import {
  MAX_JSON_DEPTH,
  MAX_LAYERS,
  MAX_MANIFEST_BYTES,
  parseConfig,
  parseManifest,
} from "../../lib/oci/manifest.ts";
import { sha256Digest } from "../../lib/oci/digest.ts";
import { MediaType } from "../../lib/oci/media_types.ts";
import { makeTempDir, removeTempDir } from "../../testing/fs.ts";
import { layerTar, syntheticImage } from "../../testing/tools.ts";
import {
  base256,
  concat,
  fileEntry,
  gnuLongEntry,
  heapUsed,
  linkEntry,
  paxEntry,
  paxRecord,
  rawHeader,
  tarOf,
} from "../../testing/fuzz.ts";
import { linearWork, linearWorkAsync } from "../../testing/work.ts";
import { MAX_PATH_LENGTH } from "../../lib/archive/tar_path.ts";

const encoder = new TextEncoder();

/** How many links a resolution follows at most (`MAX_LINK_HOPS` of lib/archive/tar_index.ts). */
const LINK_HOPS = 64;
const json = (value: unknown) => encoder.encode(JSON.stringify(value));
const hex = (digest: string) => digest.slice("sha256:".length);
const LIMIT = `${MAX_MANIFEST_BYTES}-byte limit`;

/** A valid JSON document padded with spaces to exactly `size` bytes. */
function paddedJson(value: unknown, size: number): Uint8Array {
  const doc = json(value);
  const out = new Uint8Array(size).fill(0x20);
  out.set(doc);
  return out;
}

/** The error `fn` rejects with; fails if it resolves or throws something untyped. */
async function refusal(fn: () => Promise<unknown>): Promise<ImagesError> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof ImagesError, `expected an ImagesError, got ${e}`);
    return e;
  }
  assert.fail("expected a refusal");
}

/** Opens `path` as a local source and resolves its only image, closing it after. */
async function resolveOnly(path: string): Promise<void> {
  const source = await openLocalSource(path);
  try {
    await source.resolve();
  } finally {
    await source.close();
  }
}

const image = syntheticImage([layerTar({ "a.txt": "a" })]);
const configEntry = `blobs/sha256/${hex(image.configDigest)}`;
const layerEntry = `blobs/sha256/${hex(image.layerDigests[0])}`;

/** An OCI layout archive whose index.json points at `manifest` (a blob). */
function ociArchive(manifest: Uint8Array, extra: Uint8Array[] = []): Uint8Array {
  const digest = sha256Digest(manifest);
  return tarOf(
    fileEntry("oci-layout", '{"imageLayoutVersion":"1.0.0"}'),
    fileEntry(
      "index.json",
      json({
        schemaVersion: 2,
        manifests: [{ mediaType: MediaType.OciManifest, digest, size: manifest.length }],
      }),
    ),
    fileEntry(`blobs/sha256/${hex(digest)}`, manifest),
    fileEntry(configEntry, image.config),
    fileEntry(layerEntry, image.layers[0]),
    ...extra,
  );
}

function ociManifest(layers: number): Uint8Array {
  return json({
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: {
      mediaType: MediaType.OciConfig,
      digest: image.configDigest,
      size: image.config.length,
    },
    layers: Array.from({ length: layers }, () => ({
      mediaType: MediaType.OciLayer,
      digest: image.layerDigests[0],
      size: image.layers[0].length,
    })),
  });
}

describe("limits on hostile input, with clear errors", () => {
  let dir: string;
  let n = 0;
  before(async () => {
    dir = await makeTempDir("hostile-limits");
  });
  after(async () => {
    await removeTempDir(dir);
  });

  /** Writes an archive to a fresh path in the temp dir. */
  async function archive(bytes: Uint8Array): Promise<string> {
    const path = join(dir, `case-${n++}.tar`);
    await writeFile(path, bytes);
    return path;
  }

  describe("manifest or index over 4 MiB", () => {
    it("the parser refuses one byte over, names the document and the limit", () => {
      const bytes = paddedJson({ schemaVersion: 2, manifests: [] }, MAX_MANIFEST_BYTES + 1);
      assert.throws(() => parseManifest(bytes, "index.json"), (e: unknown) => {
        assert.ok(e instanceof ImagesError);
        assert.equal(e.code, "MANIFEST_TOO_LARGE");
        assert.equal(e.message, `index.json: ${MAX_MANIFEST_BYTES + 1} bytes is over the ${LIMIT}`);
        return true;
      });
      assert.equal(
        parseManifest(bytes.subarray(0, MAX_MANIFEST_BYTES), "index.json").kind,
        "index",
      );
    });

    it("index.json over 4 MiB in an OCI archive and an OCI layout directory", async () => {
      const big = paddedJson({ schemaVersion: 2, manifests: [] }, MAX_MANIFEST_BYTES + 1);
      const path = await archive(
        tarOf(fileEntry("oci-layout", "{}"), fileEntry("index.json", big)),
      );
      const e = await refusal(() => openLocalSource(path));
      assert.ok(e instanceof ArchiveError);
      assert.equal(
        e.message,
        `${path}: index.json: ${MAX_MANIFEST_BYTES + 1} bytes is over the ${LIMIT}`,
      );

      const layout = join(dir, `layout-${n++}`);
      await mkdir(layout);
      await writeFile(join(layout, "oci-layout"), "{}");
      await writeFile(join(layout, "index.json"), big);
      const d = await refusal(() => openLocalSource(layout));
      assert.equal(
        d.message,
        `${layout}: index.json: ${MAX_MANIFEST_BYTES + 1} bytes is over the ${LIMIT}`,
      );
    });

    it("manifest.json over 4 MiB in a docker save archive", async () => {
      const big = paddedJson([{ Config: "c.json", Layers: [] }], MAX_MANIFEST_BYTES + 1);
      const path = await archive(tarOf(fileEntry("manifest.json", big)));
      const e = await refusal(() => openLocalSource(path));
      assert.equal(
        e.message,
        `${path}: manifest.json: ${MAX_MANIFEST_BYTES + 1} bytes is over the ${LIMIT}`,
      );
    });

    it("a manifest blob over 4 MiB listed in index.json", async () => {
      const manifest = paddedJson(
        JSON.parse(new TextDecoder().decode(ociManifest(1))),
        MAX_MANIFEST_BYTES + 1,
      );
      const path = await archive(ociArchive(manifest));
      const e = await refusal(() => resolveOnly(path));
      const entry = `blobs/sha256/${hex(sha256Digest(manifest))}`;
      assert.equal(
        e.message,
        `${path}: ${entry}: ${MAX_MANIFEST_BYTES + 1} bytes is over the ${LIMIT}`,
      );
    });

    it("a 9 GiB manifest.json entry (sparse file) is refused without being read", async () => {
      const size = 9 * 2 ** 30;
      const path = join(dir, `sparse-${n++}.tar`);
      const handle = await open(path, "w");
      try {
        await handle.write(rawHeader({ name: "manifest.json", size }), 0, 512, 0);
        await handle.truncate(512 + size + 1024);
      } finally {
        await handle.close();
      }
      const heap = heapUsed();
      const e = await refusal(() => openLocalSource(path));
      assert.equal(e.message, `${path}: manifest.json: ${size} bytes is over the ${LIMIT}`);
      assert.ok(heapUsed() - heap < 64 * 2 ** 20, "nothing of the size was allocated");
      await rm(path);
    });
  });

  describe("JSON nested absurdly deep", () => {
    const deep = (depth: number) => encoder.encode("[".repeat(depth) + "]".repeat(depth));
    const message = `JSON nested deeper than ${MAX_JSON_DEPTH} levels`;

    it("the parsers refuse it before JSON.parse can overflow the stack", () => {
      for (const depth of [MAX_JSON_DEPTH + 1, 10_000, 1_000_000]) {
        for (const parse of [parseManifest, parseConfig]) {
          assert.throws(() => parse(deep(depth), "doc"), (e: unknown) => {
            assert.ok(e instanceof ImagesError);
            assert.equal(e.message, `doc: ${message}`);
            return true;
          });
        }
      }
      // Exactly at the limit, the nesting is not what is wrong.
      assert.throws(() => parseManifest(deep(MAX_JSON_DEPTH), "doc"), /expected a JSON object/);
    });

    it("in index.json, manifest.json and a config inside archives", async () => {
      const nested = encoder.encode(
        `{"schemaVersion":2,"manifests":${"[".repeat(5000)}${"]".repeat(5000)}}`,
      );
      const oci = await archive(
        tarOf(fileEntry("oci-layout", "{}"), fileEntry("index.json", nested)),
      );
      assert.equal(
        (await refusal(() => openLocalSource(oci))).message,
        `${oci}: index.json: ${message}`,
      );

      const docker = await archive(tarOf(fileEntry("manifest.json", "[".repeat(100_000))));
      assert.equal(
        (await refusal(() => openLocalSource(docker))).message,
        `${docker}: manifest.json: ${message}`,
      );

      const config = encoder.encode(
        `{"rootfs":{"diff_ids":[]},"x":${"[".repeat(200)}${"]".repeat(200)}}`,
      );
      const withConfig = await archive(
        tarOf(
          fileEntry("c.json", config),
          fileEntry("manifest.json", json([{ Config: "c.json", RepoTags: ["a:b"], Layers: [] }])),
        ),
      );
      assert.equal(
        (await refusal(() => resolveOnly(withConfig))).message,
        `${withConfig}: c.json: ${message}`,
      );
    });
  });

  describe("more than 1,000 layers", () => {
    it("a manifest and a config with 1,001 layers", () => {
      assert.throws(
        () => parseManifest(ociManifest(MAX_LAYERS + 1), "m"),
        { message: `m: ${MAX_LAYERS + 1} layers is over the limit of ${MAX_LAYERS}` },
      );
      const diffIds = Array(MAX_LAYERS + 1).fill(image.diffIds[0]);
      assert.throws(
        () => parseConfig(json({ rootfs: { type: "layers", diff_ids: diffIds } }), "c"),
        { message: `c: ${MAX_LAYERS + 1} layers is over the limit of ${MAX_LAYERS}` },
      );
      assert.equal(parseManifest(ociManifest(MAX_LAYERS), "m").kind, "manifest");
    });

    it("in an OCI archive and in a docker save manifest.json", async () => {
      const manifest = ociManifest(MAX_LAYERS + 1);
      const oci = await archive(ociArchive(manifest));
      assert.equal(
        (await refusal(() => resolveOnly(oci))).message,
        `${oci}: blobs/sha256/${hex(sha256Digest(manifest))}: ` +
          `${MAX_LAYERS + 1} layers is over the limit of ${MAX_LAYERS}`,
      );
      const layers = Array(MAX_LAYERS + 1).fill("l/layer.tar");
      const docker = await archive(
        tarOf(
          fileEntry("manifest.json", json([{ Config: "c.json", RepoTags: [], Layers: layers }])),
        ),
      );
      assert.equal(
        (await refusal(() => openLocalSource(docker))).message,
        `${docker}: manifest.json: image 0: ${
          MAX_LAYERS + 1
        } layers is over the limit of ${MAX_LAYERS}`,
      );
    });
  });

  describe("a tar entry claiming a size beyond the file", () => {
    it("octal, base-256 and pax sizes past the end are refused, naming entry, size and offset", async () => {
      const cases: [string, Uint8Array, number][] = [
        ["octal", rawHeader({ name: "manifest.json", size: 4096 }), 4096],
        ["base-256", rawHeader({ name: "manifest.json", size: base256(2 ** 40) }), 2 ** 40],
        [
          "near 2^53",
          rawHeader({ name: "manifest.json", size: base256(2 ** 53 - 1) }),
          2 ** 53 - 1,
        ],
        [
          "pax size",
          concat([
            paxEntry(paxRecord("size", String(2 ** 50))),
            rawHeader({ name: "manifest.json" }),
          ]),
          2 ** 50,
        ],
      ];
      for (const [what, entries, size] of cases) {
        const bytes = concat([entries, new Uint8Array(1024)]);
        const path = await archive(bytes);
        const e = await refusal(() => TarIndex.open(path));
        const offset = bytes.length - 1024;
        assert.equal(
          e.message,
          `${path}: manifest.json: truncated: the entry claims ${size} bytes at offset ${offset}, ` +
            `but the file ends at ${bytes.length}`,
          what,
        );
        assert.equal((await refusal(() => openLocalSource(path))).message, e.message, what);
      }
    });

    it("sizes that are not numbers: beyond 2^53, negative, pax text", async () => {
      const beyond = await archive(
        tarOf(fileEntry("x", ""), rawHeader({ name: "a", size: base256(2n ** 60n) })),
      );
      assert.match(
        (await refusal(() => TarIndex.open(beyond))).message,
        /has an invalid size field/,
      );
      const negative = await archive(
        tarOf(fileEntry("x", ""), rawHeader({ name: "a", size: new Uint8Array(12).fill(0xff) })),
      );
      assert.match(
        (await refusal(() => TarIndex.open(negative))).message,
        /has an invalid size field/,
      );
      const text = await archive(tarOf(paxEntry(paxRecord("size", "-1")), fileEntry("a", "")));
      assert.equal(
        (await refusal(() => TarIndex.open(text))).message,
        `${text}: a: invalid size "-1"`,
      );
    });

    it("an entry that ends exactly at the end of the file is fine", async () => {
      const path = await archive(fileEntry("a", "abc"));
      const index = await TarIndex.open(path);
      try {
        assert.equal(new TextDecoder().decode(await index.readEntry("a", 10)), "abc");
      } finally {
        await index.close();
      }
    });
  });

  describe("extended headers and names without bound", () => {
    it("a pax header over 1 MiB, and pax records with absurd lengths", async () => {
      const big = await archive(tarOf(paxEntry("x".repeat(2 * 2 ** 20)), fileEntry("a", "")));
      assert.equal(
        (await refusal(() => TarIndex.open(big))).message,
        `${big}: PaxHeaders/x: extended header at offset 0 is ${
          2 * 2 ** 20
        } bytes, over the 1048576-byte limit`,
      );
      for (
        const record of [
          "99999999999999999999 path=a\n",
          "9007199254740993 path=a\n",
          "3 path=a\n",
          "x path=a\n",
        ]
      ) {
        const path = await archive(tarOf(paxEntry(record), fileEntry("a", "")));
        assert.equal(
          (await refusal(() => TarIndex.open(path))).message,
          `${path}: PaxHeaders/x: malformed pax header at offset 0`,
          record,
        );
      }
    });

    it("a GNU long name that never ends: past the file, or longer than a path can be", async () => {
      const past = await archive(
        concat([
          rawHeader({ name: "././@LongLink", typeflag: "L", size: 10 * 2 ** 20, format: "gnu" }),
          new Uint8Array(2048),
        ]),
      );
      assert.match(
        (await refusal(() => TarIndex.open(past))).message,
        /: \.\/\.\/@LongLink: truncated: the entry claims 10485760 bytes at offset 512, but the file ends at 2560$/,
      );
      const long = await archive(tarOf(gnuLongEntry("n".repeat(100_000)), fileEntry("short", "x")));
      const e = await refusal(() => TarIndex.open(long));
      assert.match(
        e.message,
        /name at offset \d+ is 100000 characters long, over the 4096-character limit$/,
      );
      assert.ok(e.message.length < 600, "the name is shortened in the message");
    });

    it("a link whose target is longer than a path can be", async () => {
      const path = await archive(
        tarOf(
          paxEntry(paxRecord("linkpath", "a/".repeat(200_000) + "b")),
          linkEntry("manifest.json", ""),
        ),
      );
      // Refused by its length, in work linear in the archive's size (not walked).
      const size = (await stat(path)).size;
      const refused = await linearWorkAsync(
        "openLocalSource",
        size,
        () => refusal(() => openLocalSource(path)),
      );
      assert.match(
        refused.message,
        /manifest.json: link target at offset \d+ is 400001 characters long, over the 4096-character limit$/,
      );
    });

    it("a link chain that grows at each hop stops at the hop or length limit, quickly", async () => {
      const path = await archive(
        tarOf(linkEntry("x", "x/" + "y/".repeat(100) + "z"), fileEntry("y", "")),
      );
      const index = await TarIndex.open(path);
      try {
        // At most LINK_HOPS hops, each on a path of at most MAX_PATH_LENGTH characters.
        assert.throws(
          () => linearWork("resolve", LINK_HOPS * MAX_PATH_LENGTH, () => index.resolve("x/q")),
          (e: unknown) => {
            assert.ok(e instanceof ArchiveError, String(e));
            assert.match(e.message, /too many levels of links|over the 4096-character limit/);
            return true;
          },
        );
      } finally {
        await index.close();
      }
    });

    it("a manifest.json layer path of megabytes is refused quickly, not walked", async () => {
      const layers = ["a/".repeat(1_500_000) + "layer.tar"];
      const path = await archive(
        tarOf(
          fileEntry(`${hex(image.configDigest)}.json`, image.config),
          fileEntry(
            "manifest.json",
            json([{
              Config: `${hex(image.configDigest)}.json`,
              RepoTags: ["a:b"],
              Layers: layers,
            }]),
          ),
        ),
      );
      const size = (await stat(path)).size;
      const e = await linearWorkAsync("resolve", size, () => refusal(() => resolveOnly(path)));
      assert.match(e.message, /path is 3000009 characters long, over the 4096-character limit$/);
    });

    it("more entries than asked for", async () => {
      const path = await archive(
        tarOf(...Array.from({ length: 20 }, (_, i) => fileEntry(`f${i}`, ""))),
      );
      assert.equal(
        (await refusal(() => TarIndex.open(path, { maxEntries: 10 }))).message,
        `${path}: more than 10 entries`,
      );
    });
  });

  describe("things that are not archives", () => {
    it("a named pipe is refused at once instead of blocking the open", {
      timeout: 60_000,
    }, async (t) => {
      const fifo = join(dir, `fifo-${n++}`);
      if (spawnSync("mkfifo", [fifo]).status !== 0) {
        t.skip("mkfifo is not available");
        return;
      }
      // Opening a pipe nobody writes to would block for ever: refused, the test ends
      // (its timeout is only the guard against that hang).
      for (const fn of [() => openLocalSource(fifo), () => TarIndex.open(fifo)]) {
        const e = await refusal(fn);
        assert.match(e.message, /not a regular file/);
      }
    });

    it("a device, a missing path and a path through a file", async () => {
      assert.match(
        (await refusal(() => openLocalSource("/dev/null"))).message,
        /^\/dev\/null: not a regular file or directory/,
      );
      const missing = join(dir, "missing.tar");
      assert.equal(
        (await refusal(() => openLocalSource(missing))).message,
        `${missing}: no such file or directory`,
      );
      const file = await archive(fileEntry("a", ""));
      assert.equal(
        (await refusal(() => openLocalSource(join(file, "x")))).message,
        `${join(file, "x")}: a component of the path is not a directory`,
      );
    });
  });
});
