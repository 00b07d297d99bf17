/**
 * Measures the command line against the hostile registry (testing/hostile_registry.ts):
 * what a second origin receives, how long stalled bodies take, the memory and requests of
 * listings without end, what a `file:` Location does, what reaches stderr.
 *
 *   deno run -A bench/hostile.ts [--cli lib/cli/main.ts] [--bun] [--cap 60]
 *
 * `--cli` picks the command line to measure (e.g. an older copy of `lib/`), `--bun` runs
 * it with Bun, `--cap` kills a run after that many seconds (reported as "> cap").
 * Prints one line per case: seconds, peak RSS (MiB), requests, and what was seen.
 */

import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import {
  bearerChallenge,
  type HostileHandler,
  imageHandler,
  ociError,
  peakRssMiB,
  servedImage,
  sha256,
  stalledBody,
  startHostileRegistry,
} from "../testing/hostile_registry.ts";
import { docker25SaveEntries, layerTar, syntheticImage, writeTar } from "../testing/tools.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    cli: { type: "string", default: "lib/cli/main.ts" },
    bun: { type: "boolean", default: false },
    cap: { type: "string", default: "60" },
  },
});
const CLI = resolve(values.cli!);
const CAP_MS = Number(values.cap) * 1000;
const SECRET = "s3cret-PASSWORD-7f1c";
const MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const dir = await mkdtemp(join(tmpdir(), "hostile-bench-"));

interface Outcome {
  seconds: number;
  peakMiB: number;
  code: number | string;
  stderr: string;
}

async function runOnce(args: string[], env: Record<string, string>): Promise<Outcome> {
  const command = values.bun ? ["bun", CLI] : [process.execPath, "run", "-A", "--quiet", CLI];
  const started = performance.now();
  const child = spawn(command[0], [...command.slice(1), ...args], {
    env: { ...process.env, NO_COLOR: "1", XDG_CACHE_HOME: join(dir, "cache"), ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (d: Uint8Array) => stderr += new TextDecoder().decode(d));
  const done = new Promise<number | string>((r) =>
    child.on("close", (code, signal) => r(code ?? String(signal)))
  );
  const timer = setTimeout(() => child.kill("SIGKILL"), CAP_MS);
  const peak = await peakRssMiB(child.pid!, done);
  const code = await done;
  clearTimeout(timer);
  const seconds = (performance.now() - started) / 1000;
  return { seconds, peakMiB: Math.round(peak), code, stderr };
}

async function measure(
  name: string,
  handler: HostileHandler,
  args: string[],
  report: (
    o: Outcome,
    requests: {
      origin: string;
      host: string;
      body: string;
      headers: Record<string, string>;
      url: string;
      method: string;
    }[],
    peakInFlight: number,
  ) => string,
  env: Record<string, string> = {},
): Promise<void> {
  const registry = await startHostileRegistry(handler);
  try {
    const o = await runOnce(args, { APOLO_REGISTRY: registry.a, APOLO_OWNER: "alice", ...env });
    const time = o.code === "SIGKILL"
      ? `> ${CAP_MS / 1000} s (killed)`
      : `${o.seconds.toFixed(1)} s`;
    console.log(
      `${name}: ${time}, exit ${o.code}, peak ${o.peakMiB} MiB, ${registry.requests.length} requests; ${
        report(o, registry.requests, registry.peakInFlight())
      }`,
    );
  } finally {
    await registry.close();
  }
}

const withSecret = { APOLO_USERNAME: "alice", APOLO_TOKEN: SECRET };

// 1. The OAuth2 password form redirected with 307 to another port.
await measure(
  "307 token redirect to another port",
  (_q, res, ctx) => {
    const r = ctx.request;
    if (r.url.startsWith("/token")) {
      if (r.origin === "A") {
        res.writeHead(307, { location: `${ctx.b}/token` });
        return void res.end();
      }
      res.writeHead(200, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ token: "t" }));
    }
    if (!r.headers.authorization) return bearerChallenge(res, `${ctx.a}/token`);
    ociError(res, 404, "manifest unknown");
  },
  ["digest", "image:app:1"],
  (_o, requests) => {
    const leaked = requests.filter((r) => r.origin === "B" && r.body.includes(SECRET)).length;
    return `${leaked} requests carrying the password reached origin B`;
  },
  withSecret,
);

// 2. Stalled bodies.
const image = servedImage(new Uint8Array(64 * 1024).fill(7));
const stalling = (what: "manifest" | "blob"): HostileHandler =>
  imageHandler(image, {
    // The manifest padded past 1 KiB, so the stall comes in the middle of the document.
    manifest: (bytes, type, res) =>
      what === "manifest" &&
      (stalledBody(res, { "content-type": type }, new Uint8Array([...bytes, ...spaces])), true),
    blob: (digest, bytes, res) =>
      what === "blob" && digest === image.layerDigest && (stalledBody(res, {}, bytes), true),
  });
const spaces = new Uint8Array(4096).fill(0x20);
const stallArgs = values.cli === "lib/cli/main.ts" ? ["--stall-timeout", "5"] : [];
await measure(
  `size, manifest body stalled after 1 KiB${stallArgs.length ? " (--stall-timeout 5)" : ""}`,
  stalling("manifest"),
  [...stallArgs, "size", "image:app:1"],
  (o) => o.stderr.trim().split("\n").pop()!.slice(0, 120),
);
await measure(
  `pull, blob body stalled after 1 KiB${stallArgs.length ? " (--stall-timeout 5)" : ""}`,
  stalling("blob"),
  [...stallArgs, "pull", "-q", "image:app:1", "--output", join(dir, "out.tar")],
  (o) => o.stderr.trim().split("\n").pop()!.slice(0, 120),
);

// 3. Endless listings: unique pages of 20,000 tags.
await measure(
  "tags, endless pages of 20,000",
  (_q, res, ctx) => {
    const url = new URL(ctx.request.url, ctx.a);
    if (url.pathname === "/v2/") return void res.end("{}");
    const page = Number(url.searchParams.get("page") ?? 0);
    res.writeHead(200, {
      "content-type": "application/json",
      link: `<${url.pathname}?page=${page + 1}&n=20000>; rel="next"`,
    });
    res.end(JSON.stringify({
      tags: Array.from({ length: 20_000 }, (_, i) => `p${page}-tag-${i}-${"x".repeat(64)}`),
    }));
  },
  ["tags", "image:app"],
  (o) => o.stderr.trim().split("\n").pop()!.slice(0, 120),
);

const lookupImage = servedImage(new Uint8Array(100));
await measure(
  "tags -l, 2,000 tags",
  async (_q, res, ctx) => {
    const url = ctx.request.url;
    if (url === "/v2/") return void res.end("{}");
    if (url.includes("tags/list")) {
      return void res.end(
        JSON.stringify({ tags: Array.from({ length: 2000 }, (_, i) => `v${i}`) }),
      );
    }
    await new Promise((r) => setTimeout(r, 20));
    res.writeHead(200, {
      "content-type": MANIFEST,
      "docker-content-digest": lookupImage.manifestDigest,
    });
    res.end(lookupImage.manifest);
  },
  ["tags", "-l", "image:app"],
  (_o, _r, peak) => `${peak} requests at once at the peak`,
);

// 4. An upload Location with a file: URL.
const target = join(dir, "target");
await writeFile(target, "untouched");
const input = join(dir, "in.tar");
await writeTar(input, docker25SaveEntries(syntheticImage([layerTar({ a: "a" })]), "app", "1"));
await measure(
  "push, upload Location file:",
  (_q, res, ctx) => {
    const r = ctx.request;
    if (r.url === "/v2/") return void res.end("{}");
    if (r.method === "HEAD") return ociError(res, 404, "unknown");
    if (r.method === "POST") {
      res.writeHead(202, { location: `file://${target}` });
      return void res.end();
    }
    res.writeHead(201, { "docker-content-digest": sha256(new Uint8Array()) });
    res.end();
  },
  ["push", "-q", "--input", input, "app:1", "image:app:1"],
  (o) => o.stderr.trim().split("\n").pop()!.slice(0, 120) || "(nothing on stderr)",
);
console.log(
  `  the file: target now holds ${JSON.stringify((await readFile(target, "utf8")).slice(0, 20))}`,
);

// 5. Escape sequences and a long platform list.
await measure(
  "size, OCI error with ESC/OSC and a newline",
  (_q, res) => ociError(res, 403, "denied\x1b]0;pwned\x07\napolo-images: forged"),
  ["size", "image:app:1"],
  (o) =>
    `stderr has ${o.stderr.split("\x1b").length - 1} ESC bytes and ${
      o.stderr.split("\n").filter(Boolean).length
    } lines`,
);
const child = sha256(new Uint8Array([1]));
const index = new TextEncoder().encode(JSON.stringify({
  schemaVersion: 2,
  mediaType: "application/vnd.oci.image.index.v1+json",
  manifests: Array.from({ length: 15_000 }, (_, i) => ({
    mediaType: MANIFEST,
    digest: child,
    size: 1,
    platform: { os: `os${i}`, architecture: "arch" },
  })),
}));
await measure(
  "pull, index of 15,000 platforms, none matching",
  (_q, res, ctx) => {
    if (ctx.request.url === "/v2/") return void res.end("{}");
    res.writeHead(200, {
      "content-type": "application/vnd.oci.image.index.v1+json",
      "docker-content-digest": sha256(index),
    });
    res.end(index);
  },
  ["pull", "-q", "image:app:1", "--output", join(dir, "p.tar")],
  (o) => `stderr ${o.stderr.length} bytes`,
);

await rm(dir, { recursive: true, force: true });
