/**
 * Ours against skopeo through a simulated internet link (./link.ts: 25 ms each way,
 * 200 Mbit/s shared, by default) and on loopback, in the same run, on the everyday
 * flows of a registry with many images on one base:
 *
 * - `cold`: a 70 MiB image (3 layers) pushed to an empty registry, empty caches;
 * - `again`: the same image to a new tag of the same repository;
 * - `second-repo`: the same image to a second repository of the same registry;
 * - `built-on`: an image made of its layers and one new 2 MiB layer, to a third one;
 * - `small-cold` / `small-again`: an image of 24 small layers (64–256 KiB), pushed, then
 *   pushed again to a new tag;
 * - `pull` / `small-pull`: both images pulled into a docker-loadable archive.
 *
 * Each tool gets a registry (Debian's `docker-registry`, no auth) and caches of its own
 * (ours: a new `XDG_CACHE_HOME`; skopeo: its blob-info cache deleted) and runs the steps
 * in that order; tools alternate within a run. Every figure is wall time (the CLI's
 * start included) and the bytes the client sent through the link. Prints one Markdown
 * table per path (link, loopback) with medians over the runs, ours ÷ skopeo in brackets,
 * and writes `bench/results/link-<time>.json`.
 *
 * ```sh
 * deno task bench --link [--runs N] [--only deno|bun] [--delay MS] [--mbit N] [--no-loopback]
 * ```
 *
 * @module
 */

import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { startRegistry } from "../testing/docker_registry.ts";
import { type Link, startLink } from "./link.ts";
import { CACHE_DIR, type LayerSpec, writeDockerArchive } from "./make_image.ts";
import { measure, skopeoBlobInfoCache } from "./measure.ts";
import { median } from "./report.ts";

type Tool = "deno" | "bun" | "skopeo";
type Path = "link" | "loopback";
const STEPS = [
  "cold",
  "again",
  "second-repo",
  "built-on",
  "small-cold",
  "small-again",
  "pull",
  "small-pull",
] as const;
type Step = (typeof STEPS)[number];

/** One measured command. */
interface Row {
  run: number;
  path: Path;
  tool: Tool;
  step: Step;
  /** Wall seconds. */
  wall: number;
  /** Bytes the client sent (link only; 0 on loopback, where nothing counts them). */
  sent: number;
}

const CLI = fileURLToPath(new URL("../lib/cli/main.ts", import.meta.url));
const RESULTS_DIR = fileURLToPath(new URL("./results/", import.meta.url));
const KIB = 1024;
const MIB = 1024 * KIB;
const OWNER = "bench";

/** The three archives: base (70 MiB), built on it (+2 MiB), 24 small layers. */
async function makeArchives(): Promise<Record<"base" | "derived" | "small", string>> {
  const dir = join(CACHE_DIR, "link-images-v1");
  const base: LayerSpec[] = [36, 22, 12].map((mib, i) => ({
    seed: `link base ${i}`,
    bytes: mib * MIB,
    id: `link base ${i}`,
  }));
  const top: LayerSpec = { seed: "link top", bytes: 2 * MIB, id: "link top" };
  // 64–256 KiB, spread evenly on a log scale.
  const small: LayerSpec[] = Array.from({ length: 24 }, (_, i) => ({
    seed: `link small ${i}`,
    bytes: Math.round(64 * KIB * 4 ** (i / 23)),
    id: `link small ${i}`,
  }));
  const files = {
    base: join(dir, "base.tar"),
    derived: join(dir, "derived.tar"),
    small: join(dir, "small.tar"),
  };
  const done = join(dir, "complete");
  if (existsSync(done)) return files;
  await mkdir(dir, { recursive: true });
  console.error(`making the link benchmark's images in ${dir}`);
  await writeDockerArchive(files.base, base, "bench/base:latest");
  await writeDockerArchive(files.derived, [...base, top], "bench/derived:latest");
  await writeDockerArchive(files.small, small, "bench/small:latest");
  await writeFile(done, "");
  return files;
}

function parseOptions(args: string[]) {
  const { values } = parseArgs({
    args: args.filter((a) => a !== "--link"),
    strict: true,
    options: {
      runs: { type: "string", default: "1" },
      only: { type: "string" },
      delay: { type: "string", default: "25" },
      mbit: { type: "string", default: "200" },
      "no-loopback": { type: "boolean" },
      "no-wait": { type: "boolean" },
    },
  });
  const ours: Tool[] = values.only === "deno" || values.only === "bun"
    ? [values.only]
    : ["deno", "bun"];
  return {
    runs: Math.max(1, Number(values.runs)),
    tools: [...ours, "skopeo"] as Tool[],
    delayMs: Number(values.delay),
    mbit: Number(values.mbit),
    paths: (values["no-loopback"] ? ["link"] : ["link", "loopback"]) as Path[],
    waitIdle: !values["no-wait"],
  };
}

/**
 * Runs the link benchmark; see the module documentation.
 *
 * @example
 * ```ts ignore
 * await linkBench(["--link", "--runs", "3"]);
 * ```
 */
export async function linkBench(args: string[]): Promise<void> {
  const opts = parseOptions(args);
  const archives = await makeArchives();
  const work = await mkdtemp(join(tmpdir(), "apolo-link-bench-"));
  const denoDir = process.env.DENO_DIR ||
    JSON.parse(execFileSync("deno", ["info", "--json"], { encoding: "utf8" })).denoDir;
  const runtimeEnv = {
    DENO_DIR: denoDir,
    BUN_RUNTIME_TRANSPILER_CACHE_PATH: join(CACHE_DIR, "bun-transpiler"),
    DOCKER_CONFIG: join(work, "no-docker-config"),
  };
  const rows: Row[] = [];
  let serial = 0;
  try {
    for (let run = 1; run <= opts.runs; run++) {
      for (const path of opts.paths) {
        for (const tool of opts.tools) {
          const registry = await startRegistry();
          const link: Link | undefined = path === "link"
            ? await startLink({
              target: registry.host,
              delayMs: opts.delayMs,
              mbitPerSecond: opts.mbit,
            })
            : undefined;
          const host = link?.host ?? registry.host;
          const cache = join(work, `cache-${++serial}`);
          if (tool === "skopeo") await rm(skopeoBlobInfoCache(), { force: true });
          const push = (archive: string, name: string, repo: string, tag: string) =>
            tool === "skopeo"
              ? [
                "skopeo",
                "copy",
                "-q",
                "--dest-tls-verify=false",
                `docker-archive:${archive}`,
                `docker://${host}/${OWNER}/${repo}:${tag}`,
              ]
              : [
                ...ours(tool, host),
                "push",
                "--input",
                archive,
                name,
                `image:${repo}:${tag}`,
              ];
          const pull = (repo: string, tag: string) => {
            const out = join(work, `pulled-${++serial}.tar`);
            return tool === "skopeo"
              ? [
                "skopeo",
                "copy",
                "-q",
                "--src-tls-verify=false",
                `docker://${host}/${OWNER}/${repo}:${tag}`,
                `docker-archive:${out}:${repo}:${tag}`,
              ]
              : [...ours(tool, host), "pull", "--output", out, `image:${repo}:${tag}`];
          };
          const commands: Record<Step, string[]> = {
            "cold": push(archives.base, "bench/base:latest", "base", "v1"),
            "again": push(archives.base, "bench/base:latest", "base", "v2"),
            "second-repo": push(archives.base, "bench/base:latest", "second", "v1"),
            "built-on": push(archives.derived, "bench/derived:latest", "derived", "v1"),
            "small-cold": push(archives.small, "bench/small:latest", "small", "v1"),
            "small-again": push(archives.small, "bench/small:latest", "small", "v2"),
            "pull": pull("base", "v1"),
            "small-pull": pull("small", "v1"),
          };
          try {
            for (const step of STEPS) {
              const [command, ...rest] = commands[step];
              const before = link?.bytes.up ?? 0;
              const m = await measure(command, rest, {
                env: { ...runtimeEnv, XDG_CACHE_HOME: cache },
                waitIdle: opts.waitIdle && step === "cold",
              });
              const sent = (link?.bytes.up ?? 0) - before;
              rows.push({ run, path, tool, step, wall: m.wall, sent });
              console.error(
                `  run ${run} ${path} ${tool} ${step}: ${m.wall.toFixed(2)} s` +
                  (link ? `, sent ${(sent / MIB).toFixed(2)} MiB` : ""),
              );
            }
          } finally {
            await link?.close();
            await registry.stop();
          }
        }
      }
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const table = formatLinkTables(rows, opts);
  console.log(table);
  await mkdir(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `link-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  await writeFile(file, JSON.stringify({ options: opts, rows, table }, null, 2) + "\n");
  console.error(`results: ${file}`);

  function ours(tool: Tool, host: string): string[] {
    const cli = tool === "deno" ? ["deno", "run", "-A", CLI] : ["bun", CLI];
    return [...cli, "--registry", `http://${host}`, "--owner", OWNER];
  }
}

/** One Markdown table per path: median wall (and bytes sent), ours ÷ skopeo. */
function formatLinkTables(
  rows: Row[],
  opts: { tools: Tool[]; paths: Path[]; delayMs: number; mbit: number },
): string {
  const out: string[] = [];
  for (const path of opts.paths) {
    const title = path === "link"
      ? `Through the link (${opts.delayMs} ms each way, ${opts.mbit} Mbit/s)`
      : "On loopback";
    out.push(`${title}: median wall seconds${path === "link" ? ", MiB sent" : ""}`, "");
    out.push(`| step | ${opts.tools.join(" | ")} |`);
    out.push(`| --- | ${opts.tools.map(() => "---:").join(" | ")} |`);
    for (const step of STEPS) {
      const of = (tool: Tool) =>
        rows.filter((r) => r.path === path && r.tool === tool && r.step === step);
      const wall = (tool: Tool) => median(of(tool).map((r) => r.wall));
      const sent = (tool: Tool) => median(of(tool).map((r) => r.sent)) / MIB;
      const cells = opts.tools.map((tool) => {
        const ratio = tool === "skopeo" ? "" : ` (${(wall(tool) / wall("skopeo")).toFixed(2)})`;
        const bytes = path === "link" && !step.includes("pull")
          ? `, ${sent(tool).toFixed(1)} MiB`
          : "";
        return `${wall(tool).toFixed(2)} s${ratio}${bytes}`;
      });
      out.push(`| ${step} | ${cells.join(" | ")} |`);
    }
    out.push("");
  }
  return out.join("\n");
}
