/**
 * The container engines users judge our archives with, started for tests on private
 * sockets and folders under one temporary directory, and stopped by PID:
 *
 * - Docker Engine (`dockerd`, vfs storage, no iptables and no bridge: `docker run
 *   --network none` works) driven by the `docker` CLI over its own socket;
 * - containerd driven by `ctr` over its own socket (CRI plugin off);
 * - podman with its own storage (runs with runc and the ulimits this machine allows);
 * - a real `docker-registry` on 127.0.0.1 (see ./registry.ts), which every engine here
 *   reaches over plain http;
 * - umoci and skopeo, which need no start-up.
 *
 * A daemon that cannot run here (not root, binary missing, does not start) is left out
 * with the reason in `skipped`, so a test can skip its cells saying why — never silently.
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import { openSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { makeTempDir, removeTempDir } from "./fs.ts";
import { type RunningRegistry, startRegistry } from "./docker_registry.ts";
import { commandExists, Podman, run, type RunOptions, type RunResult } from "./tools.ts";

/** A started daemon: its process, and how to reach and stop it. */
interface Daemon {
  name: string;
  child: ChildProcess;
  log: string;
}

/** A CLI bound to one private daemon socket. */
export interface EngineCli {
  /** The daemon's socket path. */
  socket: string;
  /** Runs the CLI against the socket; throws with its stderr when it fails (unless check: false). */
  run(args: string[], options?: RunOptions): Promise<RunResult>;
}

/** The engines of one test file; see the module documentation. */
export interface Engines {
  /** The temporary directory everything lives in. */
  dir: string;
  /** The registry (no authentication). */
  registry: RunningRegistry;
  /** `host:port` of the registry, as engines name it in references. */
  registryHost: string;
  /** `docker` against a private `dockerd`, unless skipped. */
  docker?: EngineCli;
  /** `ctr` against a private containerd, unless skipped. */
  ctr?: EngineCli;
  /** podman with private storage, unless skipped. */
  podman?: Podman;
  /** Why an engine is not there, by engine name. */
  skipped: Record<string, string>;
  /** Each engine's version line. */
  versions: Record<string, string>;
  /** Stops the daemons by PID and removes every file. */
  stop(): Promise<void>;
}

/** Flags `podman run` needs on this machine. */
export const PODMAN_RUN_FLAGS: readonly string[] = [
  "--runtime",
  "/usr/sbin/runc",
  "--ulimit",
  "nofile=1024:1024",
  "--ulimit",
  "nproc=1024:1024",
  "--network",
  "none",
];

const isRoot = () => process.getuid?.() === 0;

function startDaemon(name: string, command: string, args: string[], logFile: string): Daemon {
  const out = openSync(logFile, "a");
  const child = spawn(command, args, { stdio: ["ignore", out, out] });
  return { name, child, log: logFile };
}

/** Polls `ready` until it holds or `ms` pass (bounded: 100 polls at most). */
async function waitFor(what: Daemon, ready: () => Promise<boolean>, ms: number): Promise<void> {
  const step = Math.max(50, Math.ceil(ms / 100));
  for (let waited = 0; waited < ms; waited += step) {
    if (what.child.exitCode !== null) break;
    if (await ready()) return;
    await new Promise((r) => setTimeout(r, step));
  }
  const log = await readFile(what.log, "utf8").catch(() => "");
  throw new Error(`${what.name} did not start within ${ms} ms:\n${log.slice(-2000)}`);
}

/** SIGTERM, then SIGKILL after `ms`; resolves when the process is gone. */
async function stopDaemon(daemon: Daemon, ms = 20_000): Promise<void> {
  const child = daemon.child;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  process.kill(child.pid!, "SIGTERM");
  const timer = setTimeout(() => {
    if (child.exitCode === null) process.kill(child.pid!, "SIGKILL");
  }, ms);
  await exited;
  clearTimeout(timer);
}

/** Unmounts whatever a daemon left mounted under `dir` (deepest first). */
async function unmountUnder(dir: string): Promise<void> {
  const mounts = (await readFile("/proc/self/mounts", "utf8")).split("\n")
    .map((l) => l.split(" ")[1]?.replace(/\\040/g, " "))
    .filter((p): p is string => p !== undefined && p.startsWith(dir + "/"))
    .sort((a, b) => b.length - a.length);
  for (const path of mounts) await run("umount", ["-l", path], { check: false });
}

function cli(command: string, socketFlags: string[], socket: string): EngineCli {
  return {
    socket,
    run: (args, options) => run(command, [...socketFlags, ...args], options),
  };
}

async function startDockerd(dir: string, daemons: Daemon[]): Promise<EngineCli> {
  const socket = join(dir, "docker.sock");
  const daemon = startDaemon("dockerd", "dockerd", [
    "--data-root",
    join(dir, "docker-data"),
    "--exec-root",
    join(dir, "docker-exec"),
    "--pidfile",
    join(dir, "docker.pid"),
    "--host",
    `unix://${socket}`,
    "--iptables=false",
    "--ip6tables=false",
    "--bridge=none",
    "--storage-driver=vfs",
  ], join(dir, "dockerd.log"));
  daemons.push(daemon);
  const docker = cli("docker", ["-H", `unix://${socket}`], socket);
  await waitFor(
    daemon,
    async () => (await docker.run(["version"], { check: false, timeoutMs: 5000 })).code === 0,
    30_000,
  );
  return docker;
}

async function startContainerd(dir: string, daemons: Daemon[]): Promise<EngineCli> {
  const socket = join(dir, "containerd.sock");
  const config = join(dir, "containerd.toml");
  await writeFile(
    config,
    [
      "version = 2",
      `root = "${join(dir, "containerd-root")}"`,
      `state = "${join(dir, "containerd-state")}"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      "[grpc]",
      `  address = "${socket}"`,
      "[ttrpc]",
      `  address = "${socket}.ttrpc"`,
      "[debug]",
      `  address = "${socket}.debug"`,
      "[metrics]",
      '  address = ""',
    ].join("\n") + "\n",
  );
  const daemon = startDaemon(
    "containerd",
    "containerd",
    ["--config", config],
    join(dir, "containerd.log"),
  );
  daemons.push(daemon);
  const ctr = cli("ctr", ["-a", socket], socket);
  await waitFor(
    daemon,
    async () => (await ctr.run(["version"], { check: false, timeoutMs: 5000 })).code === 0,
    30_000,
  );
  return ctr;
}

async function versionOf(command: string, args: string[]): Promise<string> {
  const out = await run(command, args, { check: false });
  return (out.stdout || out.stderr).trim().split("\n")[0];
}

/**
 * Starts the registry and every engine that can run here.
 *
 * @example
 * ```ts ignore
 * import { startEngines } from "./engines.ts";
 * const engines = await startEngines();
 * try {
 *   await engines.docker?.run(["version"]);
 * } finally {
 *   await engines.stop();
 * }
 * ```
 */
export async function startEngines(): Promise<Engines> {
  const dir = await makeTempDir("apolo-engines");
  const daemons: Daemon[] = [];
  const skipped: Record<string, string> = {};
  const versions: Record<string, string> = {};
  let registry: RunningRegistry | undefined;
  let podman: Podman | undefined;
  const stop = async () => {
    // Each daemon by its own PID, in reverse order of start.
    for (const daemon of [...daemons].reverse()) await stopDaemon(daemon).catch(() => {});
    await registry?.stop().catch(() => {});
    await podman?.cleanup().catch(() => {});
    await unmountUnder(dir);
    await removeTempDir(dir);
  };
  try {
    registry = await startRegistry();
    const registryHost = new URL(registry.url).host;
    const engines: Engines = { dir, registry, registryHost, skipped, versions, stop };
    const daemonsPossible = isRoot()
      ? undefined
      : "the daemons need root (they run as root in CI), and this process is not root";
    if (daemonsPossible) {
      skipped.docker = skipped.containerd = daemonsPossible;
    }
    if (!skipped.docker) {
      if (!(await commandExists("dockerd"))) skipped.docker = "dockerd is not installed";
      else {
        engines.docker = await startDockerd(dir, daemons).catch((e) => {
          skipped.docker = `dockerd did not start: ${(e as Error).message.split("\n")[0]}`;
          return undefined;
        });
      }
    }
    if (!skipped.containerd) {
      if (!(await commandExists("containerd"))) skipped.containerd = "containerd is not installed";
      else {
        engines.ctr = await startContainerd(dir, daemons).catch((e) => {
          skipped.containerd = `containerd did not start: ${(e as Error).message.split("\n")[0]}`;
          return undefined;
        });
      }
    }
    if (await commandExists("podman")) engines.podman = podman = await Podman.create();
    else skipped.podman = "podman is not installed";
    for (const tool of ["umoci", "skopeo"]) {
      if (!(await commandExists(tool))) skipped[tool] = `${tool} is not installed`;
    }
    if (engines.docker) {
      const server = await engines.docker.run(["version", "--format", "{{.Server.Version}}"]);
      versions["Docker Engine"] = server.stdout.trim();
    }
    if (engines.ctr) versions.containerd = await versionOf("containerd", ["--version"]);
    if (engines.podman) versions.podman = await versionOf("podman", ["--version"]);
    if (!skipped.umoci) versions.umoci = await versionOf("umoci", ["--version"]);
    if (!skipped.skopeo) versions.skopeo = await versionOf("skopeo", ["--version"]);
    versions.buildah = await versionOf("buildah", ["--version"]);
    versions["docker-registry"] = await versionOf("docker-registry", ["--version"]);
    return engines;
  } catch (e) {
    await stop();
    throw e;
  }
}
