/**
 * Archives and layouts with path tricks — `../`, absolute paths, symlinks and hard
 * links pointing outside or in a loop — are refused, and nothing outside is touched:
 * a sentinel file next to the work directory keeps its bytes and times, nothing new
 * appears beside it, and nothing is left in the output folder.
 *
 * Each case lives in its own temporary root: `root/outside/sentinel` (what the tricks
 * aim at) and `root/work/` (the archive and the outputs).
 */

import { afterEach, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readdir, readFile, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ArchiveError, ImagesError } from "../../lib/errors.ts";
import { openLocalSource } from "../../lib/archive/local_source.ts";
import { openDockerArchiveDestination } from "../../lib/archive/archive_destination.ts";
import { openOciLayoutDestination } from "../../lib/archive/layout_destination.ts";
import { sha256Digest } from "../../lib/oci/digest.ts";
import { MediaType } from "../../lib/oci/media_types.ts";
import { makeTempDir, removeTempDir } from "../../testing/fs.ts";
import { layerTar, plainCopy, syntheticImage } from "../../testing/tools.ts";
import {
  concat,
  fileEntry,
  gnuLongEntry,
  linkEntry,
  paxEntry,
  paxRecord,
  rawHeader,
  tarOf,
} from "../../testing/fuzz.ts";

const encoder = new TextEncoder();
const json = (value: unknown) => encoder.encode(JSON.stringify(value));
const hex = (digest: string) => digest.slice("sha256:".length);

const image = syntheticImage([layerTar({ "etc/os-release": "ID=paths\n" })]);
const SENTINEL = "sentinel: must never change\n";

/** A valid OCI manifest for the image, its digest and its blob entry name. */
const manifest = json({
  schemaVersion: 2,
  mediaType: MediaType.OciManifest,
  config: { mediaType: MediaType.OciConfig, digest: image.configDigest, size: image.config.length },
  layers: [{
    mediaType: MediaType.OciLayer,
    digest: image.layerDigests[0],
    size: image.layers[0].length,
  }],
});
const manifestDigest = sha256Digest(manifest);
const indexJson = json({
  schemaVersion: 2,
  manifests: [{
    mediaType: MediaType.OciManifest,
    digest: manifestDigest,
    size: manifest.length,
    annotations: { "org.opencontainers.image.ref.name": "1" },
  }],
});
const blob = (digest: string) => `blobs/sha256/${hex(digest)}`;

/** A snapshot of a directory tree: names, sizes, modes, times and contents. */
async function snapshot(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(dir, { recursive: true })).map(String).sort()) {
    const path = join(dir, name);
    const info = await stat(path);
    const content = info.isFile() ? sha256Digest(new Uint8Array(await readFile(path))) : "";
    out.push(`${name} ${info.size} ${info.mode} ${info.mtimeMs} ${info.ctimeMs} ${content}`);
  }
  return out;
}

describe("path tricks are refused without touching anything outside", () => {
  let root: string;
  let outside: string;
  let work: string;
  let before: string[];
  let n = 0;

  beforeEach(async () => {
    root = await makeTempDir("hostile-paths");
    outside = join(root, "outside");
    work = join(root, "work");
    await mkdir(outside);
    await mkdir(work);
    await writeFile(join(outside, "sentinel"), SENTINEL);
    // A manifest, config and layer outside too, with the right bytes: only the path
    // check can stop a reader that follows a link to them.
    await writeFile(join(outside, "manifest"), manifest);
    await writeFile(join(outside, "config"), image.config);
    await writeFile(join(outside, "index.json"), indexJson);
    before = await snapshot(outside);
  });

  afterEach(async () => {
    // Nothing outside changed, nothing appeared beside the two folders.
    assert.deepEqual(await snapshot(outside), before, "the outside folder is untouched");
    assert.equal(await readFile(join(outside, "sentinel"), "utf8"), SENTINEL);
    assert.deepEqual((await readdir(root)).sort(), ["outside", "work"]);
    await removeTempDir(root);
  });

  /**
   * Opens `input`, resolves it and copies it into a docker archive and an OCI layout in
   * fresh output folders; expects an ArchiveError matching `message` and empty outputs.
   */
  async function expectRefused(input: string, message: RegExp): Promise<void> {
    for (const kind of ["docker-archive", "oci-layout"]) {
      const outDir = join(work, `out-${n++}`);
      await mkdir(outDir);
      let error: unknown;
      try {
        const source = await openLocalSource(input);
        try {
          const dest = kind === "docker-archive"
            ? await openDockerArchiveDestination(join(outDir, "out.tar"))
            : await openOciLayoutDestination(join(outDir, "layout"));
          await plainCopy(source, dest);
        } finally {
          await source.close();
        }
      } catch (e) {
        error = e;
      }
      assert.ok(error instanceof ArchiveError, `${kind}: expected an ArchiveError, got ${error}`);
      assert.match(error.message, message);
      assert.deepEqual(await readdir(outDir), [], `${kind}: nothing left in the output folder`);
    }
  }

  async function tarFile(...entries: Uint8Array[]): Promise<string> {
    const path = join(work, `in-${n++}.tar`);
    await writeFile(path, tarOf(...entries));
    return path;
  }

  const ociEntries = () => [
    fileEntry("oci-layout", '{"imageLayoutVersion":"1.0.0"}'),
    fileEntry(blob(image.configDigest), image.config),
    fileEntry(blob(image.layerDigests[0]), image.layers[0]),
  ];

  describe("tar archives", () => {
    it("entry names with ../ or absolute paths", async () => {
      for (
        const name of [
          "../outside/evil",
          "a/../../outside/evil",
          "./../outside/evil",
          `${root}/outside/evil`,
          "/etc/passwd",
        ]
      ) {
        const path = await tarFile(fileEntry(name, "x"), fileEntry("index.json", indexJson));
        await expectRefused(path, /path leaves the archive \(absolute or \.\.\)$/);
      }
      // The same names given by a pax record and by a GNU long name.
      await expectRefused(
        await tarFile(paxEntry(paxRecord("path", "../../outside/evil")), fileEntry("x", "x")),
        /: \.\.\/\.\.\/outside\/evil: path leaves the archive/,
      );
      await expectRefused(
        await tarFile(gnuLongEntry("../outside/evil\0"), fileEntry("x", "x", { format: "gnu" })),
        /: \.\.\/outside\/evil: path leaves the archive/,
      );
      // A ustar prefix that climbs.
      await expectRefused(
        await tarFile(concat([rawHeader({ name: "evil", prefix: "../outside" })])),
        /: \.\.\/outside\/evil: path leaves the archive/,
      );
    });

    it("symlinks pointing outside, relative and absolute, to files and to directories", async () => {
      const cases: [Uint8Array[], RegExp][] = [
        [
          [linkEntry("index.json", "../outside/index.json")],
          /symlink index\.json -> \.\.\/outside\/index\.json points outside the archive$/,
        ],
        [[linkEntry("index.json", join(outside, "index.json"))], /points outside the archive$/],
        [
          [linkEntry("index.json", "blobs/../../outside/index.json")],
          /points outside the archive$/,
        ],
        [
          [
            fileEntry("index.json", indexJson),
            linkEntry(blob(manifestDigest), "../../../outside/manifest"),
          ],
          /symlink blobs\/sha256\/[a-f0-9]{64} -> \.\.\/\.\.\/\.\.\/outside\/manifest points outside the archive$/,
        ],
        // A directory link: blobs -> .. (then blobs/sha256/x is outside).
        [
          [fileEntry("index.json", indexJson), linkEntry("blobs", "..")],
          /symlink blobs -> \.\. points outside the archive$/,
        ],
        [
          [fileEntry("index.json", indexJson), linkEntry("blobs", outside)],
          /points outside the archive$/,
        ],
        // A chain of links that ends outside.
        [
          [
            linkEntry("index.json", "a/b"),
            linkEntry("a", "c"),
            linkEntry("c", "d/.."),
            linkEntry("d", ".."),
          ],
          /points outside the archive$|link leads outside the archive$/,
        ],
      ];
      for (const [entries, message] of cases) {
        await expectRefused(await tarFile(...ociEntries(), ...entries), message);
      }
    });

    it("hard links pointing outside", async () => {
      for (const target of ["../outside/index.json", join(outside, "index.json"), "a/../../x"]) {
        await expectRefused(
          await tarFile(...ociEntries(), linkEntry("index.json", target, true)),
          /: index\.json: hard link to .* leaves the archive$/,
        );
      }
    });

    it("links in a loop: symlinks, hard links, mixed, and a link to itself", async () => {
      const loops: Uint8Array[][] = [
        [linkEntry("index.json", "index.json")],
        [linkEntry("index.json", "a"), linkEntry("a", "b"), linkEntry("b", "a")],
        [linkEntry("index.json", "a", true), linkEntry("a", "b", true), linkEntry("b", "a", true)],
        [linkEntry("index.json", "a"), linkEntry("a", "b", true), linkEntry("b", "index.json")],
        [fileEntry("index.json", indexJson), linkEntry("blobs", "blobs")],
        [fileEntry("index.json", indexJson), linkEntry("blobs", "x/y"), linkEntry("x", "blobs/z")],
      ];
      for (const entries of loops) {
        await expectRefused(
          await tarFile(...ociEntries(), ...entries),
          /too many levels of links \(a link loop\?\)|over the 4096-character limit/,
        );
      }
    });

    it("docker save: manifest.json paths leaving the archive, a layer linked outside", async () => {
      const config = `${hex(image.configDigest)}.json`;
      const save = (c: string, layers: string[], extra: Uint8Array[] = []) =>
        tarFile(
          fileEntry(config, image.config),
          fileEntry("l/layer.tar", image.layers[0]),
          fileEntry("manifest.json", json([{ Config: c, RepoTags: ["a:b"], Layers: layers }])),
          ...extra,
        );
      await expectRefused(
        await save("../outside/config", ["l/layer.tar"]),
        /manifest\.json: image 0: Config "\.\.\/outside\/config" leaves the archive$/,
      );
      await expectRefused(
        await save(config, [join(outside, "sentinel")]),
        /manifest\.json: image 0: Layers\[0\] ".*" leaves the archive$/,
      );
      await expectRefused(
        await save(config, ["x/layer.tar"], [linkEntry("x/layer.tar", "../../outside/sentinel")]),
        /symlink x\/layer\.tar -> \.\.\/\.\.\/outside\/sentinel points outside the archive$/,
      );
      await expectRefused(
        await save(config, ["x/layer.tar"], [linkEntry("x", "..")]),
        /symlink x -> \.\. points outside the archive$/,
      );
    });
  });

  describe("layout directories", () => {
    /** An OCI layout directory with the image's blobs; `tweak` adds the trick. */
    async function layout(tweak: (dir: string) => Promise<void>): Promise<string> {
      const dir = join(work, `layout-${n++}`);
      await mkdir(join(dir, "blobs", "sha256"), { recursive: true });
      await writeFile(join(dir, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
      await writeFile(join(dir, blob(image.configDigest)), image.config);
      await writeFile(join(dir, blob(image.layerDigests[0])), image.layers[0]);
      await tweak(dir);
      return dir;
    }

    it("a blob that is a link to a file outside (with the right bytes) is refused", async () => {
      const relative = await layout(async (dir) => {
        await writeFile(join(dir, "index.json"), indexJson);
        await symlink("../../../../outside/manifest", join(dir, blob(manifestDigest)));
      });
      await expectRefused(
        relative,
        /blobs\/sha256\/[a-f0-9]{64}: is a link pointing outside the directory$/,
      );
      const absolute = await layout(async (dir) => {
        await writeFile(join(dir, "index.json"), indexJson);
        await symlink(join(outside, "manifest"), join(dir, blob(manifestDigest)));
      });
      await expectRefused(absolute, /is a link pointing outside the directory$/);
    });

    it("index.json, blobs/ and manifest.json linked outside", async () => {
      await expectRefused(
        await layout((dir) => symlink(join(outside, "index.json"), join(dir, "index.json"))),
        /: index\.json: is a link pointing outside the directory$/,
      );
      await expectRefused(
        await layout(async (dir) => {
          await writeFile(join(dir, "index.json"), indexJson);
          await symlink("../outside", join(dir, "blobs", "elsewhere"));
          await symlink(join(outside, "manifest"), join(dir, blob(manifestDigest)));
        }),
        /is a link pointing outside the directory$/,
      );
      await expectRefused(
        await layout((dir) => symlink("../../outside/sentinel", join(dir, "manifest.json"))),
        /: manifest\.json: is a link pointing outside the directory$/,
      );
    });

    it("links in a loop", async () => {
      await expectRefused(
        await layout(async (dir) => {
          await symlink("a", join(dir, "index.json"));
          await symlink("b", join(dir, "a"));
          await symlink("a", join(dir, "b"));
        }),
        /: index\.json: too many levels of symbolic links \(a link loop\?\)$/,
      );
      await expectRefused(
        await layout(async (dir) => {
          await writeFile(join(dir, "index.json"), indexJson);
          await symlink(hex(manifestDigest), join(dir, blob(manifestDigest)));
        }),
        /too many levels of symbolic links \(a link loop\?\)$/,
      );
    });

    it("a docker save directory whose manifest.json climbs out", async () => {
      const dir = join(work, `docker-${n++}`);
      await mkdir(dir);
      await writeFile(
        join(dir, "manifest.json"),
        json([{ Config: "../outside/config", RepoTags: ["a:b"], Layers: [] }]),
      );
      await expectRefused(
        dir,
        /manifest\.json: image 0: Config "\.\.\/outside\/config" leaves the archive$/,
      );
    });
  });

  describe("layout destinations", () => {
    it("an existing layout whose blobs/sha256 links outside is refused before writing", async () => {
      const dest = join(work, "dest");
      await mkdir(join(dest, "blobs"), { recursive: true });
      await writeFile(join(dest, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
      await symlink("../../../outside", join(dest, "blobs", "sha256"));
      let error: unknown;
      try {
        await openOciLayoutDestination(dest);
      } catch (e) {
        error = e;
      }
      assert.ok(error instanceof ImagesError, String(error));
      assert.match(
        error.message,
        /blobs\/sha256: is a link to .*outside: blobs must be stored inside/,
      );
    });
  });
});
