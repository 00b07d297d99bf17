import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { ArchiveError } from "../../lib/errors.ts";
import { encodeTarHeader } from "../../lib/archive/tar_header.ts";
import { openDockerArchiveDestination } from "../../lib/archive/archive_destination.ts";
import { openLocalSource } from "../../lib/archive/local_source.ts";
import { listDir, makeTempDir, removeTempDir } from "../../testing/fs.ts";
import {
  docker25SaveEntries,
  layerTar,
  legacySaveEntries,
  plainCopy,
  syntheticImage,
  type TarSpec,
  writeTar,
} from "../../testing/tools.ts";

const hex = (digest: string) => digest.slice("sha256:".length);
const json = (value: unknown) => JSON.stringify(value);

const base = layerTar({ "etc/os-release": "ID=test\n" });
const app = layerTar({ "app/data.txt": "data\n".repeat(1000) });
const plain = syntheticImage([base, app]);
const gzipped = syntheticImage([base, app], { gzip: true });

/** Replaces the data of the entry called `name`. */
function withData(entries: TarSpec[], name: string, data: string | Uint8Array): TarSpec[] {
  return entries.map((e) => (e.name === name ? { ...e, data } : e));
}

function without(entries: TarSpec[], name: string): TarSpec[] {
  return entries.filter((e) => e.name !== name);
}

/** Flips one byte in the middle of some bytes. */
function corrupt(bytes: Uint8Array): Uint8Array {
  const copy = bytes.slice();
  copy[Math.floor(copy.length / 2)] ^= 0x55;
  return copy;
}

describe("bad input: errors name the file and the entry, nothing half-written is left", () => {
  let dir: string;
  let input: string;
  let outDir: string;
  before(async () => {
    dir = await makeTempDir("archive-errors");
  });
  after(async () => {
    await removeTempDir(dir);
  });

  let n = 0;
  /** Copies `input` into a docker archive; expects an ArchiveError and no output file. */
  async function expectFailure(entry: string | undefined, message: RegExp): Promise<ArchiveError> {
    outDir = join(dir, `out-${n++}`);
    await mkdir(outDir);
    const out = join(outDir, "out.tar");
    let error: unknown;
    try {
      const source = await openLocalSource(input);
      try {
        await plainCopy(source, await openDockerArchiveDestination(out));
      } finally {
        await source.close();
      }
    } catch (e) {
      error = e;
    }
    assert.ok(error instanceof ArchiveError, `expected an ArchiveError, got ${error}`);
    assert.equal(error.file, input);
    assert.equal(error.entry, entry);
    assert.match(error.message, message);
    assert.ok(error.message.startsWith(`${input}: ${entry === undefined ? "" : `${entry}: `}`));
    assert.deepEqual(await listDir(outDir), [], "no output file left");
    return error;
  }

  async function tarInput(entries: TarSpec[]): Promise<void> {
    input = join(dir, `in-${n++}.tar`);
    await writeTar(input, entries);
  }

  it("a truncated tar", async () => {
    await tarInput(legacySaveEntries(plain, ["a:b"]));
    const bytes = await readFile(input);
    await writeFile(input, bytes.subarray(0, 3500)); // inside the first layer.tar's data
    await expectFailure(
      legacySaveEntries(plain, ["a:b"]).find((e) => e.name.endsWith("/layer.tar"))!.name,
      /truncated: the entry claims \d+ bytes at offset 3072, but the file ends at 3500/,
    );
    await writeFile(input, bytes.subarray(0, 2600)); // inside the header of that layer.tar
    await expectFailure(undefined, /truncated: the file ends inside a header block at offset 2560/);
  });

  it("a header checksum mismatch", async () => {
    await tarInput(legacySaveEntries(plain, ["a:b"]));
    const bytes = new Uint8Array(await readFile(input));
    bytes[512 * 3 + 20] ^= 0xff; // the header of the fourth entry (dir, VERSION, json, layer.tar)
    await writeFile(input, bytes);
    await expectFailure(undefined, /header checksum mismatch at offset 1536/);
  });

  it("not a tar at all (text, gzip-compressed tar)", async () => {
    input = join(dir, "text.tar");
    await writeFile(input, "hello, I am not an archive\n".repeat(50));
    await expectFailure(undefined, /not a tar archive: no valid tar header at offset 0/);
    input = join(dir, "image.tar.gz");
    await writeFile(input, gzipSync(layerTar({ "manifest.json": "[]" })));
    await expectFailure(undefined, /not a tar archive: it is gzip-compressed/);
  });

  it("manifest.json (and index.json) missing", async () => {
    await tarInput(without(legacySaveEntries(plain, ["a:b"]), "manifest.json"));
    await expectFailure("manifest.json", /not found, and no index.json either/);
  });

  it("manifest.json or index.json malformed", async () => {
    const entries = legacySaveEntries(plain, ["a:b"]);
    await tarInput(withData(entries, "manifest.json", "{not json"));
    await expectFailure("manifest.json", /not valid JSON/);
    await tarInput(withData(entries, "manifest.json", json({ Config: "x" })));
    await expectFailure("manifest.json", /expected a JSON array of images/);
    await tarInput(withData(entries, "manifest.json", json([{ Config: "c.json", Layers: "x" }])));
    await expectFailure("manifest.json", /image 0: Layers must be an array/);
    const oci = without(docker25SaveEntries(gzipped, "a/b", "1"), "manifest.json");
    await tarInput(withData(oci, "index.json", "[1, 2"));
    await expectFailure("index.json", /not valid JSON/);
    await tarInput(
      withData(oci, "index.json", json({ schemaVersion: 2, manifests: [{ digest: "sha256:12" }] })),
    );
    await expectFailure("index.json", /manifests\[0\]/);
  });

  it("a config or layer listed but absent", async () => {
    const entries = legacySaveEntries(plain, ["a:b"]);
    await tarInput(without(entries, `${hex(plain.configDigest)}.json`));
    await expectFailure(
      `${hex(plain.configDigest)}.json`,
      /config listed in manifest.json is not in the archive/,
    );
    const layer = entries.filter((e) => e.name.endsWith("/layer.tar"))[1].name;
    await tarInput(without(entries, layer));
    await expectFailure(layer, /layer 1 listed in manifest.json is not in the archive/);
    // OCI archive: a layer blob missing
    const oci = without(docker25SaveEntries(gzipped, "a/b", "1"), "manifest.json");
    const blob = `blobs/sha256/${hex(gzipped.layerDigests[1])}`;
    await tarInput(without(oci, blob));
    await expectFailure(blob, /layer 1 of blobs\/sha256\/[a-f0-9]{64} is not in the archive/);
  });

  it("a blob whose SHA-256 is not the one in its name or descriptor", async () => {
    // A compressed layer of a Docker 25+ archive: found while it streams.
    const entries = docker25SaveEntries(gzipped, "a/b", "1");
    const layer = `blobs/sha256/${hex(gzipped.layerDigests[1])}`;
    await tarInput(withData(entries, layer, corrupt(gzipped.layers[1])));
    await expectFailure(
      layer,
      /SHA-256 is sha256:[a-f0-9]{64}, not the sha256:[a-f0-9]{64} its name says/,
    );
    // The config: found before anything is copied.
    const config = `blobs/sha256/${hex(gzipped.configDigest)}`;
    await tarInput(
      withData(entries, config, json({ rootfs: { type: "layers", diff_ids: gzipped.diffIds } })),
    );
    await expectFailure(config, /is \d+ bytes, but the config of blobs\/sha256\/.* says \d+/);
    // An OCI archive's manifest blob.
    const oci = without(entries, "manifest.json");
    const index = JSON.parse(oci.find((e) => e.name === "index.json")!.data as string);
    const manifest = `blobs/sha256/${hex(index.manifests[0].digest)}`;
    const stored = oci.find((e) => e.name === manifest)!.data as Uint8Array;
    await tarInput(withData(oci, manifest, corrupt(stored)));
    await expectFailure(manifest, /its name and descriptor say/);
  });

  it("a path leaving the archive: .., absolute, a symlink pointing out", async () => {
    const entries = legacySaveEntries(plain, ["a:b"]);
    await tarInput(entries);
    // Our writer refuses such a name, so it is put in front by hand.
    const evil = new Uint8Array(1024);
    evil.set(encodeTarHeader({ name: "../../evil", size: 1 }));
    await writeFile(input, Buffer.concat([evil, await readFile(input)]));
    await expectFailure("../../evil", /path leaves the archive/);
    const manifest = JSON.parse(entries.find((e) => e.name === "manifest.json")!.data as string);
    manifest[0].Layers[0] = "../../../etc/passwd";
    await tarInput(withData(entries, "manifest.json", json(manifest)));
    await expectFailure(
      "manifest.json",
      /Layers\[0\] "..\/..\/..\/etc\/passwd" leaves the archive/,
    );
    const layer = entries.find((e) => e.name.endsWith("/layer.tar"))!.name;
    await tarInput(
      entries.map((e) =>
        e.name === layer ? { name: layer, type: "symlink", linkname: "../../etc/passwd" } : e
      ),
    );
    await expectFailure(
      layer,
      /symlink .*layer\.tar -> \.\.\/\.\.\/etc\/passwd points outside the archive/,
    );
    await tarInput(
      entries.map((e) =>
        e.name === layer ? { name: layer, type: "symlink", linkname: "/etc/passwd" } : e
      ),
    );
    await expectFailure(layer, /points outside the archive/);
  });

  it("a symlink pointing out of an OCI layout directory", async () => {
    const layout = join(dir, "layout");
    await mkdir(join(layout, "blobs", "sha256"), { recursive: true });
    const outside = join(dir, "outside.json");
    await writeFile(outside, json({ schemaVersion: 2, manifests: [] }));
    await writeFile(join(layout, "oci-layout"), json({ imageLayoutVersion: "1.0.0" }));
    await symlink(outside, join(layout, "index.json"));
    input = layout;
    await expectFailure("index.json", /is a link pointing outside the directory/);
  });

  it("a layer count that disagrees with rootfs.diff_ids", async () => {
    const entries = legacySaveEntries(plain, ["a:b"]);
    const manifest = JSON.parse(entries.find((e) => e.name === "manifest.json")!.data as string);
    manifest[0].Layers.pop();
    await tarInput(withData(entries, "manifest.json", json(manifest)));
    await expectFailure(
      "manifest.json",
      /lists 1 layers, but its config .*\.json has 2 rootfs.diff_ids/,
    );
  });

  it("an uncompressed layer whose SHA-256 is not its diffID (found while it streams)", async () => {
    const entries = legacySaveEntries(plain, ["a:b"]);
    const layer = entries.filter((e) => e.name.endsWith("/layer.tar"))[1].name;
    await tarInput(withData(entries, layer, corrupt(app)));
    await expectFailure(
      layer,
      /uncompressed layer's SHA-256 is sha256:[a-f0-9]{64}, not its diffID sha256:[a-f0-9]{64} \(rootfs.diff_ids\[1\]/,
    );
    // Docker 25+ read through manifest.json (no index.json beside it): the blob's name
    // already disagrees with the diffID.
    const modern = without(docker25SaveEntries(plain, "a/b", "1"), "index.json");
    const manifest = JSON.parse(modern.find((e) => e.name === "manifest.json")!.data as string);
    [manifest[0].Layers[0], manifest[0].Layers[1]] = [manifest[0].Layers[1], manifest[0].Layers[0]];
    await tarInput(withData(modern, "manifest.json", json(manifest)));
    await expectFailure(
      manifest[0].Layers[0],
      /uncompressed layer is named sha256:.*, but its diffID/,
    );
  });
});
