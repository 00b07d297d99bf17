/**
 * The soak: push/pull rounds of an image of a few tens of MiB through the
 * {@linkcode ./fault_proxy.ts | fault proxy} in front of Debian's `docker-registry`,
 * with a fault on about one request in five. Every round must end with a pulled image
 * whose config digest and diffIDs equal the source's (checked independently of our
 * reader: the output is unpacked with the system `tar` and every blob hashed), or with
 * a typed error after the retry bound that left the previous output as it was; never
 * a corrupted output, a temporary file, or an upload session the client knew of and
 * left open.
 *
 * Used by `tests/faults/soak_test.ts` (about 20 rounds, in `deno task test`) and by
 * `tests/soak.ts` (`deno task soak`, 200 rounds).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { deflateRawSync, gunzipSync, gzipSync } from "node:zlib";
import { ImagesError } from "../lib/errors.ts";
import { Images } from "../lib/images.ts";
import { LocalImage } from "../lib/reference/local_image.ts";
import { MediaType } from "../lib/oci/media_types.ts";
import { describeFaults, type FaultProxy, startFaultProxy } from "./fault_proxy.ts";
import { type RunningRegistry, startRegistry } from "./docker_registry.ts";
import { makeTempDir, removeTempDir } from "./fs.ts";
import { layerTar, run, type TarSpec, writeTar } from "./tools.ts";
import { testBytes } from "./fake_registry.ts";

const MiB = 1024 * 1024;
/** The upload chunk size of the soak's client, and the reader's chunk size. */
export const SOAK_CHUNK = MiB;

const sha256 = (bytes: Uint8Array) => "sha256:" + createHash("sha256").update(bytes).digest("hex");
const hex = (digest: string) => digest.slice("sha256:".length);
const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

// ---------------------------------------------------------------------------------
// The image.

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * A gzip member of exactly `size` bytes holding `data`: the deflate stream padded with
 * a header comment (FCOMMENT), which every gunzip skips.
 */
export function gzipExactly(data: Uint8Array, size: number): Uint8Array {
  const raw = new Uint8Array(deflateRawSync(data, { level: 0 }));
  const commentLength = size - 10 - raw.length - 8 - 1;
  if (commentLength < 0) throw new Error(`${data.length} bytes do not fit in ${size} gzipped`);
  const out = new Uint8Array(size);
  out.set([0x1f, 0x8b, 8, 0x10, 0, 0, 0, 0, 0, 0xff]);
  out.fill(0x61, 10, 10 + commentLength); // "aaaa…", then the terminating NUL
  out[10 + commentLength] = 0;
  out.set(raw, 11 + commentLength);
  const view = new DataView(out.buffer);
  view.setUint32(size - 8, crc32(data), true);
  view.setUint32(size - 4, data.length >>> 0, true);
  return out;
}

/** One layer of the soak image. */
export interface SoakLayer {
  /** What it is, for messages. */
  label: string;
  mediaType: string;
  digest: string;
  size: number;
  diffId: string;
}

/** The soak image, written as an OCI archive. */
export interface SoakImage {
  /** The archive (pushed with `input`). */
  path: string;
  /** Its name inside the archive. */
  name: string;
  configDigest: string;
  diffIds: string[];
  layers: SoakLayer[];
  /** Bytes of all the layers as stored. */
  totalBytes: number;
}

/**
 * Writes the soak image into `dir`: layers of 0 bytes (one uncompressed, compressed on
 * push; one stored as is), an empty tar, exactly one chunk and one byte either side, a
 * few MiB, an uncompressed layer of 3 MiB, a big one, and the empty tar again.
 * `scale` multiplies the two biggest layers (1 gives about 27 MiB in all, 0.25 about 11).
 */
export async function buildSoakImage(dir: string, scale = 1): Promise<SoakImage> {
  const tarOf = (bytes: number, seed: number) =>
    layerTar({ [`data-${seed}.bin`]: testBytes(bytes, seed) });
  const empty = new Uint8Array(0);
  const emptyTar = new Uint8Array(1024);
  const exact = (size: number, seed: number) => {
    const tar = tarOf(size - 8192, seed);
    return { stored: gzipExactly(tar, size), uncompressed: tar };
  };
  const chunkMinus = exact(SOAK_CHUNK - 1, 31);
  const chunk = exact(SOAK_CHUNK, 32);
  const chunkPlus = exact(SOAK_CHUNK + 1, 33);
  const mid = tarOf(Math.round(6 * MiB * scale), 34);
  const text = layerTar({
    "text.txt": new TextEncoder().encode("a line of text that compresses well\n".repeat(50_000)),
    "noise.bin": testBytes(1 * MiB, 35),
  });
  const big = tarOf(Math.round(14 * MiB * scale), 36);
  const gz = MediaType.OciLayerGzip;
  const plain = MediaType.OciLayer;
  const specs: {
    label: string;
    mediaType: string;
    stored: Uint8Array;
    uncompressed: Uint8Array;
  }[] = [
    { label: "0 bytes, uncompressed", mediaType: plain, stored: empty, uncompressed: empty },
    { label: "0 bytes, as stored", mediaType: gz, stored: empty, uncompressed: empty },
    {
      label: "empty tar",
      mediaType: gz,
      stored: new Uint8Array(gzipSync(emptyTar)),
      uncompressed: emptyTar,
    },
    { label: "chunk - 1", mediaType: gz, ...chunkMinus },
    { label: "exactly one chunk", mediaType: gz, ...chunk },
    { label: "chunk + 1", mediaType: gz, ...chunkPlus },
    {
      label: "6 MiB × scale",
      mediaType: gz,
      stored: new Uint8Array(gzipSync(mid, { level: 1 })),
      uncompressed: mid,
    },
    { label: "3 MiB, uncompressed", mediaType: plain, stored: text, uncompressed: text },
    {
      label: "big",
      mediaType: gz,
      stored: new Uint8Array(gzipSync(big, { level: 1 })),
      uncompressed: big,
    },
    {
      label: "empty tar again",
      mediaType: gz,
      stored: new Uint8Array(gzipSync(emptyTar)),
      uncompressed: emptyTar,
    },
  ];
  const layers: SoakLayer[] = specs.map((s) => ({
    label: s.label,
    mediaType: s.mediaType,
    digest: sha256(s.stored),
    size: s.stored.length,
    diffId: sha256(s.uncompressed),
  }));
  const diffIds = layers.map((l) => l.diffId);
  const config = json({
    architecture: "amd64",
    os: "linux",
    config: { Env: ["PATH=/bin"], Cmd: ["/bin/true"] },
    rootfs: { type: "layers", diff_ids: diffIds },
    history: layers.map((l) => ({ created_by: `soak layer: ${l.label}` })),
  });
  const configDigest = sha256(config);
  const manifest = json({
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: MediaType.OciConfig, digest: configDigest, size: config.length },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  });
  const name = "localhost/soak/image:source";
  const blobs = new Map<string, Uint8Array>([[configDigest, config], [sha256(manifest), manifest]]);
  specs.forEach((s, i) => blobs.set(layers[i].digest, s.stored));
  const entries: TarSpec[] = [
    { name: "oci-layout", data: json({ imageLayoutVersion: "1.0.0" }) },
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
          digest: sha256(manifest),
          size: manifest.length,
          annotations: {
            "io.containerd.image.name": name,
            "org.opencontainers.image.ref.name": "source",
          },
        }],
      }),
    },
  ];
  const path = join(dir, "soak-source.oci.tar");
  await writeTar(path, entries);
  return {
    path,
    name,
    configDigest,
    diffIds,
    layers,
    totalBytes: layers.reduce((s, l) => s + l.size, 0),
  };
}

// ---------------------------------------------------------------------------------
// Checks.

/** Files under `dir` (relative paths), recursively. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (sub: string) => {
    let entries;
    try {
      entries = await readdir(join(dir, sub), { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const rel = sub ? `${sub}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(rel);
      else out.push(rel);
    }
  };
  await walk("");
  return out.sort();
}

/** Names that only a half-written output has: `*.tmp-*`, spool files. */
export function temporaryFiles(files: string[]): string[] {
  return files.filter((f) => /(^|\/)\.tmp-|\.tmp-|\.spool-/.test(f));
}

/**
 * Upload sessions still holding data in a registry's storage, by id, for repositories
 * whose name starts with `prefix` (e.g. `soak/`).
 */
export async function openUploadSessions(storageDir: string, prefix = ""): Promise<string[]> {
  const root = join(storageDir, "docker/registry/v2/repositories");
  const open: string[] = [];
  const walk = async (repo: string) => {
    let entries;
    try {
      entries = await readdir(join(root, repo), { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      if (e.name === "_uploads") {
        const dir = join(root, repo, "_uploads");
        for (const id of await readdir(dir).catch(() => [] as string[])) {
          const files = await readdir(join(dir, id)).catch(() => [] as string[]);
          if (files.includes("data")) open.push(id);
        }
      } else if (!e.name.startsWith("_")) {
        await walk(repo ? `${repo}/${e.name}` : e.name);
      }
    }
  };
  await walk(prefix.replace(/\/$/, ""));
  return open;
}

/**
 * Records the upload-session `Location`s the client received, by session id: the
 * handle it holds on each session. Wraps `globalThis.fetch` (which the registry client
 * binds when it is created) until `stop()`.
 */
export function recordUploadLocations(): { locations: Map<string, string>; stop(): void } {
  const original = globalThis.fetch;
  const locations = new Map<string, string>();
  globalThis.fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
    const res = await original(input, init);
    const location = res.headers.get("location") ?? "";
    const id = /\/blobs\/uploads\/([^/?]+)/.exec(location)?.[1];
    if (id) locations.set(id, location);
    return res;
  };
  return { locations, stop: () => void (globalThis.fetch = original) };
}

/**
 * Whether the client could have cancelled an upload session left open: it received a
 * `Location` for it that the registry still honours. CNCF distribution stops honouring
 * a `Location` once its `_state` is stale (a PATCH whose answer the client lost moved
 * the session on): such a session can be neither resumed nor cancelled by anyone, and
 * waits for the registry's upload purging.
 */
export async function cancellable(
  registryUrl: string,
  locations: Map<string, string>,
  id: string,
): Promise<boolean> {
  const location = locations.get(id);
  if (location === undefined) return false;
  const url = new URL(location, registryUrl);
  const res = await fetch(new URL(url.pathname + url.search, registryUrl));
  await res.body?.cancel();
  return res.status === 204;
}

/** What the independent check of a pulled image found. */
export interface PulledImage {
  configDigest: string;
  diffIds: string[];
}

function decompress(bytes: Uint8Array, mediaType: string): Uint8Array {
  if (bytes.length === 0) return bytes;
  if (mediaType.endsWith("+gzip") || mediaType.endsWith(".tar.gzip")) {
    return new Uint8Array(gunzipSync(bytes));
  }
  if (mediaType.endsWith("+zstd")) throw new Error(`zstd layer ${mediaType}: not checked here`);
  return bytes;
}

/**
 * Checks an image in an OCI layout directory (an unpacked archive or a layout) with
 * no code of the library: `index.json` → the manifest named `name` → config and
 * layers, each blob hashed; layers decompressed and hashed against the diffIDs.
 * For a docker archive, `manifest.json` is checked too. Throws on any mismatch.
 */
export async function checkLayoutImage(
  dir: string,
  name: string,
  docker: boolean,
): Promise<PulledImage> {
  const readBlob = async (digest: string, size?: number) => {
    const bytes = new Uint8Array(await readFile(join(dir, "blobs/sha256", hex(digest))));
    if (sha256(bytes) !== digest) throw new Error(`blob ${digest} does not match its digest`);
    if (size !== undefined && bytes.length !== size) {
      throw new Error(`blob ${digest}: ${bytes.length} bytes, expected ${size}`);
    }
    return bytes;
  };
  const index = JSON.parse(await readFile(join(dir, "index.json"), "utf8"));
  const entry = (index.manifests as {
    digest: string;
    size: number;
    annotations?: Record<string, string>;
  }[]).find((m) =>
    m.annotations?.["io.containerd.image.name"] === `docker.io/library/${name}` ||
    m.annotations?.["io.containerd.image.name"] === name
  );
  if (!entry) throw new Error(`index.json has no image ${name}: ${JSON.stringify(index)}`);
  const manifest = JSON.parse(
    new TextDecoder().decode(await readBlob(entry.digest, entry.size)),
  );
  const configBytes = await readBlob(manifest.config.digest, manifest.config.size);
  const config = JSON.parse(new TextDecoder().decode(configBytes));
  const diffIds: string[] = config.rootfs.diff_ids;
  if (manifest.layers.length !== diffIds.length) throw new Error("layer count differs");
  for (
    const [i, layer] of (manifest.layers as { digest: string; size: number; mediaType: string }[])
      .entries()
  ) {
    const bytes = decompress(await readBlob(layer.digest, layer.size), layer.mediaType);
    if (sha256(bytes) !== diffIds[i]) {
      throw new Error(`layer ${i} (${layer.digest}) does not decompress to diffID ${diffIds[i]}`);
    }
  }
  if (docker) {
    const records = JSON.parse(await readFile(join(dir, "manifest.json"), "utf8"));
    const record = records.find((r: { RepoTags: string[] }) => r.RepoTags.includes(name));
    if (!record) throw new Error(`manifest.json has no ${name}`);
    if (record.Config !== `blobs/sha256/${hex(manifest.config.digest)}`) {
      throw new Error(`manifest.json Config ${record.Config}`);
    }
    const want = manifest.layers.map((l: { digest: string }) => `blobs/sha256/${hex(l.digest)}`);
    if (JSON.stringify(record.Layers) !== JSON.stringify(want)) {
      throw new Error(`manifest.json Layers ${JSON.stringify(record.Layers)}`);
    }
  }
  return { configDigest: manifest.config.digest, diffIds };
}

/** Unpacks an archive with the system `tar` into `dir` and checks the image in it. */
export async function checkArchiveImage(
  archive: string,
  dir: string,
  name: string,
  docker: boolean,
): Promise<PulledImage> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  try {
    await run("tar", ["-xf", archive, "-C", dir]);
    return await checkLayoutImage(dir, name, docker);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A fingerprint of an output (file bytes, or a layout's `index.json`), to see it unchanged. */
async function fingerprint(path: string, layout: boolean): Promise<string | undefined> {
  try {
    const bytes = await readFile(layout ? join(path, "index.json") : path);
    return sha256(new Uint8Array(bytes));
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------
// The rounds.

/** Options of {@linkcode runSoak}. */
export interface SoakOptions {
  /** Rounds to run. */
  rounds: number;
  /** The fault proxy's seed (default: from the clock, printed). */
  seed?: number;
  /** Probability of a fault per request (default 0.2). */
  rate?: number;
  /** Multiplies the biggest layers (default 1: about 26 MiB). */
  scale?: number;
  /**
   * The client's stall timeout, ms (default 1000); its answer timeout is twice that,
   * and the proxy's stalls last from a tenth of it to 2.5 times it, so about half of
   * them outlast it.
   */
  stallTimeoutMs?: number;
  /** Progress lines. */
  log?: (line: string) => void;
}

/** How one round ended. */
export type RoundOutcome = "completed" | "clean-failure" | "corrupted" | "unclear-failure";

/** The figures of a soak. */
export interface SoakSummary {
  seed: number;
  rounds: number;
  imageBytes: number;
  layers: number;
  faults: { drop: number; reset: number; stall: number; total: number };
  requests: number;
  outcomes: Record<RoundOutcome, number>;
  /** Push failures and pull failures among the clean failures. */
  failedPushes: number;
  failedPulls: number;
  /** Temporary files found after a round (must be 0). */
  leftoverTempFiles: number;
  /** Upload sessions whose Location the client got, left open (must be 0). */
  leakedSessions: number;
  /**
   * Sessions nobody can cancel: the client never got their `Location`, or the registry
   * no longer honours the one it got (see {@linkcode cancellable}).
   */
  orphanedSessions: number;
  /** A failed pull changed the previous output (must be 0). */
  damagedPreviousOutputs: number;
  /** A failed push left a tag pointing at an incomplete image (must be 0). */
  badTags: number;
  /** The error messages of the failures, with how often each came. */
  failures: Record<string, number>;
  /** Problems, one line each (empty when all is well). */
  problems: string[];
  seconds: number;
}

/** Whether a soak summary shows everything as promised. */
export function soakPassed(s: SoakSummary): boolean {
  return s.outcomes.corrupted === 0 && s.outcomes["unclear-failure"] === 0 &&
    s.leftoverTempFiles === 0 && s.leakedSessions === 0 && s.damagedPreviousOutputs === 0 &&
    s.badTags === 0 && s.problems.length === 0;
}

/** The summary as a few lines of text. */
export function formatSoakSummary(s: SoakSummary): string {
  const o = s.outcomes;
  return [
    `soak: seed ${s.seed}, ${s.rounds} rounds of push + pull of a ${
      (s.imageBytes / MiB).toFixed(1)
    } MiB image (${s.layers} layers) in ${s.seconds.toFixed(1)} s`,
    `faults injected: drop ${s.faults.drop}, reset ${s.faults.reset}, stall ${s.faults.stall} ` +
    `(${s.faults.total} in ${s.requests} requests)`,
    `outcomes: completed ${o.completed}, clean failures ${o["clean-failure"]} ` +
    `(push ${s.failedPushes}, pull ${s.failedPulls}), corrupted ${o.corrupted}, ` +
    `unclear failures ${o["unclear-failure"]}`,
    `leftovers: temporary files ${s.leftoverTempFiles}, open upload sessions ${s.leakedSessions} ` +
    `(orphaned, the registry no longer honouring the client's handle: ${s.orphanedSessions}), ` +
    `previous outputs damaged ${s.damagedPreviousOutputs}, bad tags ${s.badTags}`,
    ...Object.entries(s.failures).map(([m, n]) => `  failure x${n}: ${m}`),
    ...s.problems.map((p) => `  PROBLEM: ${p}`),
  ].join("\n");
}

function isClear(error: unknown): boolean {
  return error instanceof ImagesError && error.message.length > 10 &&
    !/internal error|undefined|\[object /i.test(error.message);
}

/** Shortens a failure message to its gist, so equal failures group together. */
function gist(error: unknown): string {
  const text = error instanceof Error
    ? `${error.constructor.name}: ${error.message}`
    : String(error);
  return text.replace(/sha256:[0-9a-f]{64}/g, "sha256:…").replace(/\/r\d+\b/g, "/rN")
    .replace(/[0-9a-f-]{36}/g, "ID").replace(/\d+/g, "N").slice(0, 240);
}

/**
 * Runs the soak against a fresh `docker-registry` behind a fault proxy, in a fresh
 * temporary folder (removed at the end).
 */
export async function runSoak(options: SoakOptions): Promise<SoakSummary> {
  const seed = options.seed ?? (Date.now() % 1_000_000);
  const log = options.log ?? (() => {});
  const stallTimeoutMs = options.stallTimeoutMs ?? 1000;
  const started = performance.now();
  const work = await makeTempDir("apolo-soak");
  let registry: RunningRegistry | undefined;
  let proxy: FaultProxy | undefined;
  let recorder: ReturnType<typeof recordUploadLocations> | undefined;
  try {
    const image = await buildSoakImage(work, options.scale ?? 1);
    registry = await startRegistry();
    proxy = await startFaultProxy({
      target: registry.host,
      seed,
      rate: options.rate ?? 0.2,
      stallMs: [Math.round(stallTimeoutMs / 10), Math.round(stallTimeoutMs * 2.5)],
    });
    const out = join(work, "out");
    const scratch = join(work, "scratch");
    const cache = join(work, "cache");
    await mkdir(out);
    const summary: SoakSummary = {
      seed,
      rounds: 0,
      imageBytes: image.totalBytes,
      layers: image.layers.length,
      faults: { drop: 0, reset: 0, stall: 0, total: 0 },
      requests: 0,
      outcomes: { completed: 0, "clean-failure": 0, corrupted: 0, "unclear-failure": 0 },
      failedPushes: 0,
      failedPulls: 0,
      leftoverTempFiles: 0,
      leakedSessions: 0,
      orphanedSessions: 0,
      damagedPreviousOutputs: 0,
      badTags: 0,
      failures: {},
      problems: [],
      seconds: 0,
    };
    const fail = (round: number, what: string, error: unknown) => {
      const clear = isClear(error);
      summary.outcomes[clear ? "clean-failure" : "unclear-failure"]++;
      const g = gist(error);
      summary.failures[g] = (summary.failures[g] ?? 0) + 1;
      if (!clear) summary.problems.push(`round ${round}: ${what} failed unclearly: ${error}`);
      log(`round ${round}: ${what} failed: ${g}`);
    };
    const formats = ["docker", "oci", "layout"] as const;
    recorder = recordUploadLocations();
    for (let round = 1; round <= options.rounds; round++) {
      summary.rounds = round;
      const format = formats[(round - 1) % formats.length];
      const repo = `soak/r${round}`;
      const clientLog: string[] = [];
      const images = new Images({
        log: (line) => clientLog.push(`${new Date().toISOString().slice(17, 23)} ${line}`),
        registries: { default: proxy.url },
        clusterName: "default",
        owner: "soak",
        cacheDir: cache,
        chunkSize: SOAK_CHUNK,
        maxRetries: 5,
        retryBaseDelayMs: 20,
        retryMaxDelayMs: 400,
        connectTimeoutMs: 2 * stallTimeoutMs,
        stallTimeoutMs,
      });
      const remote = images.parser.parseRemote(`image://default/${repo}:v1`);
      const local = new LocalImage("soak", `r${round}`);
      const output = format === "docker"
        ? join(out, "image.tar")
        : format === "oci"
        ? join(out, "image.oci.tar")
        : join(out, "layout") + "/";
      const layout = format === "layout";
      let pushed = false;
      try {
        await images.push(new LocalImage("localhost/soak/image", "source"), remote, {
          input: image.path,
        });
        pushed = true;
      } catch (error) {
        summary.failedPushes++;
        fail(round, "push", error);
      }
      // What the registry holds, seen directly (not through the proxy).
      const direct = await fetch(`${registry.url}/v2/${repo}/manifests/v1`, {
        headers: {
          accept: [MediaType.OciManifest, MediaType.DockerManifest].join(", "),
        },
      });
      if (direct.ok) {
        const manifest = await direct.json();
        const blobs = [manifest.config, ...manifest.layers] as { digest: string; size: number }[];
        let complete = manifest.config.digest === image.configDigest &&
          manifest.layers.length === image.layers.length;
        for (const b of blobs) {
          const head = await fetch(`${registry.url}/v2/${repo}/blobs/${b.digest}`, {
            method: "HEAD",
          });
          await head.body?.cancel();
          if (!head.ok || Number(head.headers.get("content-length")) !== b.size) complete = false;
        }
        if (!complete) {
          summary.badTags++;
          summary.problems.push(`round ${round}: the tag points at an incomplete image`);
        }
        if (!pushed) log(`round ${round}: the push failed, yet its manifest arrived (complete)`);
      } else {
        await direct.body?.cancel();
        if (pushed) {
          summary.problems.push(`round ${round}: push succeeded, no manifest (${direct.status})`);
        }
      }
      if (pushed) {
        const before = await fingerprint(output, layout);
        let pulled = false;
        try {
          await images.pull(remote, local, { output, format: format === "oci" ? "oci" : "docker" });
          pulled = true;
        } catch (error) {
          summary.failedPulls++;
          fail(round, `pull (${format})`, error);
          const after = await fingerprint(output, layout);
          if (after !== before) {
            summary.damagedPreviousOutputs++;
            summary.problems.push(
              `round ${round}: a failed pull changed the previous ${format} output`,
            );
          }
        }
        if (pulled) {
          try {
            const got = layout
              ? await checkLayoutImage(output, `soak:r${round}`, false)
              : await checkArchiveImage(output, scratch, `soak:r${round}`, format === "docker");
            if (
              got.configDigest !== image.configDigest ||
              JSON.stringify(got.diffIds) !== JSON.stringify(image.diffIds)
            ) {
              throw new Error(`config ${got.configDigest}, diffIDs ${got.diffIds}`);
            }
            summary.outcomes.completed++;
          } catch (error) {
            summary.outcomes.corrupted++;
            summary.problems.push(`round ${round}: CORRUPTED ${format} output: ${error}`);
          }
        }
      }
      // Nothing half-written: no temporary file in the output folder or the blob cache.
      for (const folder of [out, cache]) {
        const temps = temporaryFiles(await listFiles(folder));
        if (temps.length > 0) {
          summary.leftoverTempFiles += temps.length;
          summary.problems.push(`round ${round}: temporary files left: ${temps.join(", ")}`);
          for (const t of temps) await rm(join(folder, t), { force: true });
        }
      }
      // No upload session the client knew of is left open.
      await new Promise((r) => setTimeout(r, 50));
      for (const id of await openUploadSessions(registry.storageDir, repo)) {
        if (await cancellable(registry.url, recorder.locations, id)) {
          summary.leakedSessions++;
          summary.problems.push(`round ${round}: upload session ${id} left open in ${repo}`);
          for (const line of clientLog) if (line.includes(id)) log(`  client: ${line}`);
          for (const e of proxy.events) {
            if (e.request.includes(id)) log(`  fault: ${JSON.stringify(e)}`);
          }
        } else summary.orphanedSessions++;
      }
      // The registry keeps blobs once (content-addressed); drop the round's repository
      // folder so storage stays flat over 200 rounds.
      await rm(join(registry.storageDir, "docker/registry/v2/repositories", repo), {
        recursive: true,
        force: true,
      });
      if (round % 10 === 0 || round === options.rounds) {
        log(`round ${round}: ${describeFaults(proxy)}; ${JSON.stringify(summary.outcomes)}`);
      }
    }
    // The layout holds every image pulled into it, each intact.
    try {
      const index = JSON.parse(await readFile(join(out, "layout", "index.json"), "utf8"));
      for (const m of index.manifests) {
        const name = (m.annotations?.["io.containerd.image.name"] ?? "").replace(
          /^docker\.io\/library\//,
          "",
        );
        await checkLayoutImage(join(out, "layout"), name, false);
      }
    } catch (error) {
      if ((error as { code?: string }).code !== "ENOENT") {
        summary.problems.push(`the layout is not valid at the end: ${error}`);
      }
    }
    summary.faults = { ...proxy.counts, total: proxy.total() };
    summary.requests = proxy.requests;
    summary.seconds = (performance.now() - started) / 1000;
    return summary;
  } finally {
    recorder?.stop();
    await proxy?.close();
    await registry?.stop();
    await removeTempDir(work);
  }
}

/** Whether a path exists. */
export async function exists(path: string): Promise<boolean> {
  return await stat(path).then(() => true, () => false);
}
