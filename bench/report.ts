/**
 * The Markdown tables of a comparison run: one per runtime, ours against skopeo.
 * Run it on a result file to print its tables again:
 *
 * ```sh
 * deno run -A bench/report.ts bench/results/<time>.json
 * ```
 *
 * @module
 */

import type { Row, Runtime, Step } from "./compare.ts";
import { readFile } from "node:fs/promises";
import process from "node:process";
import type { ImageMeta } from "./make_image.ts";

const MIB = 2 ** 20;

/**
 * The median of some numbers (NaN for none).
 *
 * @example
 * ```ts
 * import { median } from "./report.ts";
 * console.log(median([3, 1, 2])); // 2
 * ```
 */
export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * How much other processes disturbed a measurement: their CPU seconds beyond an allowance
 * of 0.3 s plus a tenth of a core over the wall time; above 0 means disturbed.
 *
 * @example
 * ```ts
 * import { disturbance } from "./report.ts";
 * console.log(disturbance({ foreignCpu: 0.2, wall: 10 }) <= 0); // true
 * ```
 */
export function disturbance(row: { foreignCpu: number; wall: number }): number {
  return row.foreignCpu - 0.3 - 0.1 * row.wall;
}

const STEPS: [Step, string][] = [
  ["push-cold", "push, cold"],
  ["push-again", "push again, new tag"],
  ["pull-docker", "pull → docker archive"],
  ["pull-oci", "pull → OCI archive"],
];

/**
 * One table per runtime: for each step the medians of wall time, CPU time, peak RSS and
 * bytes (stored by a push, written by a pull), ours and skopeo's with the ratio; pulls
 * also against the unavoidable work (`download`).
 *
 * @example
 * ```ts ignore
 * import { formatTables } from "./report.ts";
 * console.log(formatTables(rows, ["deno"], image.meta, 1, { deno: "deno 2" }));
 * ```
 */
export function formatTables(
  rows: Row[],
  runtimes: Runtime[],
  meta: ImageMeta,
  runs: number,
  environment: Record<string, unknown>,
): string {
  const pick = (step: Step, tool: string, field: (r: Row) => number) =>
    median(rows.filter((r) => r.step === step && r.tool === tool).map(field));
  const wall = (r: Row) => r.wall;
  const cpu = (r: Row) => r.user + r.sys;
  const rss = (r: Row) => r.rssMiB;
  const bytes = (r: Row) => r.bytes / MIB;
  const ratio = (a: number, b: number) => (b > 0 ? (a / b).toFixed(2) : "–");
  // † marks a figure from a measurement that other processes disturbed.
  const mark = (step: Step, tool: string) =>
    rows.some((r) => r.step === step && r.tool === tool && disturbance(r) > 0) ? "†" : "";
  const base = pick("download", "baseline", wall);
  const out: string[] = [
    `Image: ${(meta.dockerArchiveBytes / MIB).toFixed(0)} MiB docker archive, ` +
    `${meta.layers.length} layers (${meta.layersMiB.join(", ")} MiB), gzip -6 ratio ` +
    `${meta.gzipRatioSample.toFixed(2)}; ${environment.cpus} CPUs (load average before: ` +
    `${
      (environment.loadBefore as number[]).map((n) => n.toFixed(2)).join(" ")
    }); medians of ${runs} run(s); pushes gzip on ${environment.gzipEngine ?? "zlib"}.`,
    Number.isNaN(base)
      ? "No pulls measured."
      : `Unavoidable work of a pull (every blob at once, curl | tee | sha256sum): ` +
        `${base.toFixed(2)} s wall, ${pick("download", "baseline", cpu).toFixed(2)} s CPU, ` +
        `${pick("download", "baseline", bytes).toFixed(0)} MiB.`,
    `Other processes (not the command, the registry or the script) used at most ` +
    `${Math.max(...rows.map((r) => r.foreignCpu)).toFixed(1)} s of CPU during a measurement; ` +
    `${rows.filter((r) => r.attempts > 1).length} of ${rows.length} measurements were retried.`,
  ];
  for (const runtime of runtimes) {
    out.push(
      "",
      `${
        runtime === "deno" ? environment.deno : `bun ${environment.bun}`
      } vs ${environment.skopeo}`,
      "",
      "| step | wall s | skopeo | × | CPU s | skopeo | × | RSS MiB | skopeo | × | MiB¹ | skopeo | × | ÷ download² |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const [step, label] of STEPS) {
      if (!rows.some((r) => r.step === step)) continue; // not measured (--push-only)
      const cells = [label];
      for (const [field, digits] of [[wall, 2], [cpu, 2], [rss, 0], [bytes, 0]] as const) {
        const a = pick(step, runtime, field);
        const b = pick(step, "skopeo", field);
        const [ma, mb] = field === wall || field === cpu
          ? [mark(step, runtime), mark(step, "skopeo")]
          : ["", ""];
        cells.push(a.toFixed(digits) + ma, b.toFixed(digits) + mb, ratio(a, b));
      }
      cells.push(
        step.startsWith("pull")
          ? `${ratio(pick(step, runtime, wall), base)} (skopeo ${
            ratio(pick(step, "skopeo", wall), base)
          })`
          : "",
      );
      out.push(`| ${cells.join(" | ")} |`);
    }
  }
  out.push(
    "",
    "¹ stored in the registry after a push (blobs folder); size of the archive a pull writes.",
    "² pull wall time ÷ the unavoidable work's.",
    "† other processes used the CPUs meanwhile (beyond 0.3 s + 10 % of a core), even on the " +
      "least disturbed of the attempts: a figure to distrust.",
  );
  return out.join("\n");
}

if (import.meta.main) {
  const result = JSON.parse(await readFile(process.argv[2], "utf8"));
  const runtimes = [...new Set(result.rows.map((r: Row) => r.tool))].filter((t) =>
    t === "deno" || t === "bun"
  ) as Runtime[];
  console.log(
    formatTables(result.rows, runtimes, result.image, result.options.runs, result.environment),
  );
}
