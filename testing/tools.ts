/**
 * Real container tools for tests: running commands, building images with `buildah`
 * (as root, `vfs` storage, temporary `--root`/`--runroot`, no network), inspecting
 * archives with `skopeo` and loading them with `podman load` into a temporary store.
 *
 * The test image is built once and shared by every test file of a run that asks for
 * it ({@linkcode acquireTestImages} / {@linkcode releaseTestImages} count references and
 * remove the files when the last user releases them).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { spawn } from "node:child_process";
import process from "node:process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import type { ImageDestination, ImageSource } from "../lib/ends.ts";
import { sha256Digest } from "../lib/oci/digest.ts";
import { type Descriptor, parseManifest } from "../lib/oci/manifest.ts";
import { MediaType } from "../lib/oci/media_types.ts";
import { encodeTarHeader, paddedSize } from "../lib/archive/tar_header.ts";
import { TarWriter } from "../lib/archive/tar_writer.ts";
import { makeTempDir, removeTempDir } from "./fs.ts";

/** Options of {@linkcode run}. */
export interface RunOptions {
  /** Working directory. */
  cwd?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Bytes written to the command's stdin. */
  input?: string | Uint8Array;
  /** Throw when the command exits non-zero (default true). */
  check?: boolean;
  /** Kill the command after this many milliseconds (default 120 s). */
  timeoutMs?: number;
}

/** What a command printed and how it ended. */
export interface RunResult {
  /** Exit code (-1 when killed by a signal). */
  code: number;
  /** Standard output as text. */
  stdout: string;
  /** Standard output as bytes. */
  stdoutBytes: Uint8Array;
  /** Standard error as text. */
  stderr: string;
}

/**
 * Runs a command, capturing its output; throws with its stderr when it fails (unless
 * `check: false`).
 *
 * @example
 * ```ts
 * import { run } from "./tools.ts";
 * const { stdout } = await run("skopeo", ["--version"]);
 * ```
 */
export function run(command: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    const out: Uint8Array[] = [];
    const err: Uint8Array[] = [];
    child.stdout.on("data", (chunk: Uint8Array) => out.push(chunk));
    child.stderr.on("data", (chunk: Uint8Array) => err.push(chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 120_000);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`${command}: ${e.message}`));
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      const stdoutBytes = new Uint8Array(Buffer.concat(out));
      const result: RunResult = {
        code: code ?? -1,
        stdout: new TextDecoder().decode(stdoutBytes),
        stdoutBytes,
        stderr: Buffer.concat(err).toString("utf8"),
      };
      if (result.code !== 0 && options.check !== false) {
        reject(
          new Error(
            `${command} ${args.join(" ")} exited with ${result.code}:\n${
              result.stderr || result.stdout
            }`,
          ),
        );
      } else resolve(result);
    });
    child.stdin.end(options.input ?? "");
  });
}

/**
 * Whether a command can be run (found on PATH).
 *
 * @example
 * ```ts
 * import { commandExists } from "./tools.ts";
 * console.log(await commandExists("buildah"));
 * ```
 */
export async function commandExists(command: string): Promise<boolean> {
  const result = await run("sh", ["-c", `command -v ${command}`], { check: false });
  return result.code === 0;
}

/** Flags giving a containers tool its own temporary storage (vfs, no shared state). */
function storageFlags(root: string): string[] {
  return [
    "--root",
    join(root, "root"),
    "--runroot",
    join(root, "runroot"),
    "--storage-driver",
    "vfs",
  ];
}

/**
 * `buildah` with its own temporary storage.
 *
 * @example
 * ```ts
 * import { Buildah } from "./tools.ts";
 * const buildah = await Buildah.create();
 * try {
 *   const c = await buildah.from("scratch");
 *   await buildah.commit(c, "example/img:v1");
 * } finally {
 *   await buildah.cleanup();
 * }
 * ```
 */
export class Buildah {
  /** The temporary directory holding its storage. */
  readonly dir: string;

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Creates a buildah with fresh storage. */
  static async create(): Promise<Buildah> {
    return new Buildah(await makeTempDir("apolo-buildah"));
  }

  /** Runs `buildah <storage flags> ...args`. */
  async run(args: string[]): Promise<string> {
    const env = { BUILDAH_ISOLATION: "chroot", STORAGE_DRIVER: "vfs" };
    return (await run("buildah", [...storageFlags(this.dir), ...args], { env })).stdout.trim();
  }

  /** `buildah from`: a new working container; returns its name. */
  async from(image: string): Promise<string> {
    return await this.run(["from", "--pull-never", image]);
  }

  /** `buildah copy`: copies a host path into the container. */
  async copy(container: string, source: string, destination: string): Promise<void> {
    await this.run(["copy", container, source, destination]);
  }

  /** `buildah config` with the given flags (e.g. `["--env", "A=1"]`). */
  async config(container: string, flags: string[]): Promise<void> {
    await this.run(["config", ...flags, container]);
  }

  /** `buildah commit`: makes an image of the container; returns the image ID. */
  async commit(container: string, name: string): Promise<string> {
    return (await this.run(["commit", "--rm", container, name])).split("\n").at(-1)!;
  }

  /** `buildah push <image> <destination>`, e.g. `docker-archive:/x.tar:name:tag`. */
  async push(image: string, destination: string): Promise<void> {
    await this.run(["push", image, destination]);
  }

  /** Removes the storage. */
  async cleanup(): Promise<void> {
    await run("buildah", [...storageFlags(this.dir), "rm", "--all"], { check: false });
    await removeTempDir(this.dir);
  }
}

/** What `podman image inspect` says of a loaded image. */
export interface PodmanImage {
  /** Image ID (hex of the config digest). */
  id: string;
  /** Names it was loaded under. */
  names: string[];
  /** The layers' diffIDs. */
  diffIds: string[];
}

/**
 * `podman` with its own temporary storage, for `podman load`.
 *
 * @example
 * ```ts
 * import { Podman } from "./tools.ts";
 * const podman = await Podman.create();
 * try {
 *   const loaded = await podman.load("image.tar");
 *   console.log(loaded);
 * } finally {
 *   await podman.cleanup();
 * }
 * ```
 */
export class Podman {
  /** The temporary directory holding its storage. */
  readonly dir: string;

  private constructor(dir: string) {
    this.dir = dir;
  }

  /** Creates a podman with fresh storage. */
  static async create(): Promise<Podman> {
    return new Podman(await makeTempDir("apolo-podman"));
  }

  /** Runs `podman <storage flags> ...args`. */
  async run(args: string[]): Promise<string> {
    const flags = [
      ...storageFlags(this.dir),
      "--events-backend",
      "file",
      "--cgroup-manager",
      "cgroupfs",
      "--tmpdir",
      join(this.dir, "tmp"),
    ];
    return (await run("podman", [...flags, ...args])).stdout.trim();
  }

  /** `podman load -i <path>`; returns the names it reports as loaded. */
  async load(path: string): Promise<string[]> {
    const out = await this.run(["load", "-q", "-i", path]);
    return out.split("\n")
      .filter((l) => l.startsWith("Loaded image"))
      .flatMap((l) => l.replace(/^Loaded image(?:\(s\))?: ?/, "").split(","))
      .map((s) => s.trim())
      .filter(Boolean);
  }

  /** `podman image inspect <name>`. */
  async inspect(name: string): Promise<PodmanImage> {
    const [doc] = JSON.parse(await this.run(["image", "inspect", name]));
    return { id: doc.Id, names: doc.RepoTags ?? [], diffIds: doc.RootFS?.Layers ?? [] };
  }

  /** Removes the storage. */
  async cleanup(): Promise<void> {
    await removeTempDir(this.dir);
  }
}

/**
 * `skopeo inspect --raw <ref>`: the manifest (or index) bytes as stored.
 *
 * @example
 * ```ts
 * import { skopeoManifest } from "./tools.ts";
 * const bytes = await skopeoManifest("oci-archive:/tmp/image.tar");
 * ```
 */
export async function skopeoManifest(reference: string): Promise<Uint8Array> {
  return (await run("skopeo", ["inspect", "--raw", reference])).stdoutBytes;
}

/**
 * `skopeo inspect --config --raw <ref>`: the config bytes as stored.
 *
 * @example
 * ```ts
 * import { skopeoConfig } from "./tools.ts";
 * const bytes = await skopeoConfig("docker-archive:/tmp/image.tar");
 * ```
 */
export async function skopeoConfig(reference: string): Promise<Uint8Array> {
  return (await run("skopeo", ["inspect", "--config", "--raw", reference])).stdoutBytes;
}

/**
 * `skopeo copy <from> <to>` (no signatures, quiet).
 *
 * @example
 * ```ts
 * import { skopeoCopy } from "./tools.ts";
 * await skopeoCopy("oci-archive:/tmp/a.tar", "oci:/tmp/layout:v1");
 * ```
 */
export async function skopeoCopy(from: string, to: string, flags: string[] = []): Promise<void> {
  await run("skopeo", ["copy", "-q", ...flags, from, to]);
}

/** The test image written in every format buildah produces. */
export interface TestImages {
  /** Directory holding the files (removed by the last {@linkcode releaseTestImages}). */
  dir: string;
  /** The image's name as given to buildah. */
  name: string;
  /** Number of layers (the last one adds no file: an empty tar). */
  layerCount: number;
  /** `buildah push … docker-archive:` output. */
  dockerArchive: string;
  /** `buildah push … oci-archive:` output. */
  ociArchive: string;
  /** `buildah push … oci:` directory. */
  ociDir: string;
  /** The ref name the image has inside `ociDir`. */
  ociDirRef: string;
}

let shared: Promise<TestImages> | undefined;
let users = 0;

/** Deterministic pseudo-random bytes, so layers have content gzip does not erase. */
function pseudoRandom(size: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

async function buildTestImages(): Promise<TestImages> {
  const dir = await makeTempDir("apolo-test-images");
  const buildah = await Buildah.create();
  try {
    const context = join(dir, "context");
    await mkdir(join(context, "etc"), { recursive: true });
    await writeFile(join(context, "hello.txt"), "hello from a test image\n");
    await writeFile(join(context, "random.bin"), pseudoRandom(200 * 1024, 7));
    await writeFile(join(context, "etc", "config.txt"), "key=value\n".repeat(100));
    const name = "localhost/apolo-test/img:v1";
    // Layer 1: two files.
    let c = await buildah.from("scratch");
    await buildah.copy(c, join(context, "hello.txt"), "/hello.txt");
    await buildah.copy(c, join(context, "random.bin"), "/data/random.bin");
    await buildah.commit(c, "localhost/apolo-test/base:1");
    // Layer 2: a directory.
    c = await buildah.from("localhost/apolo-test/base:1");
    await buildah.copy(c, join(context, "etc"), "/etc");
    await buildah.commit(c, "localhost/apolo-test/base:2");
    // Layer 3: no file at all (an empty layer tar), only config changes.
    c = await buildah.from("localhost/apolo-test/base:2");
    await buildah.config(c, ["--env", "GREETING=hello", "--cmd", "/hello", "--label", "a=b"]);
    await buildah.commit(c, name);
    const images: TestImages = {
      dir,
      name,
      layerCount: 3,
      dockerArchive: join(dir, "docker-archive.tar"),
      ociArchive: join(dir, "oci-archive.tar"),
      ociDir: join(dir, "oci-dir"),
      ociDirRef: "v1",
    };
    await buildah.push(name, `docker-archive:${images.dockerArchive}:${name}`);
    await buildah.push(name, `oci-archive:${images.ociArchive}:${name}`);
    await buildah.push(name, `oci:${images.ociDir}:${images.ociDirRef}`);
    return images;
  } catch (e) {
    await removeTempDir(dir);
    throw e;
  } finally {
    await buildah.cleanup();
  }
}

/**
 * The shared test image (built with buildah on first use in a run). Call
 * {@linkcode releaseTestImages} once per acquire, e.g. in `after()`.
 *
 * @example
 * ```ts
 * import { acquireTestImages, releaseTestImages } from "./tools.ts";
 * const images = await acquireTestImages();
 * try {
 *   console.log(images.dockerArchive);
 * } finally {
 *   await releaseTestImages();
 * }
 * ```
 */
export function acquireTestImages(): Promise<TestImages> {
  users++;
  shared ??= buildTestImages();
  return shared;
}

/**
 * Releases the shared test image; the last release removes its files.
 *
 * @example
 * ```ts
 * import { releaseTestImages } from "./tools.ts";
 * await releaseTestImages();
 * ```
 */
export async function releaseTestImages(): Promise<void> {
  if (users === 0) return;
  users--;
  if (users > 0 || !shared) return;
  const pending = shared;
  shared = undefined;
  const images = await pending.catch(() => undefined);
  if (images) await removeTempDir(images.dir);
}

// ---------------------------------------------------------------------------------
// Synthetic archives and a tiny copy loop (tests of local stores and of the Images API).

/** One entry of a tar written by {@linkcode writeTar}. */
export interface TarSpec {
  /** Entry name as written. */
  name: string;
  /** File content (default empty). */
  data?: string | Uint8Array;
  /** Entry type (default `file`). */
  type?: "file" | "dir" | "symlink" | "hardlink";
  /** Link target for links. */
  linkname?: string;
}

function bytesOf(data: string | Uint8Array | undefined): Uint8Array {
  return typeof data === "string" ? new TextEncoder().encode(data) : data ?? new Uint8Array();
}

/**
 * Writes a tar file with our tar writer (pax headers for long names).
 *
 * @example
 * ```ts
 * import { writeTar } from "./tools.ts";
 * await writeTar("/tmp/x.tar", [{ name: "a.txt", data: "a" }, { name: "b", type: "symlink", linkname: "a.txt" }]);
 * ```
 */
export async function writeTar(path: string, entries: TarSpec[]): Promise<void> {
  const writer = await TarWriter.create(path);
  try {
    for (const e of entries) {
      if (e.type === "dir") await writer.addDirectory(e.name);
      else if (e.type === "symlink") await writer.addSymlink(e.name, e.linkname!);
      else if (e.type === "hardlink") await writer.addHardLink(e.name, e.linkname!);
      else await writer.addFile(e.name, bytesOf(e.data));
    }
    await writer.commit();
  } catch (err) {
    await writer.abort();
    throw err;
  }
}

/**
 * An uncompressed layer tar in memory holding the given files.
 *
 * @example
 * ```ts
 * import { layerTar } from "./tools.ts";
 * const layer = layerTar({ "hello.txt": "hello" });
 * ```
 */
export function layerTar(files: Record<string, string | Uint8Array>): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const [name, content] of Object.entries(files)) {
    const data = bytesOf(content);
    parts.push(encodeTarHeader({ name, size: data.length }));
    const padded = new Uint8Array(paddedSize(data.length));
    padded.set(data);
    parts.push(padded);
  }
  parts.push(new Uint8Array(1024));
  return new Uint8Array(Buffer.concat(parts));
}

/** A synthetic image: config and layers as bytes, and the digests they have. */
export interface SyntheticImage {
  /** Config bytes. */
  config: Uint8Array;
  /** Config digest (the image ID). */
  configDigest: string;
  /** Layer bytes as stored (maybe compressed). */
  layers: Uint8Array[];
  /** Digests of the stored layer bytes. */
  layerDigests: string[];
  /** diffIDs (digests of the uncompressed layers). */
  diffIds: string[];
}

/**
 * Makes an image from uncompressed layers, optionally gzip-compressing them.
 *
 * @example
 * ```ts
 * import { layerTar, syntheticImage } from "./tools.ts";
 * const image = syntheticImage([layerTar({ "a": "a" })], { gzip: true });
 * ```
 */
export function syntheticImage(
  layers: Uint8Array[],
  options: { gzip?: boolean; env?: string[] } = {},
): SyntheticImage {
  const diffIds = layers.map((l) => sha256Digest(l));
  const stored = options.gzip ? layers.map((l) => new Uint8Array(gzipSync(l))) : layers;
  const config = new TextEncoder().encode(JSON.stringify({
    architecture: "amd64",
    os: "linux",
    config: { Env: options.env ?? ["PATH=/bin"] },
    rootfs: { type: "layers", diff_ids: diffIds },
    history: layers.map(() => ({ created_by: "test" })),
  }));
  return {
    config,
    configDigest: sha256Digest(config),
    layers: stored,
    layerDigests: stored.map((l) => sha256Digest(l)),
    diffIds,
  };
}

/**
 * Copies one image from a source to a destination and commits: the tiny loop tests use
 * where the real copy engine (`copyImage`) is not the subject (platform manifests of an
 * index first, then the config and layers of each, then the top manifest under `destName`).
 *
 * @example
 * ```ts
 * import { plainCopy } from "./tools.ts";
 * import { openLocalSource, openOciArchiveDestination } from "../lib/archive/mod.ts";
 * const source = await openLocalSource("/tmp/in.tar");
 * await plainCopy(source, await openOciArchiveDestination("/tmp/out.tar"), undefined, "a:b");
 * await source.close();
 * ```
 */
export async function plainCopy(
  source: ImageSource,
  destination: ImageDestination,
  name?: string,
  destName?: string,
): Promise<Descriptor> {
  try {
    const top = await source.resolve(name);
    const copyManifest = async (bytes: Uint8Array, descriptor: Descriptor, tag?: string) => {
      const parsed = parseManifest(bytes, descriptor.digest, descriptor.mediaType);
      if (parsed.kind === "index") {
        for (const child of parsed.index.manifests) {
          await copyManifest(await source.fetchManifest(child), child);
        }
      } else {
        for (const blob of [parsed.manifest.config, ...parsed.manifest.layers]) {
          if (await destination.hasBlob(blob)) continue;
          await destination.putBlob(await source.fetchBlob(blob), blob);
        }
      }
      await destination.putManifest(bytes, descriptor, tag);
    };
    await copyManifest(top.bytes, top.descriptor, destName ?? top.name ?? name);
    await destination.commit();
    return top.descriptor;
  } catch (e) {
    await destination.abort();
    throw e;
  }
}

const hex = (digest: string): string => digest.slice("sha256:".length);
const json = (value: unknown): string => JSON.stringify(value);

/**
 * Entries of a Docker 24-style `docker save` of one image: `<id>/layer.tar`, a repeated
 * layer as a symlink to its first copy (unless `linkDuplicates` is false), `<hex>.json`.
 *
 * @example
 * ```ts
 * import { layerTar, legacySaveEntries, syntheticImage, writeTar } from "./tools.ts";
 * await writeTar("/tmp/legacy.tar", legacySaveEntries(syntheticImage([layerTar({ a: "a" })]), ["a:b"]));
 * ```
 */
export function legacySaveEntries(
  image: SyntheticImage,
  tags: string[],
  linkDuplicates = true,
): TarSpec[] {
  const entries: TarSpec[] = [];
  const layers: string[] = [];
  const seen = new Map<string, string>();
  image.layers.forEach((bytes, i) => {
    const id = hex(sha256Digest(new TextEncoder().encode(`v1 id ${i} ${image.configDigest}`)));
    layers.push(`${id}/layer.tar`);
    entries.push({ name: `${id}/`, type: "dir" });
    entries.push({ name: `${id}/VERSION`, data: "1.0" });
    entries.push({ name: `${id}/json`, data: json({ id }) });
    const first = seen.get(image.diffIds[i]);
    if (first && linkDuplicates) {
      entries.push({ name: `${id}/layer.tar`, type: "symlink", linkname: `../${first}` });
    } else {
      entries.push({ name: `${id}/layer.tar`, data: bytes });
      seen.set(image.diffIds[i], `${id}/layer.tar`);
    }
  });
  entries.push({ name: `${hex(image.configDigest)}.json`, data: image.config });
  entries.push({
    name: "manifest.json",
    data: json([{ Config: `${hex(image.configDigest)}.json`, RepoTags: tags, Layers: layers }]),
  });
  return entries;
}

/**
 * Entries of a Docker 25+ `docker save`: an OCI layout plus `manifest.json` into `blobs/`.
 *
 * @example
 * ```ts
 * import { docker25SaveEntries, layerTar, syntheticImage, writeTar } from "./tools.ts";
 * await writeTar("/tmp/d25.tar", docker25SaveEntries(syntheticImage([layerTar({ a: "a" })]), "a/b", "1"));
 * ```
 */
export function docker25SaveEntries(image: SyntheticImage, name: string, tag: string): TarSpec[] {
  const layerType = image.layers[0][0] === 0x1f ? MediaType.OciLayerGzip : MediaType.OciLayer;
  const manifest = new TextEncoder().encode(json({
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: {
      mediaType: MediaType.OciConfig,
      digest: image.configDigest,
      size: image.config.length,
    },
    layers: image.layers.map((l, i) => ({
      mediaType: layerType,
      digest: image.layerDigests[i],
      size: l.length,
    })),
  }));
  const manifestDigest = sha256Digest(manifest);
  const blobs = new Map<string, Uint8Array>([[image.configDigest, image.config], [
    manifestDigest,
    manifest,
  ]]);
  image.layers.forEach((l, i) => blobs.set(image.layerDigests[i], l));
  return [
    { name: "blobs/", type: "dir" },
    { name: "blobs/sha256/", type: "dir" },
    ...[...blobs].map(([d, data]): TarSpec => ({ name: `blobs/sha256/${hex(d)}`, data })),
    {
      name: "index.json",
      data: json({
        schemaVersion: 2,
        mediaType: MediaType.OciIndex,
        manifests: [{
          mediaType: MediaType.OciManifest,
          digest: manifestDigest,
          size: manifest.length,
          annotations: {
            "io.containerd.image.name": `docker.io/${name}:${tag}`,
            "org.opencontainers.image.ref.name": tag,
          },
        }],
      }),
    },
    {
      name: "manifest.json",
      data: json([{
        Config: `blobs/sha256/${hex(image.configDigest)}`,
        RepoTags: [`${name}:${tag}`],
        Layers: image.layerDigests.map((d) => `blobs/sha256/${hex(d)}`),
      }]),
    },
    { name: "oci-layout", data: json({ imageLayoutVersion: "1.0.0" }) },
    { name: "repositories", data: json({ [name]: { [tag]: hex(image.layerDigests.at(-1)!) } }) },
  ];
}
