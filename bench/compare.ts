/**
 * Ours against skopeo, in the same run, on the benchmark image (./make_image.ts) and
 * Debian's `docker-registry` on loopback:
 *
 * - `push-cold`: the `docker save` archive to a registry with fresh storage and empty
 *   caches (ours: a new `XDG_CACHE_HOME`; skopeo: its blob-info cache deleted);
 * - `push-again`: the same archive to a new tag of the same registry, caches kept;
 * - `pull-docker`: into a docker-loadable archive (skopeo: `docker-archive:`);
 * - `pull-oci`: into an OCI archive (skopeo: `oci-archive:`);
 * - `download`: the unavoidable work of a pull, every blob fetched at once with
 *   `curl | tee <file> | sha256sum`.
 *
 * Pulls read an image seeded once per invocation from the OCI archive (skopeo's gzip).
 * Every figure is wall time, CPU time (user + sys), peak RSS, and the bytes the registry
 * stores after a push or the size of the archive a pull writes. Prints one Markdown
 * table per runtime (medians over the runs) and writes `bench/results/<time>.json`.
 *
 * The machine may be shared (a test suite running meanwhile distorts every figure):
 * before each measured command the run waits, up to 10 minutes, for the CPUs to be
 * nearly idle (`--no-wait` skips that), and a measurement during which other processes
 * (neither the command, the registry nor this script) used more than a tenth of a core
 * is taken again, up to `--retries` times (default 2), keeping the least disturbed.
 *
 * `--no-ffi` measures the portable path, as where no native gzip library can load: Deno
 * runs without `--allow-ffi` (its automatic choice, libdeflate as WebAssembly) and Bun with
 * `--gzip-engine libdeflate-wasm` (its choice where the libraries are missing).
 * `--push-only` skips the pulls.
 *
 * ```sh
 * deno run -A bench/compare.ts [--small] [--runs N] [--only deno|bun] [--no-wait] [--retries N]
 *   [--no-ffi] [--push-only]
 * ```
 *
 * With `--link`, the comparison through a simulated internet link (./link_bench.ts).
 *
 * @module
 */

import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { type RunningRegistry, startRegistry } from "../testing/docker_registry.ts";
import { run } from "../testing/tools.ts";
import { CACHE_DIR, ensureImage, IMAGE_NAME } from "./make_image.ts";
import { GzipEngines } from "../lib/compression/gzip_engines.ts";
import {
  findProcess,
  measure,
  type Measurement,
  processCpuSeconds,
  skopeoBlobInfoCache,
  treeBytes,
} from "./measure.ts";
import { disturbance, formatTables, median } from "./report.ts";

/** A runtime running our CLI. */
export type Runtime = "deno" | "bun";
/** Who did the work. */
export type Tool = Runtime | "skopeo" | "baseline";
/** What was measured. */
export type Step = "push-cold" | "push-again" | "pull-docker" | "pull-oci" | "download";

/** One measured command. */
export interface Row extends Measurement {
  /** Run number, from 1. */
  run: number;
  /** What was measured. */
  step: Step;
  /** Who did it. */
  tool: Tool;
  /** Bytes stored in the registry (pushes) or written (pulls and downloads). */
  bytes: number;
  /** CPU seconds the registry used meanwhile. */
  registryCpu: number;
  /** CPU seconds other processes used meanwhile (the machine's less ours, the registry's, this script's). */
  foreignCpu: number;
  /** Measurements made to get this one (more than 1 when others disturbed it). */
  attempts: number;
}

const CLI = fileURLToPath(new URL("../lib/cli/main.ts", import.meta.url));
const RESULTS_DIR = fileURLToPath(new URL("./results/", import.meta.url));
const OWNER = "bench";
const MIB = 2 ** 20;

const USAGE = "usage: deno task bench [--small] [--runs N] [--only deno|bun] [--no-wait] " +
  "[--retries N] [--no-ffi] [--push-only]";

/** A mistake in the command line: printed with the usage, without a stack trace. */
class UsageError extends Error {}

/** The command-line options; unknown ones are refused rather than ignored. */
function parseOptions(args: string[]) {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      options: {
        small: { type: "boolean" },
        runs: { type: "string" },
        retries: { type: "string" },
        only: { type: "string" },
        "no-wait": { type: "boolean" },
        "no-ffi": { type: "boolean" },
        "push-only": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const values = parsed.values;
  const count = (flag: "runs" | "retries", fallback: number, min: number) => {
    const n = Number(values[flag] ?? fallback);
    if (!Number.isInteger(n) || n < min) {
      throw new UsageError(`--${flag} takes an integer ≥ ${min}`);
    }
    return n;
  };
  const only = values.only ?? "";
  if (only !== "" && only !== "deno" && only !== "bun") {
    throw new UsageError("--only takes deno or bun");
  }
  return {
    help: values.help ?? false,
    small: values.small ?? false,
    runs: count("runs", 1, 1),
    retries: count("retries", 2, 0),
    runtimes: (only ? [only] : ["deno", "bun"]) as Runtime[],
    waitIdle: !values["no-wait"],
    noFfi: values["no-ffi"] ?? false,
    pushOnly: values["push-only"] ?? false,
  };
}

/** The gzip engine a push picks here by default (or without FFI), with its level. */
async function gzipEngineInUse(noFfi: boolean): Promise<string> {
  const engines = new GzipEngines(noFfi ? "libdeflate-wasm" : "auto");
  try {
    const chosen = await engines.choose();
    return `${chosen.engine} level ${chosen.level}`;
  } finally {
    engines.close();
  }
}

/** The first line a command prints, or "unknown". */
function firstLine(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: "utf8" }).trim().split("\n")[0];
  } catch {
    return "unknown";
  }
}

/** The digests of the seeded image's config and layers. */
async function pullBlobs(registry: RunningRegistry): Promise<string[]> {
  const res = await fetch(`${registry.url}/v2/${OWNER}/pull/manifests/src`, {
    headers: {
      accept: "application/vnd.oci.image.manifest.v1+json, " +
        "application/vnd.docker.distribution.manifest.v2+json",
    },
  });
  if (!res.ok) throw new Error(`manifest of the pull image: HTTP ${res.status}`);
  const manifest = await res.json();
  return [manifest.config, ...manifest.layers].map((d: { digest: string }) => d.digest);
}

/** The bash script of the `download` baseline: every blob at once, hashed and written. */
function downloadScript(registry: RunningRegistry, digests: string[], dir: string): string {
  const lines = digests.map((digest) => {
    const file = join(dir, digest.slice("sha256:".length));
    return `(curl -sSf ${registry.url}/v2/${OWNER}/pull/blobs/${digest} | tee ${file} | ` +
      `sha256sum > ${file}.sum) & pids="$pids $!"`;
  });
  return `set -o pipefail\npids=""\n${lines.join("\n")}\n` +
    `for p in $pids; do wait $p || exit 1; done\n`;
}

/** Runs the comparison; see the module documentation. */
async function main(args: string[]): Promise<void> {
  const opts = parseOptions(args);
  if (opts.help) {
    console.log(USAGE);
    return;
  }
  const image = await ensureImage({ small: opts.small });
  const work = await mkdtemp(join(tmpdir(), "apolo-bench-"));
  const denoDir = process.env.DENO_DIR ||
    JSON.parse(execFileSync("deno", ["info", "--json"], { encoding: "utf8" })).denoDir;
  const runtimeEnv = {
    DENO_DIR: denoDir, // XDG_CACHE_HOME changes below; keep the module caches warm
    BUN_RUNTIME_TRANSPILER_CACHE_PATH: join(CACHE_DIR, "bun-transpiler"),
    DOCKER_CONFIG: join(work, "no-docker-config"),
  };
  // Without FFI: Deno with every permission the CLI uses but --allow-ffi, Bun on the
  // engine it picks where the native libraries are missing.
  const denoPermissions = opts.noFfi
    ? ["--allow-net", "--allow-read", "--allow-write", "--allow-env", "--allow-run"]
    : ["-A"];
  const cli = (runtime: Runtime) => runtime === "deno" ? ["run", ...denoPermissions, CLI] : [CLI];
  const pushEngine = (runtime: Runtime) =>
    opts.noFfi && runtime === "bun" ? ["--gzip-engine", "libdeflate-wasm"] : [];
  let caches = 0;
  const freshCache = () => join(work, `xdg-cache-${++caches}`);
  const environment = {
    cpus: cpus().length,
    cpu: cpus()[0]?.model,
    deno: firstLine("deno", ["--version"]),
    bun: firstLine("bun", ["--version"]),
    skopeo: firstLine("skopeo", ["--version"]),
    registry: firstLine("docker-registry", ["--version"]),
    commit: firstLine("git", ["rev-parse", "--short", "HEAD"]),
    libFilesChanged: firstLine("sh", ["-c", "git status --porcelain lib | wc -l"]),
    gzipEngine: await gzipEngineInUse(opts.noFfi),
    loadBefore: loadavg(),
  };

  // Ctrl-C or a kill: stop the registries (their storage can hold gigabytes), then leave.
  const registries = new Set<RunningRegistry>();
  const newRegistry = async () => {
    const started = await startRegistry();
    registries.add(started);
    return started;
  };
  const stopRegistry = async (r: RunningRegistry) => {
    registries.delete(r);
    await r.stop();
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, async () => {
      console.error(`${signal}: stopping the registries`);
      await Promise.allSettled([...registries].map((r) => r.stop()));
      await rm(work, { recursive: true, force: true });
      process.exit(130);
    });
  }

  /** Measures a command while watching the registry's CPU and everybody else's. */
  const observe = async (
    registry: RunningRegistry,
    command: string,
    cmdArgs: string[],
    env: Record<string, string> = {},
  ) => {
    const pid = await findProcess(join(dirname(registry.storageDir), "config.yml"));
    const registryBefore = pid ? await processCpuSeconds(pid) : 0;
    const self = process.cpuUsage();
    const m = await measure(command, cmdArgs, { env, waitIdle: opts.waitIdle });
    const registryCpu = pid ? await processCpuSeconds(pid) - registryBefore : 0;
    const selfUsage = process.cpuUsage(self);
    const selfCpu = (selfUsage.user + selfUsage.system) / 1e6;
    return { ...m, registryCpu, foreignCpu: m.machineCpu - m.user - m.sys - registryCpu - selfCpu };
  };
  const ours = (runtime: Runtime, registry: RunningRegistry, cache: string, cmd: string[]) =>
    observe(registry, runtime, [
      ...cli(runtime),
      "--registry",
      registry.url,
      "--owner",
      OWNER,
      ...cmd,
    ], {
      ...runtimeEnv,
      XDG_CACHE_HOME: cache,
    });
  const skopeo = (registry: RunningRegistry, cmd: string[]) =>
    observe(registry, "skopeo", ["copy", "-q", ...cmd]);

  /** Runs `attempt` until no row of it was disturbed, at most 1 + retries times. */
  const undisturbed = async (attempt: () => Promise<Omit<Row, "attempts">[]>): Promise<Row[]> => {
    const worst = (rows: Omit<Row, "attempts">[]) => Math.max(...rows.map(disturbance));
    let best: Omit<Row, "attempts">[] | undefined;
    let attempts = 0;
    while (attempts++ <= opts.retries) {
      const rows = await attempt();
      if (!best || worst(rows) < worst(best)) best = rows;
      if (worst(rows) <= 0 || attempts > opts.retries) break;
      console.error(
        `  (others used ${
          worst(rows).toFixed(1)
        } s more CPU than allowed meanwhile: measuring again)`,
      );
    }
    return best!.map((r) => ({ ...r, attempts }));
  };

  /** Cold push, then re-push under a new tag, to a registry of its own. */
  const pushes = (run: number, who: Runtime | "skopeo") =>
    undisturbed(async () => {
      const registry = await newRegistry();
      const blobsDir = join(registry.storageDir, "docker/registry/v2/blobs");
      const cache = freshCache();
      const push = (tag: string) =>
        who === "skopeo"
          ? skopeo(registry, [
            "--dest-tls-verify=false",
            `docker-archive:${image.dockerArchive}`,
            `docker://${registry.host}/${OWNER}/img:${tag}`,
          ])
          : ours(who, registry, cache, [
            "push",
            ...pushEngine(who),
            "--input",
            image.dockerArchive,
            IMAGE_NAME,
            `image:img:${tag}`,
          ]);
      try {
        if (who === "skopeo") await rm(skopeoBlobInfoCache(), { force: true });
        const cold = await push("a");
        const coldBytes = await treeBytes(blobsDir);
        const again = await push("b");
        return [
          { run, step: "push-cold", tool: who, ...cold, bytes: coldBytes },
          { run, step: "push-again", tool: who, ...again, bytes: await treeBytes(blobsDir) },
        ];
      } finally {
        await stopRegistry(registry);
      }
    });

  /** A pull into an archive of `format`, by `who`, from the seeded registry. */
  const pull = (
    run: number,
    registry: RunningRegistry,
    who: Runtime | "skopeo",
    format: "docker" | "oci",
  ) =>
    undisturbed(async () => {
      const out = join(work, `pull-${who}.tar`);
      const m = who === "skopeo"
        ? await skopeo(registry, [
          "--src-tls-verify=false",
          `docker://${registry.host}/${OWNER}/pull:src`,
          `${format}-archive:${out}:${OWNER}/pull:src`,
        ])
        : await ours(who, registry, freshCache(), [
          "pull",
          ...(format === "oci" ? ["--format", "oci"] : []),
          "image:pull:src",
          "--output",
          out,
        ]);
      const bytes = (await stat(out)).size;
      await rm(out, { force: true });
      return [{ run, step: `pull-${format}`, tool: who, ...m, bytes }];
    });

  /** The unavoidable work of a pull, its sums checked. */
  const download = (run: number, registry: RunningRegistry, digests: string[]) =>
    undisturbed(async () => {
      const dir = join(work, "download");
      await mkdir(dir, { recursive: true });
      try {
        const m = await observe(registry, "bash", ["-c", downloadScript(registry, digests, dir)]);
        let bytes = 0;
        for (const digest of digests) {
          const file = join(dir, digest.slice("sha256:".length));
          const sum = (await readFile(`${file}.sum`, "utf8")).split(" ")[0];
          if (`sha256:${sum}` !== digest) {
            throw new Error(`download of ${digest}: got sha256 ${sum}`);
          }
          bytes += (await stat(file)).size;
        }
        return [{ run, step: "download", tool: "baseline", ...m, bytes }];
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

  const rows: Row[] = [];
  const record = (measured: Row[]) => {
    for (const row of measured) {
      rows.push(row);
      console.error(
        `run ${row.run} ${row.step.padEnd(11)} ${row.tool.padEnd(8)} wall ${
          row.wall.toFixed(2)
        } s` +
          `  cpu ${(row.user + row.sys).toFixed(2)} s  rss ${row.rssMiB.toFixed(0)} MiB` +
          `  ${(row.bytes / MIB).toFixed(1)} MiB  registry cpu ${row.registryCpu.toFixed(2)} s` +
          `  others ${row.foreignCpu.toFixed(2)} s`,
      );
    }
  };

  console.error(
    `image: ${image.dockerArchive} (${(image.meta.dockerArchiveBytes / MIB).toFixed(0)} MiB)`,
  );
  for (const runtime of opts.runtimes) { // fill the module caches before timing anything
    await run(runtime, [...cli(runtime), "--help"], { env: runtimeEnv });
  }
  const pullRegistry = await newRegistry();
  try {
    if (!opts.pushOnly) {
      await run("skopeo", [
        "copy",
        "-q",
        "--dest-tls-verify=false",
        `oci-archive:${image.ociArchive}`,
        `docker://${pullRegistry.host}/${OWNER}/pull:src`,
      ], { timeoutMs: 3_600_000 });
    }
    const digests = opts.pushOnly ? [] : await pullBlobs(pullRegistry);
    for (let r = 1; r <= opts.runs; r++) {
      const order: (Runtime | "skopeo")[] = r % 2
        ? ["skopeo", ...opts.runtimes]
        : [...[...opts.runtimes].reverse(), "skopeo"];
      for (const who of order) record(await pushes(r, who));
      if (opts.pushOnly) continue;
      record(await download(r, pullRegistry, digests));
      for (const format of ["docker", "oci"] as const) {
        for (const who of order) record(await pull(r, pullRegistry, who, format));
      }
    }
  } finally {
    await stopRegistry(pullRegistry);
    await rm(work, { recursive: true, force: true });
  }

  const table = formatTables(rows, opts.runtimes, image.meta, opts.runs, environment);
  console.log(table);
  const medians = Object.fromEntries(
    [...new Set(rows.map((r) => `${r.step} ${r.tool}`))].map((key) => {
      const of = rows.filter((r) => `${r.step} ${r.tool}` === key);
      const mid = (f: (r: Row) => number) => median(of.map(f));
      return [key, {
        wall: mid((r) => r.wall),
        cpu: mid((r) => r.user + r.sys),
        rssMiB: mid((r) => r.rssMiB),
        bytes: mid((r) => r.bytes),
      }];
    }),
  );
  await mkdir(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  const result = {
    date: new Date().toISOString(),
    options: opts,
    environment: { ...environment, loadAfter: loadavg() },
    image: image.meta,
    rows,
    medians,
    table,
  };
  await writeFile(file, JSON.stringify(result, null, 2) + "\n");
  console.error(`results: ${file}`);
}

if (import.meta.main) {
  try {
    const args = process.argv.slice(2);
    if (args.includes("--link")) await (await import("./link_bench.ts")).linkBench(args);
    else await main(args);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`${error.message}\n${USAGE}`);
      process.exit(2);
    }
    throw error;
  }
  process.exit(0);
}
