/**
 * Fuzzing the docker-archive and OCI layout readers through `openLocalSource`: the JSON
 * files of real-shaped archives mutated (and re-sealed, so changed blobs still match
 * their digests and the reader gets past the digest checks), as tar files and as
 * directories, and whole archives mutated byte by byte. Every case ends in images read
 * or an ImagesError; every stream either gives the announced bytes or fails typed.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import fc from "fast-check";
import { sha256Digest } from "../../lib/oci/digest.ts";
import { makeTempDir, removeTempDir } from "../../testing/fs.ts";
import { openLocalSource } from "../../lib/archive/local_source.ts";
import { openOciLayoutDestination } from "../../lib/archive/layout_destination.ts";
import {
  docker25SaveEntries,
  layerTar,
  legacySaveEntries,
  plainCopy,
  syntheticImage,
  type TarSpec,
  writeTar,
} from "../../testing/tools.ts";
import {
  applyJsonMutation,
  applyMutations,
  assertHeapBounded,
  casesRun,
  check,
  exerciseSource,
  headerOffsets,
  heapUsed,
  type JsonMutation,
  jsonMutationArb,
  mutationArb,
  onlyTyped,
  testTimeout,
} from "../../testing/fuzz.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const hex = (digest: string) => digest.slice("sha256:".length);
const blobName = (digest: string) => `blobs/sha256/${hex(digest)}`;

/** An archive as entries, with the names of its JSON documents. */
interface Layout {
  entries: TarSpec[];
  kind: "legacy" | "docker25" | "oci";
}

function dataOf(entries: TarSpec[], name: string): Uint8Array | undefined {
  const e = entries.find((x) => x.name === name);
  if (!e || e.data === undefined) return undefined;
  return typeof e.data === "string" ? encoder.encode(e.data) : e.data;
}

/** The JSON of an entry, or undefined when it is missing or not JSON (e.g. a layer). */
function jsonOf(entries: TarSpec[], name: string): unknown {
  const data = dataOf(entries, name);
  if (data === undefined) return undefined;
  try {
    return JSON.parse(decoder.decode(data));
  } catch {
    return undefined;
  }
}

function setData(entries: TarSpec[], name: string, data: Uint8Array): TarSpec[] {
  return entries.map((e) => (e.name === name ? { ...e, data } : e));
}

/** Replaces a blob with new bytes under its new digest; returns the entries and new digest. */
function replaceBlob(entries: TarSpec[], oldDigest: string, data: Uint8Array) {
  const digest = sha256Digest(data);
  const out = entries.filter((e) => e.name !== blobName(oldDigest));
  out.push({ name: blobName(digest), data });
  return { entries: out, digest };
}

/** Rewrites every descriptor of `oldDigest` in a JSON document to the new digest and size. */
function repoint(doc: unknown, oldDigest: string, digest: string, size: number): unknown {
  if (Array.isArray(doc)) return doc.map((d) => repoint(d, oldDigest, digest, size));
  if (typeof doc !== "object" || doc === null) {
    return doc === blobName(oldDigest) ? blobName(digest) : doc;
  }
  const o = Object.fromEntries(
    Object.entries(doc).map(([k, v]) => [k, repoint(v, oldDigest, digest, size)]),
  );
  if (o.digest === oldDigest) return { ...o, digest, size };
  return o;
}

/** Which document a case mutates, and whether changed blobs are re-sealed under new digests. */
type Target = "manifest.json" | "index.json" | "manifest" | "config";

/**
 * Mutates one JSON document of a layout. With `reseal`, a changed manifest or config is
 * stored under its new digest and every reference to it (index.json, manifest.json, the
 * manifest) follows, so the reader checks the content and not only the digest.
 */
function mutateLayout(
  layout: Layout,
  target: Target,
  mutation: JsonMutation,
  reseal: boolean,
): TarSpec[] {
  let entries = layout.entries;
  const jsonBytes = (doc: unknown) => encoder.encode(JSON.stringify(doc) ?? "");
  const saved = jsonOf(entries, "manifest.json") as { Config: string }[] | undefined;
  const index = jsonOf(entries, "index.json") as
    | { manifests: { digest: string }[] }
    | undefined;
  const manifestDigest = index?.manifests[0].digest;
  const manifest = manifestDigest
    ? jsonOf(entries, blobName(manifestDigest)) as { config: { digest: string } }
    : undefined;

  if (target === "manifest.json" || target === "index.json") {
    const doc = jsonOf(entries, target);
    if (doc === undefined) return entries;
    return setData(entries, target, jsonBytes(applyJsonMutation(doc, mutation)));
  }

  // Re-seals a changed blob: new name, and references in manifest.json and index.json.
  const resealTop = (oldDigest: string, digest: string, size: number) => {
    for (const name of ["manifest.json", "index.json"]) {
      const doc = jsonOf(entries, name);
      if (doc !== undefined) {
        entries = setData(entries, name, jsonBytes(repoint(doc, oldDigest, digest, size)));
      }
    }
  };

  if (target === "config") {
    const configName = layout.kind === "legacy" ? saved![0].Config : blobName(
      manifest!.config.digest,
    );
    const config = jsonOf(entries, configName);
    const bytes = jsonBytes(applyJsonMutation(config, mutation));
    if (!reseal) return setData(entries, configName, bytes);
    if (layout.kind === "legacy") {
      // Legacy config is <hex>.json, named by its digest.
      const name = `${hex(sha256Digest(bytes))}.json`;
      entries = entries.filter((e) => e.name !== configName);
      entries.push({ name, data: bytes });
      const doc = (saved ?? []).map((img, i) => i === 0 ? { ...img, Config: name } : img);
      return setData(entries, "manifest.json", jsonBytes(doc));
    }
    const oldConfig = manifest!.config.digest;
    const replaced = replaceBlob(entries, oldConfig, bytes);
    entries = replaced.entries;
    resealTop(oldConfig, replaced.digest, bytes.length);
    // The manifest points at the new config, and is itself re-sealed.
    const newManifest = encoder.encode(
      JSON.stringify(repoint(manifest, oldConfig, replaced.digest, bytes.length)),
    );
    const m = replaceBlob(entries, manifestDigest!, newManifest);
    entries = m.entries;
    resealTop(manifestDigest!, m.digest, newManifest.length);
    return entries;
  }

  // target === "manifest"
  if (!manifestDigest) return entries;
  const bytes = jsonBytes(applyJsonMutation(manifest, mutation));
  if (!reseal) return setData(entries, blobName(manifestDigest), bytes);
  const m = replaceBlob(entries, manifestDigest, bytes);
  entries = m.entries;
  resealTop(manifestDigest, m.digest, bytes.length);
  return entries;
}

/** Lays entries out as a directory (an OCI layout or an unpacked `docker save`). */
async function writeDirectory(root: string, entries: TarSpec[]): Promise<void> {
  await mkdir(root, { recursive: true });
  for (const e of entries) {
    const path = join(root, e.name);
    if (e.type === "dir") {
      await mkdir(path, { recursive: true });
      continue;
    }
    await mkdir(dirname(path), { recursive: true });
    if (e.type === "symlink") await symlink(e.linkname!, path);
    else if (e.type === "hardlink") await writeFile(path, dataOf(entries, e.linkname!) ?? "");
    else await writeFile(path, e.data ?? "");
  }
}

describe("fuzz: docker-archive and OCI layout readers", () => {
  let dir: string;
  let n = 0;
  const layouts: Layout[] = [];
  const tars = new Map<string, Uint8Array>();
  const digests: string[] = [];

  before(async () => {
    dir = await makeTempDir("fuzz-archive");
    const base = layerTar({ "etc/os-release": "ID=fuzz\n" });
    const plain = syntheticImage([base, layerTar({ "a.txt": "a".repeat(900) }), base]);
    const gz = syntheticImage([base, layerTar({ "b.txt": "b" })], { gzip: true });
    layouts.push(
      { kind: "legacy", entries: legacySaveEntries(plain, ["fuzz:1", "fuzz:2"]) },
      { kind: "legacy", entries: legacySaveEntries(gz, ["fuzz:gz"], false) },
      { kind: "docker25", entries: docker25SaveEntries(plain, "library/fuzz", "1") },
      {
        kind: "oci",
        entries: docker25SaveEntries(gz, "library/fuzz", "1").filter((e) =>
          e.name !== "manifest.json" && e.name !== "repositories"
        ),
      },
    );
    for (const image of [plain, gz]) {
      digests.push(image.configDigest, ...image.layerDigests, ...image.diffIds);
    }
    for (const [i, layout] of layouts.entries()) {
      const path = join(dir, `base-${i}.tar`);
      await writeTar(path, layout.entries);
      tars.set(`${layout.kind}-${i}`, new Uint8Array(await readFile(path)));
      await rm(path);
    }
  });

  after(async () => {
    await removeTempDir(dir);
    console.log(casesRun("fuzz_archive_test.ts").line);
  });

  async function readLayout(entries: TarSpec[], asDirectory: boolean) {
    const path = join(dir, `case-${n++}${asDirectory ? "" : ".tar"}`);
    try {
      if (asDirectory) await writeDirectory(path, entries);
      else await writeTar(path, entries);
      return await exerciseSource(path);
    } finally {
      await rm(path, { recursive: true, force: true });
    }
  }

  it("the unmutated layouts read completely, as tars and as directories", async () => {
    for (const layout of layouts) {
      for (const asDirectory of [false, true]) {
        const outcome = await readLayout(layout.entries, asDirectory);
        assert.ok(outcome.read >= 1, `${layout.kind} read nothing`);
        for (const e of outcome.errors) {
          // Only the made-up names the walk asks for may fail.
          assert.match(e.message, /not found in|holds \d+ images/, e.message);
        }
      }
    }
  });

  it("mutated JSON documents: images or typed errors", { timeout: testTimeout(60) }, async () => {
    const heap = heapUsed();
    const targets: Target[] = ["manifest.json", "index.json", "manifest", "config"];
    await check(
      "mutated layout JSON",
      fc.asyncProperty(
        fc.nat({ max: layouts.length - 1 }),
        fc.constantFrom(...targets),
        fc.array(jsonMutationArb(digests), { minLength: 1, maxLength: 3 }),
        fc.boolean(),
        fc.boolean(),
        async (which, target, mutations, reseal, asDirectory) => {
          const layout = layouts[which];
          if (target !== "manifest.json" && target !== "config" && layout.kind === "legacy") {
            target = "config";
          }
          let entries = layout.entries;
          for (const m of mutations) {
            try {
              entries = mutateLayout({ ...layout, entries }, target, m, reseal);
            } catch {
              // An earlier mutation broke what this one needs to find: keep what we have.
            }
          }
          await readLayout(entries, asDirectory);
        },
      ),
    );
    assertHeapBounded(heap, 256 * 1024 * 1024, "mutated layouts");
  });

  it("mutated archive bytes: images or typed errors", { timeout: testTimeout(40) }, async () => {
    const heap = heapUsed();
    for (const [name, tar] of tars) {
      const headers = headerOffsets(tar);
      await check(
        `mutated ${name} bytes`,
        fc.asyncProperty(
          fc.array(mutationArb(tar.length, headers), { minLength: 1, maxLength: 3 }),
          async (mutations) => {
            const path = join(dir, `bytes-${n++}.tar`);
            await writeFile(path, applyMutations(tar, mutations));
            try {
              await exerciseSource(path);
            } finally {
              await rm(path, { force: true });
            }
          },
        ),
        { scale: 0.5 },
      );
    }
    assertHeapBounded(heap, 256 * 1024 * 1024, "mutated archive bytes");
  });

  it("an existing OCI layout with a hostile index.json: written into or refused, typed", {
    timeout: testTimeout(40),
  }, async () => {
    const layout = layouts[3];
    const index = jsonOf(layout.entries, "index.json");
    const sourcePath = join(dir, "good-source.tar");
    await writeTar(sourcePath, layouts[2].entries);
    try {
      await check(
        "hostile destination index.json",
        fc.asyncProperty(
          fc.array(jsonMutationArb(digests), { minLength: 1, maxLength: 3 }),
          async (mutations) => {
            let doc = index;
            for (const m of mutations) doc = applyJsonMutation(doc, m);
            const dest = join(dir, `dest-${n++}`);
            try {
              await writeDirectory(dest, [
                ...layout.entries.filter((e) => e.name !== "index.json"),
                { name: "index.json", data: JSON.stringify(doc) ?? "" },
              ]);
              const before = await readFile(join(dest, "index.json"));
              const source = await openLocalSource(sourcePath);
              try {
                await plainCopy(source, await openOciLayoutDestination(dest), undefined, "x:1");
              } catch (e) {
                onlyTyped(e, "copy into a layout with a hostile index.json");
                assert.deepEqual(await readFile(join(dest, "index.json")), before);
              } finally {
                await source.close();
              }
            } finally {
              await rm(dest, { recursive: true, force: true });
            }
          },
        ),
        { scale: 0.5 },
      );
    } finally {
      await rm(sourcePath, { force: true });
    }
  });

  it("layer bytes swapped, cut or grown: the stream fails typed, never gives wrong bytes", {
    timeout: testTimeout(40),
  }, async () => {
    const layout = layouts[2]; // docker25: layers named by digest, checked while streamed
    const layerNames = layout.entries.filter((e) =>
      e.type !== "dir" && e.name.startsWith("blobs/sha256/") && !jsonOf(layout.entries, e.name)
    ).map((e) => e.name);
    await check(
      "mutated layer bytes",
      fc.asyncProperty(
        fc.constantFrom(...layerNames),
        fc.oneof(
          fc.uint8Array({ maxLength: 3000 }),
          fc.nat({ max: 4000 }).map((cut) => ({ cut })),
        ),
        fc.boolean(),
        async (name, change, asDirectory) => {
          const original = dataOf(layout.entries, name)!;
          const data = change instanceof Uint8Array ? change : original.slice(0, change.cut);
          const outcome = await readLayout(setData(layout.entries, name, data), asDirectory);
          const same = data.length === original.length && data.every((b, i) => b === original[i]);
          if (!same) assert.ok(outcome.errors.length > 0, "a changed layer went unnoticed");
        },
      ),
    );
  });
});
