/**
 * Measuring one child process: wall time (here, with `performance.now()`), CPU time
 * (user + sys, the child and every descendant it waited for) and peak RSS (the largest
 * single process), as GNU `/usr/bin/time -f "%e %U %S %M"` reports them.
 *
 * @module
 */

import { execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";

/** GNU time (Debian package `time`). */
export const TIME_BINARY = "/usr/bin/time";

/** What one measured command cost. */
export interface Measurement {
  /** Wall-clock seconds. */
  wall: number;
  /** User CPU seconds. */
  user: number;
  /** System CPU seconds. */
  sys: number;
  /** Peak resident set size of the largest process, MiB. */
  rssMiB: number;
  /** CPU seconds the whole machine spent meanwhile (the registry's and other processes' too). */
  machineCpu: number;
}

/** Options of {@linkcode measure}. */
export interface MeasureOptions {
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Working directory. */
  cwd?: string;
  /** Kill it after this many milliseconds (default one hour). */
  timeoutMs?: number;
  /** First flush dirty pages (`sync`) and wait (up to 10 min) until the machine is nearly idle; see {@linkcode waitForIdle}. */
  waitIdle?: boolean;
}

/**
 * Runs `command args` under GNU time; throws with the end of its output when it fails.
 *
 * @example
 * ```ts ignore
 * import { measure } from "./measure.ts";
 * const m = await measure("skopeo", ["--version"]);
 * console.log(m.wall, m.user + m.sys, m.rssMiB);
 * ```
 */
export async function measure(
  command: string,
  args: string[],
  options: MeasureOptions = {},
): Promise<Measurement> {
  if (!existsSync(TIME_BINARY)) {
    throw new Error(`${TIME_BINARY} is missing: apt-get install time`);
  }
  if (options.waitIdle) {
    // Flush what earlier steps wrote (gigabytes of archives and registry blobs), so the
    // kernel's writeback of them is not counted against this command.
    execFileSync("sync");
    const waited = await waitForIdle();
    if (waited > 2) console.error(`  (waited ${waited.toFixed(0)} s for the machine to be idle)`);
  }
  const dir = await mkdtemp(join(tmpdir(), "bench-time-"));
  const report = join(dir, "time.txt");
  try {
    const busyBefore = await machineBusySeconds();
    const started = performance.now();
    const { code, output } = await new Promise<{ code: number; output: string }>(
      (resolve, reject) => {
        const child = spawn(
          TIME_BINARY,
          ["-f", "%e %U %S %M", "-o", report, command, ...args],
          {
            cwd: options.cwd,
            env: { ...process.env, ...options.env },
            stdio: ["ignore", "pipe", "pipe"],
          },
        );
        let output = "";
        const keep = (d: Uint8Array) =>
          output = (output + new TextDecoder().decode(d)).slice(-4000);
        child.stdout.on("data", keep);
        child.stderr.on("data", keep);
        const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 3_600_000);
        child.on("error", (e) => {
          clearTimeout(timer);
          reject(e);
        });
        child.on("close", (code) => {
          clearTimeout(timer);
          resolve({ code: code ?? -1, output });
        });
      },
    );
    const wall = (performance.now() - started) / 1000;
    const machineCpu = await machineBusySeconds() - busyBefore;
    if (code !== 0) {
      throw new Error(`${command} ${args.join(" ")} exited with ${code}:\n${output}`);
    }
    const last = (await readFile(report, "utf8")).trim().split("\n").pop()!;
    const [, user, sys, kib] = last.split(" ").map(Number);
    return { wall, user, sys, rssMiB: kib / 1024, machineCpu };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The bytes of every file under `dir` (e.g. a registry's `blobs` folder), 0 when it
 * does not exist.
 *
 * @example
 * ```ts ignore
 * import { treeBytes } from "./measure.ts";
 * console.log(await treeBytes("/tmp/storage/docker/registry/v2/blobs"));
 * ```
 */
export async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += await treeBytes(path);
    else if (entry.isFile()) total += (await stat(path)).size;
  }
  return total;
}

/**
 * CPU seconds every core of the machine has been busy since boot (`/proc/stat`,
 * assuming 100 clock ticks per second).
 *
 * @example
 * ```ts ignore
 * import { machineBusySeconds } from "./measure.ts";
 * console.log(await machineBusySeconds());
 * ```
 */
export async function machineBusySeconds(): Promise<number> {
  const line = (await readFile("/proc/stat", "utf8")).split("\n")[0];
  const [user, nice, system, , , irq, softirq, steal] = line.split(/\s+/).slice(1).map(Number);
  return (user + nice + system + irq + softirq + (steal || 0)) / 100;
}

/**
 * Waits until the machine is nearly idle (less than `maxBusy` cores busy over a second),
 * at most `timeoutMs`; returns the seconds waited. Other work running at the same time
 * (a test suite, say) would distort every figure.
 *
 * @example
 * ```ts ignore
 * import { waitForIdle } from "./measure.ts";
 * await waitForIdle();
 * ```
 */
export async function waitForIdle(maxBusy = 0.2, timeoutMs = 600_000): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < timeoutMs) {
    const before = await machineBusySeconds();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    if (await machineBusySeconds() - before < maxBusy) break;
  }
  return (performance.now() - started) / 1000;
}

/**
 * User + system CPU seconds a process has used so far (`/proc/<pid>/stat`), 0 when it
 * is gone.
 *
 * @example
 * ```ts ignore
 * import { processCpuSeconds } from "./measure.ts";
 * console.log(await processCpuSeconds(1));
 * ```
 */
export async function processCpuSeconds(pid: number): Promise<number> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime
  } catch {
    return 0;
  }
}

/**
 * The id of the process whose command line contains `text`, if there is one.
 *
 * @example
 * ```ts ignore
 * import { findProcess } from "./measure.ts";
 * console.log(await findProcess("/tmp/apolo-registry-x/config.yml"));
 * ```
 */
export async function findProcess(text: string): Promise<number | undefined> {
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmdline = await readFile(`/proc/${name}/cmdline`, "utf8");
      if (cmdline.includes(text)) return Number(name);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

/**
 * skopeo's blob-info cache (root: /var/lib/containers/cache, else under XDG_DATA_HOME),
 * deleted before a cold push so skopeo starts as empty-handed as we do.
 *
 * @example
 * ```ts ignore
 * import { skopeoBlobInfoCache } from "./measure.ts";
 * console.log(skopeoBlobInfoCache());
 * ```
 */
export function skopeoBlobInfoCache(): string {
  const file = "blob-info-cache-v1.boltdb";
  if (process.getuid?.() === 0) return join("/var/lib/containers/cache", file);
  const data = process.env.XDG_DATA_HOME || join(process.env.HOME ?? "/", ".local/share");
  return join(data, "containers/cache", file);
}
