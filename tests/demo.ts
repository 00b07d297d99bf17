/**
 * `deno task demo` (or `bun tests/demo.ts`): the Images API end to end, with no setup.
 *
 * Builds a small `docker save` archive in code (three uncompressed layers with real
 * files and a full config, byte for byte the same on every run), starts the in-process
 * test registry on a free loopback port (or, with `--real`, Debian's `docker-registry`),
 * then pushes the image with progress, lists the repositories, shows the tags, size, tag
 * info and digest, pulls it back into a docker-loadable archive, checks that archive
 * against the source, removes the tag and shows it is gone. Temporary files are removed
 * and the registry stopped at the end; the exit code is non-zero when a step fails.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import process from "node:process";
import {
  AbstractDockerImageProgress,
  type ImageProgressStep,
  Images,
  ImagesError,
  LocalImage,
} from "../mod.ts";
import { encodeTarHeader, openLocalSource, paddedSize, TarWriter } from "../lib/archive/mod.ts";
import { parseConfig, parseManifest } from "../lib/oci/manifest.ts";
import { formatBytes } from "../lib/progress.ts";
import { startTestRegistry } from "../testing/fake_registry.ts";

// ---------------------------------------------------------------------------------
// Terminal output

const color = process.stdout.isTTY === true && !process.env.NO_COLOR;
const paint = (code: string) => (text: string) => color ? `\x1b[${code}m${text}\x1b[0m` : text;
const bold = paint("1");
const dim = paint("2");
const green = paint("32");
const red = paint("31");
const cyan = paint("36");

const say = (line = "") => console.log(line);
const seconds = (ms: number) => ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
const short = (digest: string) => digest.replace(/^(sha256:[0-9a-f]{12})[0-9a-f]+$/, "$1…");
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

let stepNumber = 0;
/** Aborted by Ctrl-C: the transfer under way stops, no further step starts. */
const interrupted = new AbortController();

/** Runs one step: says what it does, then what happened (and how long it took). */
async function step<T>(
  what: string,
  fn: () => Promise<T>,
  done: (value: T) => string,
): Promise<T> {
  say(`${cyan(`${String(++stepNumber).padStart(2)}.`)} ${what}`);
  const start = performance.now();
  try {
    if (interrupted.signal.aborted) throw new Error("interrupted");
    const value = await fn();
    say(`    ${green("✓")} ${done(value)} ${dim(`(${seconds(performance.now() - start)})`)}`);
    return value;
  } catch (e) {
    say(`    ${red("✗")} ${red(e instanceof Error ? e.message : String(e))}`);
    throw new StepFailed();
  }
}

class StepFailed extends Error {}

/** States that end a layer's transfer: one line is printed per layer when it gets there. */
const FINAL = new Set([
  "Pushed",
  "Layer already exists",
  "Mounted",
  "Download complete",
  "Already exists",
  "Failed",
]);

/** Prints one short line per layer when it is done: the states it went through and its size. */
class StepPrinter extends AbstractDockerImageProgress {
  readonly #seen = new Map<string, string[]>();
  /** Bytes moved, per layer, as the last step reported them. */
  readonly moved = new Map<string, number>();

  override step(s: ImageProgressStep): void {
    const states = this.#seen.get(s.layerId) ?? [];
    if (states.at(-1) !== s.status) states.push(s.status);
    this.#seen.set(s.layerId, states);
    this.moved.set(s.layerId, s.total ?? s.current);
    if (!FINAL.has(s.status)) return;
    const size = formatBytes(s.total ?? s.current).padStart(7);
    say(`    ${dim("│")} ${s.layerId}  ${size}  ${dim(states.join(" → "))}`);
  }

  /** Bytes moved in all. */
  total(): number {
    return [...this.moved.values()].reduce((a, b) => a + b, 0);
  }
}

// ---------------------------------------------------------------------------------
// The image, built in code

const encoder = new TextEncoder();
/** 2024-01-01T00:00:00Z: every file, layer and history entry has this time. */
const EPOCH = 1_704_067_200;
const CREATED = new Date(EPOCH * 1000).toISOString();

/** One file (or directory, when `data` is absent) of a layer. */
interface FileSpec {
  path: string;
  data?: string | Uint8Array;
  mode?: number;
}

/** Deterministic pseudo-random bytes (xorshift32), so a layer has content gzip cannot erase. */
function noise(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** An uncompressed layer tar: ustar headers with owner root, fixed time and modes. */
function layerTar(files: FileSpec[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const file of files) {
    if (file.data === undefined) {
      parts.push(encodeTarHeader({
        name: `${file.path}/`,
        typeflag: "5",
        mode: file.mode ?? 0o755,
        mtime: EPOCH,
      }));
      continue;
    }
    const data = typeof file.data === "string" ? encoder.encode(file.data) : file.data;
    parts.push(
      encodeTarHeader({
        name: file.path,
        size: data.length,
        mode: file.mode ?? 0o644,
        mtime: EPOCH,
      }),
    );
    const padded = new Uint8Array(paddedSize(data.length));
    padded.set(data);
    parts.push(padded);
  }
  parts.push(new Uint8Array(1024));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const sha256 = (bytes: Uint8Array) => `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
const hex = (digest: string) => digest.slice("sha256:".length);

/** What the demo image is made of, to compare the pulled copy with. */
interface BuiltImage {
  path: string;
  name: string;
  bytes: number;
  configDigest: string;
  diffIds: string[];
}

const LAYERS: { createdBy: string; files: FileSpec[] }[] = [
  {
    createdBy: "ADD rootfs / # a tiny base",
    files: [
      { path: "etc" },
      { path: "etc/os-release", data: 'NAME="Demo Linux"\nID=demo\nVERSION_ID=1\n' },
      {
        path: "etc/passwd",
        data: "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n",
      },
      { path: "etc/group", data: "root:x:0:\napp:x:1000:\n" },
      { path: "root", mode: 0o700 },
      { path: "tmp", mode: 0o1777 },
    ],
  },
  {
    createdBy: "COPY app/ /app/",
    files: [
      { path: "app" },
      {
        path: "app/hello.sh",
        data: '#!/bin/sh\necho "hello from $(cat /app/VERSION)"\n',
        mode: 0o755,
      },
      { path: "app/VERSION", data: "1.0\n" },
      { path: "app/model.bin", data: noise(48 * 1024, 0x2545f491) },
    ],
  },
  {
    createdBy: "COPY hello.conf /etc/",
    files: [
      { path: "etc" },
      { path: "etc/hello.conf", data: "greeting = hello\nlisten = 0.0.0.0:8080\n".repeat(40) },
    ],
  },
];

/** Writes a Docker 24-style `docker save` archive of the demo image into `path`. */
async function buildArchive(path: string, name: string): Promise<BuiltImage> {
  const layers = LAYERS.map((l) => layerTar(l.files));
  const diffIds = layers.map(sha256);
  const config = encoder.encode(JSON.stringify({
    architecture: "amd64",
    os: "linux",
    created: CREATED,
    author: "apolo-images demo",
    config: {
      User: "app",
      Env: ["PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=hello"],
      Cmd: ["/app/hello.sh"],
      WorkingDir: "/app",
      ExposedPorts: { "8080/tcp": {} },
      Labels: {
        "org.opencontainers.image.title": "hello",
        "org.opencontainers.image.version": "1.0",
      },
    },
    rootfs: { type: "layers", diff_ids: diffIds },
    history: LAYERS.map((l) => ({ created: CREATED, created_by: l.createdBy })),
  }));
  const configDigest = sha256(config);
  const writer = await TarWriter.create(path, { mtime: EPOCH });
  try {
    // Docker 24 names each layer folder by a v1 id: here a hash chained over the parent's.
    let parent = "";
    const layerPaths: string[] = [];
    for (const [i, layer] of layers.entries()) {
      const id = hex(sha256(encoder.encode(`${parent} ${diffIds[i]}`)));
      await writer.addDirectory(id);
      await writer.addFile(`${id}/VERSION`, encoder.encode("1.0"));
      await writer.addFile(
        `${id}/json`,
        encoder.encode(JSON.stringify({ id, ...(parent ? { parent } : {}), created: CREATED })),
      );
      await writer.addFile(`${id}/layer.tar`, layer);
      layerPaths.push(`${id}/layer.tar`);
      parent = id;
    }
    await writer.addFile(`${hex(configDigest)}.json`, config);
    const [repo, tag] = name.split(":");
    await writer.addFile(
      "manifest.json",
      encoder.encode(JSON.stringify([{
        Config: `${hex(configDigest)}.json`,
        RepoTags: [name],
        Layers: layerPaths,
      }])),
    );
    await writer.addFile(
      "repositories",
      encoder.encode(JSON.stringify({ [repo]: { [tag]: parent } })),
    );
    await writer.commit();
  } catch (e) {
    await writer.abort();
    throw e;
  }
  return { path, name, bytes: (await stat(path)).size, configDigest, diffIds };
}

// ---------------------------------------------------------------------------------
// Checking the pulled archive

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** The sha256 of a layer's uncompressed bytes (the demo's layers are small: read whole). */
async function diffIdOf(stream: ReadableStream<Uint8Array>): Promise<string> {
  const bytes = await readAll(stream);
  return sha256(bytes[0] === 0x1f && bytes[1] === 0x8b ? new Uint8Array(gunzipSync(bytes)) : bytes);
}

/**
 * Opens the pulled archive like `push` would and compares it with the source: the
 * config digest (the image ID), the config's diffIDs, and the diffID of every layer
 * recomputed from its bytes.
 */
async function checkArchive(path: string, source: BuiltImage): Promise<string> {
  const archive = await openLocalSource(path);
  try {
    const names = await archive.names();
    const top = await archive.resolve();
    const parsed = parseManifest(top.bytes, `manifest of ${path}`, top.descriptor.mediaType);
    if (parsed.kind !== "manifest") throw new Error(`expected one image, found an index`);
    const { config, layers } = parsed.manifest;
    if (config.digest !== source.configDigest) {
      throw new Error(`config digest ${config.digest} ≠ source ${source.configDigest}`);
    }
    const diffIds = parseConfig(await readAll(await archive.fetchBlob(config)), "config")
      .rootfs.diff_ids;
    if (JSON.stringify(diffIds) !== JSON.stringify(source.diffIds)) {
      throw new Error(`diffIDs ${diffIds.join(", ")} ≠ source ${source.diffIds.join(", ")}`);
    }
    for (const [i, layer] of layers.entries()) {
      const actual = await diffIdOf(await archive.fetchBlob(layer));
      if (actual !== source.diffIds[i]) {
        throw new Error(`layer ${i + 1} unpacks to ${actual}, not ${source.diffIds[i]}`);
      }
    }
    const count = plural(layers.length, "layer");
    return `OK: ${names.join(", ")} · image ID ${short(config.digest)} · ${count}, diffIDs match`;
  } finally {
    await archive.close();
  }
}

// ---------------------------------------------------------------------------------
// The demo

interface Registry {
  url: string;
  what: string;
  username?: string;
  password?: string;
  stop(): Promise<void>;
}

async function startInProcess(): Promise<Registry> {
  const users = { alice: "demo-password" };
  const registry = await startTestRegistry({ auth: "bearer", users });
  return {
    url: registry.url,
    what: "in-process test registry, token auth",
    username: "alice",
    password: users.alice,
    stop: () => registry.close(),
  };
}

async function startReal(): Promise<Registry> {
  const { startRegistry } = await import("../testing/docker_registry.ts");
  const basic = existsSync("/usr/bin/htpasswd");
  const registry = await startRegistry({ auth: basic ? "htpasswd" : "none" });
  return {
    url: registry.url,
    what: `docker-registry, ${basic ? "Basic auth" : "no auth"}`,
    username: registry.username,
    password: registry.password,
    stop: () => registry.stop(),
  };
}

async function main(args: string[]): Promise<number> {
  if (args.some((a) => a !== "--real")) {
    console.error("usage: deno task demo [--real]   (or: bun tests/demo.ts [--real])");
    console.error("  --real  run against Debian's docker-registry instead of the in-process one");
    return 2;
  }
  const real = args.includes("--real");
  // Deno: node:http reports a missing net permission as an uncaught error, so ask first.
  const deno = (globalThis as { Deno?: typeof Deno }).Deno;
  if (
    deno && (await deno.permissions.query({ name: "net", host: "127.0.0.1" })).state !== "granted"
  ) {
    console.error(
      `${red("✗")} the demo needs --allow-net=127.0.0.1: run it with \`deno task demo\`.`,
    );
    return 1;
  }
  const { REGISTRY_BINARY, registryAvailable } = real
    ? await import("../testing/docker_registry.ts")
    : { REGISTRY_BINARY: "", registryAvailable: false };
  if (real && !registryAvailable) {
    const where = REGISTRY_BINARY;
    console.error(`${red("✗")} --real needs Debian's docker-registry at ${where}: not found.`);
    console.error("  Install it (apt-get install docker-registry) or run the demo without --real.");
    return 1;
  }

  const runtime = process.versions.bun
    ? `Bun ${process.versions.bun}`
    : `Deno ${process.versions.deno ?? "?"}`;
  say(bold(`@apolo/images demo: push and pull with no Docker daemon (${runtime})`));
  const began = performance.now();
  const onInterrupt = () => interrupted.abort(new Error("interrupted"));
  process.on("SIGINT", onInterrupt);
  let dir: string | undefined;
  let registry: Registry | undefined;
  let failed = false;
  try {
    dir = await mkdtemp(join(tmpdir(), "apolo-images-demo-"));
    const source = await step(
      "Build a `docker save` archive in code: 3 uncompressed layers and a config",
      () => buildArchive(join(dir!, "hello.tar"), "demo/hello:1.0"),
      (b) => `${b.name} → hello.tar, ${formatBytes(b.bytes)}, image ID ${short(b.configDigest)}`,
    );

    registry = await step(
      real
        ? "Start Debian's docker-registry on a free loopback port"
        : "Start the in-process test registry on a free loopback port",
      real ? startReal : startInProcess,
      (r) => `${r.url} (${r.what})`,
    );

    const images = new Images({
      registries: { demo: registry.url },
      clusterName: "demo",
      owner: "alice",
      username: registry.username,
      password: registry.password,
      cacheDir: join(dir, "cache"),
    });
    const remote = images.parser.parseRemote("image:hello:1.0");

    const pushed = new StepPrinter();
    await step(
      `Push ${source.name} to ${remote}: layers gzipped on the way`,
      () =>
        images.push(new LocalImage("demo/hello", "1.0"), remote, {
          input: source.path,
          progress: pushed,
          signal: interrupted.signal,
        }),
      (r) => `${r}: ${formatBytes(pushed.total())} of layers read and gzipped`,
    );

    await step(
      "List the registry's repositories: list()",
      () => images.list(),
      (repos) => `${plural(repos.length, "repository")}: ${repos.map(String).join(", ")}`,
    );
    const untagged = images.parser.parseRemote("image:hello", { tagOption: "deny" });
    await step(
      `Show the tags of ${untagged}: tags()`,
      () => images.tags(untagged),
      (tags) => `${plural(tags.length, "tag")}: ${tags.map((t) => t.tag).join(", ")}`,
    );
    const digest = await step(
      "Size, tag info and manifest digest: size(), tagInfo(), digest()",
      async () => ({
        size: await images.size(remote),
        tag: await images.tagInfo(remote),
        digest: await images.digest(remote),
      }),
      ({ size, tag, digest }) =>
        `${formatBytes(size)} (${size} B) · Tag(${tag.name}, ${tag.size}) · ${short(digest)}`,
    ).then((r) => r.digest);

    const output = join(dir, "pulled.tar");
    const pulled = new StepPrinter();
    await step(
      `Pull ${remote} back into a docker-loadable archive`,
      async () => {
        const local = await images.pull(remote, new LocalImage("demo/hello", "1.0"), {
          output,
          progress: pulled,
          signal: interrupted.signal,
        });
        return { local, bytes: (await stat(output)).size };
      },
      ({ local, bytes }) =>
        `${local} → pulled.tar, ${formatBytes(bytes)} (${formatBytes(pulled.total())} received)`,
    );

    await step(
      "Check the pulled archive against the source (config digest, diffIDs)",
      () => checkArchive(output, source),
      (ok) => ok,
    );

    await step(
      `Remove the tag: rm(${remote}, ${short(digest)})`,
      () => images.rm(remote, digest),
      () => `manifest ${short(digest)} deleted`,
    );

    await step(
      "Show that it is gone: tags(), digest()",
      async () => {
        const tags = await images.tags(untagged).catch((e) => notFound(e, []));
        const still = await images.digest(remote).catch((e) => notFound(e, undefined));
        if (still) throw new Error(`${remote} still resolves to ${still}`);
        if (tags.length) throw new Error(`tags still listed: ${tags.map((t) => t.tag).join(", ")}`);
        return tags;
      },
      () => `no tags left; digest(${remote}) → not found`,
    );
  } catch (e) {
    failed = true;
    if (!(e instanceof StepFailed)) say(`${red("✗")} ${e instanceof Error ? e.message : e}`);
  } finally {
    process.off("SIGINT", onInterrupt);
    const cleanup: string[] = [];
    try {
      if (registry) {
        await registry.stop();
        cleanup.push("registry stopped");
      }
      if (dir) {
        await rm(dir, { recursive: true, force: true });
        cleanup.push("temporary files removed");
      }
      if (cleanup.length) say(dim(`    ${cleanup.join(", ")}`));
    } catch (e) {
      failed = true;
      say(`${red("✗")} cleaning up: ${e instanceof Error ? e.message : e}`);
    }
  }
  const took = seconds(performance.now() - began);
  const ending = interrupted.signal.aborted ? "interrupted" : "failed";
  say(
    failed
      ? red(bold(`Demo ${ending} after ${took}.`))
      : green(bold(`All ${stepNumber} steps passed in ${took}.`)),
  );
  return interrupted.signal.aborted ? 130 : failed ? 1 : 0;
}

/** `fallback` when `e` says the image is not there, else `e` again. */
function notFound<T>(e: unknown, fallback: T): T {
  if (e instanceof ImagesError && e.code === "NOT_FOUND") return fallback;
  throw e;
}

process.exitCode = await main(process.argv.slice(2));
