/**
 * The real command line against a hostile registry (two listeners on 127.0.0.1 standing
 * for two hosts, see testing/hostile_registry.ts), on the runtime running the tests:
 * credentials never reach a second origin whatever the redirect; stalled bodies fail
 * within the stall timeout and Ctrl-C or `--timeout` end a stalled run; listings without
 * end stop with bounded memory and `tags -l` looks up a few tags at a time; `file:`
 * Locations are refused; escape sequences from the registry never reach the terminal.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runCli, type RunningCli, startCli } from "../../testing/cli.ts";
import { makeTempDir, removeTempDir } from "../../testing/fs.ts";
import {
  bearerChallenge,
  type HostileHandler,
  type HostileRegistry,
  IMAGE_MANIFEST,
  imageHandler,
  ociError,
  peakRssMiB,
  servedImage,
  sha256,
  stalledBody,
  startHostileRegistry,
} from "../../testing/hostile_registry.ts";
import { docker25SaveEntries, layerTar, syntheticImage, writeTar } from "../../testing/tools.ts";
import type { RunResult } from "../../testing/tools.ts";

const USER = "alice";
const SECRET = "s3cret-PASSWORD-7f1c";
const BASIC = btoa(`${USER}:${SECRET}`);

/** `bytes` followed by `spaces` spaces (JSON stays valid). */
function padded(bytes: Uint8Array, spaces: number): Uint8Array {
  const out = new Uint8Array(bytes.byteLength + spaces).fill(0x20);
  out.set(bytes);
  return out;
}

/** Every form in which the secret could travel. */
function carriesSecret(text: string): boolean {
  return text.includes(SECRET) || text.includes(encodeURIComponent(SECRET)) ||
    text.includes(BASIC);
}

/** Runs `fn` with a hostile registry answering through `handler`, closed after. */
async function withRegistry<T>(
  handler: HostileHandler,
  fn: (r: HostileRegistry) => Promise<T>,
): Promise<T> {
  const registry = await startHostileRegistry(handler);
  try {
    return await fn(registry);
  } finally {
    await registry.close();
  }
}

/** The command line's environment: the registry, no credentials unless `withSecret`. */
const env = (registry: HostileRegistry, withSecret = false): Record<string, string> => ({
  APOLO_REGISTRY: registry.a,
  APOLO_OWNER: USER,
  XDG_CACHE_HOME: cacheDir,
  DOCKER_CONFIG: join(dir, "no-docker-config"),
  ...(withSecret ? { APOLO_USERNAME: USER, APOLO_TOKEN: SECRET } : {}),
});

/**
 * Waits for a started command to end by itself; kills it (and fails) if it is still
 * running after `ms` — a bound far above the timeouts under test, not a measurement.
 */
async function ended(cli: RunningCli, ms = 60_000): Promise<RunResult> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const guard = new Promise<"hung">((resolve) => timer = setTimeout(() => resolve("hung"), ms));
  const result = await Promise.race([cli.done, guard]);
  clearTimeout(timer);
  if (result === "hung") {
    cli.kill("SIGKILL");
    await cli.done;
    assert.fail(`still running after ${ms / 1000} s; stderr: ${cli.stderr()}`);
  }
  return result;
}

/** stderr holds exactly one line, with no control character but its newline. */
function assertOneCleanLine(stderr: string): void {
  // deno-lint-ignore no-control-regex -- looking for control characters is the point
  assert.doesNotMatch(stderr, /[\x00-\x09\x0b-\x1f\x7f-\x9f]/, JSON.stringify(stderr));
  assert.equal(stderr.split("\n").filter(Boolean).length, 1, JSON.stringify(stderr));
}

let cacheDir = "";
let dir = "";
before(async () => {
  dir = await makeTempDir("apolo-hostile");
  cacheDir = join(dir, "cache");
});
after(async () => {
  await removeTempDir(dir);
});

describe("a hostile registry, through the command line", () => {
  describe("credentials stay with the origin they were given for", () => {
    for (const code of [301, 302, 303, 307, 308]) {
      it(`the token service's ${code} sends no password to another port, host or plain http`, async () => {
        for (const target of ["other port", "localhost", "0.0.0.0"]) {
          await withRegistry((_req, res, ctx) => {
            const { request } = ctx;
            const home = request.origin === "A" && request.host === `127.0.0.1:${ctx.portA}`;
            if (request.url.startsWith("/token")) {
              if (home) {
                const to = target === "other port"
                  ? `${ctx.b}/token`
                  : target === "localhost"
                  ? `http://localhost:${ctx.portA}/token`
                  : `http://0.0.0.0:${ctx.portB}/token`;
                res.writeHead(code, { location: to });
                res.end();
              } else {
                res.writeHead(200, { "content-type": "application/json" });
                res.end(JSON.stringify({ token: "from-elsewhere" }));
              }
              return;
            }
            if (!request.headers.authorization) return bearerChallenge(res, `${ctx.a}/token`);
            ociError(res, 404, "manifest unknown");
          }, async (registry) => {
            const result = await runCli(["digest", "image:app:1"], env(registry, true));
            assert.equal(result.code, 1, result.stderr);
            const away = registry.requests.filter((r) =>
              r.origin === "B" || r.host !== `127.0.0.1:${registry.portA}`
            );
            for (const r of away) {
              const seen = `${r.url}\n${JSON.stringify(r.headers)}\n${r.body}`;
              assert.ok(!carriesSecret(seen), `${code} to ${target}: ${seen}`);
            }
            // The form went to the token service once, and only there.
            const forms = registry.requests.filter((r) => carriesSecret(r.body));
            assert.ok(forms.every((r) => r.host === `127.0.0.1:${registry.portA}`));
            if (code === 307 || code === 308) {
              assert.equal(away.length, 0, `${code} to ${target}: ${JSON.stringify(away)}`);
              assert.match(result.stderr, /carrying credentials to another origin/);
            }
            assertOneCleanLine(result.stderr);
          });
        }
      });
    }

    it("a registry redirecting a Basic-authenticated request sends no header to the other origin", async () => {
      await withRegistry((_req, res, ctx) => {
        const { request } = ctx;
        if (request.origin === "B") return ociError(res, 404, "manifest unknown");
        if (!request.headers.authorization) {
          res.writeHead(401, { "www-authenticate": 'Basic realm="hostile"' });
          return void res.end();
        }
        res.writeHead(307, { location: `${ctx.b}${request.url}` });
        res.end();
      }, async (registry) => {
        const result = await runCli(["digest", "image:app:1"], env(registry, true));
        assert.equal(result.code, 1, result.stderr);
        const atB = registry.requests.filter((r) => r.origin === "B");
        assert.ok(atB.length > 0, "the redirect was followed");
        for (const r of atB) assert.ok(!carriesSecret(JSON.stringify(r.headers) + r.body));
      });
    });
  });

  describe("stalled bodies fail within the stall timeout; Ctrl-C and --timeout end a stall", () => {
    const image = servedImage(new Uint8Array(64 * 1024).fill(7));
    const tags = new TextEncoder().encode(
      JSON.stringify({ name: "alice/app", tags: Array.from({ length: 500 }, (_, i) => `t${i}`) }),
    );
    /** Serves the image; the body named by `stall` stops after 1 KiB. */
    const stalling = (stall: "manifest" | "blob" | "tags"): HostileHandler => {
      const serve = imageHandler(image, {
        // Padded past 1 KiB, so the stall comes in the middle of the document.
        manifest: (bytes, type, res) =>
          stall === "manifest" &&
          (stalledBody(res, { "content-type": type }, padded(bytes, 4096)), true),
        blob: (digest, bytes, res) =>
          stall === "blob" && digest === image.layerDigest && (stalledBody(res, {}, bytes), true),
      });
      return (req, res, ctx) => {
        if (!ctx.request.url.includes("/tags/list")) return serve(req, res, ctx);
        if (stall === "tags") return stalledBody(res, { "content-type": "application/json" }, tags);
        res.end(tags);
      };
    };
    const cases: { stall: "manifest" | "blob" | "tags"; args: (out: string) => string[] }[] = [
      { stall: "manifest", args: () => ["size", "image:app:1"] },
      { stall: "tags", args: () => ["tags", "image:app"] },
      { stall: "blob", args: (out) => ["pull", "-q", "image:app:1", "--output", out] },
    ];
    for (const c of cases) {
      it(`a ${c.stall} body stalling after 1 KiB fails with --stall-timeout 1`, async () => {
        await withRegistry(stalling(c.stall), async (registry) => {
          const out = join(dir, `stall-${c.stall}.tar`);
          const cli = startCli(
            ["--stall-timeout", "1", ...c.args(out)],
            env(registry),
          );
          const result = await ended(cli);
          assert.equal(result.code, 1, result.stderr);
          assert.match(result.stderr, /stalled for 1 s/);
          assertOneCleanLine(result.stderr);
          assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith("stall-")), []);
        });
      });
    }

    for (const c of cases) {
      it(`Ctrl-C ends a run waiting on a stalled ${c.stall} body`, async () => {
        await withRegistry(stalling(c.stall), async (registry) => {
          const out = join(dir, `int-${c.stall}.tar`);
          const cli = startCli(
            ["--stall-timeout", "600", ...c.args(out)],
            env(registry),
          );
          const path = c.stall === "blob"
            ? image.layerDigest
            : c.stall === "tags"
            ? "tags"
            : "manifests";
          await registry.arrived((r) => r.method === "GET" && r.url.includes(path));
          await new Promise((r) => setTimeout(r, 300));
          cli.kill("SIGINT");
          const result = await ended(cli, 30_000);
          assert.equal(result.code, 130, result.stderr);
          assert.match(result.stderr, /interrupted/);
          assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith("int-")), []);
        });
      });
    }

    it("a token service stalling, or answering 2 MiB, fails with a message saying so", async () => {
      for (const answer of ["stall", "huge"] as const) {
        await withRegistry((_req, res, ctx) => {
          if (ctx.request.url.startsWith("/token")) {
            const body = new TextEncoder().encode(`{"token":"${"t".repeat(2 << 20)}"}`);
            if (answer === "stall") {
              return stalledBody(res, { "content-type": "application/json" }, body);
            }
            res.writeHead(200, { "content-type": "application/json" });
            return void res.end(body);
          }
          bearerChallenge(res, `${ctx.a}/token`);
        }, async (registry) => {
          const cli = startCli(
            ["--stall-timeout", "1", "size", "image:app:1"],
            env(registry, true),
          );
          const result = await ended(cli);
          assert.equal(result.code, 1, result.stderr);
          assert.match(
            result.stderr,
            answer === "stall" ? /stalled for 1 s/ : /the token service's answer is over 1 MiB/,
          );
          assertOneCleanLine(result.stderr);
        });
      }
    });

    it("an upload the registry never answers: the stall timeout fails it, Ctrl-C ends it", async () => {
      const input = join(dir, "upload-input.tar");
      await writeTar(
        input,
        docker25SaveEntries(
          syntheticImage([layerTar({ "a.txt": "a".repeat(100_000) })]),
          "app",
          "1",
        ),
      );
      /** Opens sessions, then never answers what is sent to them (nor their cancel). */
      const silent: HostileHandler = (_req, res, ctx) => {
        const { url, method } = ctx.request;
        if (url === "/v2/") return void res.end("{}");
        if (method === "HEAD") return ociError(res, 404, "blob unknown");
        if (method === "POST") {
          res.writeHead(202, { location: "/v2/alice/app/blobs/uploads/1" });
          return void res.end();
        }
      };
      const push = ["push", "-q", "--input", input, "app:1", "image:app:1"];
      await withRegistry(silent, async (registry) => {
        const result = await ended(startCli(["--stall-timeout", "1", ...push], env(registry)));
        assert.equal(result.code, 1, result.stderr);
        assert.match(result.stderr, /no answer within 1 s/);
        // Each session's cancel is tried, but one that gets no answer is not waited on
        // again and again: one DELETE per session opened, within the cancel's budget.
        const opened = registry.requests.filter((r) => r.method === "POST").length;
        const cancels = registry.requests.filter((r) => r.method === "DELETE").length;
        assert.ok(cancels <= opened, `${cancels} DELETEs for ${opened} sessions`);
      });
      await withRegistry(silent, async (registry) => {
        const cli = startCli(["--stall-timeout", "600", ...push], env(registry));
        await registry.arrived((r) => r.method === "PATCH" || r.method === "PUT");
        // The first Ctrl-C lets the request in flight finish for a while (so the cancel
        // carries the session's state); a second one quits at once.
        cli.kill("SIGINT");
        await new Promise((r) => setTimeout(r, 500));
        cli.kill("SIGINT");
        const result = await ended(cli, 20_000);
        assert.equal(result.code, 130, result.stderr);
      });
    });

    it("--timeout ends a run whose body trickles without stalling", async () => {
      await withRegistry(stalling("blob"), async (registry) => {
        const out = join(dir, "deadline.tar");
        const cli = startCli(
          [
            "--stall-timeout",
            "600",
            "--timeout",
            "2",
            "pull",
            "-q",
            "image:app:1",
            "--output",
            out,
          ],
          env(registry),
        );
        const result = await ended(cli);
        assert.equal(result.code, 1, result.stderr);
        assert.match(result.stderr, /timed out after 2 s \(--timeout\)/);
        assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith("deadline")), []);
      });
    });
  });

  describe("listings cost bounded memory and requests", () => {
    const PER_PAGE = 20_000;
    it(`tags: endless unique pages of ${PER_PAGE} tags stop at the listing limit`, async () => {
      await withRegistry((_req, res, ctx) => {
        const url = new URL(ctx.request.url, ctx.a);
        if (url.pathname === "/v2/") return void res.end("{}");
        const page = Number(url.searchParams.get("page") ?? 0);
        const names = Array.from(
          { length: PER_PAGE },
          (_, i) => `p${page}-tag-${i}-${"x".repeat(64)}`,
        );
        res.writeHead(200, {
          "content-type": "application/json",
          link: `<${url.pathname}?page=${page + 1}&n=${PER_PAGE}>; rel="next"`,
        });
        res.end(JSON.stringify({ name: "alice/app", tags: names }));
      }, async (registry) => {
        const cli = startCli(["tags", "image:app"], env(registry));
        const peak = await peakRssMiB(cli.pid, cli.done);
        const result = await ended(cli);
        assert.equal(result.code, 1, result.stderr);
        assert.match(result.stderr, /lists more than 100,000 names; stopped there/);
        const pages = registry.requests.filter((r) => r.url.includes("tags/list")).length;
        assert.ok(pages <= 6, `${pages} pages`);
        // The bound this test states: a listing stopped at 100,000 names stays under 400 MiB.
        assert.ok(peak < 400, `peak RSS ${peak} MiB`);
        assert.equal(result.stdout, "");
      });
    });

    it("tags -l looks sizes up at most 16 at a time", async () => {
      const image = servedImage(new Uint8Array(100));
      const tags = Array.from({ length: 200 }, (_, i) => `v${i}`);
      const serve = imageHandler(image);
      await withRegistry(async (req, res, ctx) => {
        if (ctx.request.url.includes("tags/list")) {
          res.writeHead(200, { "content-type": "application/json" });
          return void res.end(JSON.stringify({ name: "alice/app", tags }));
        }
        // Each lookup takes a little while, so lookups started together overlap.
        await new Promise((r) => setTimeout(r, 20));
        serve(req, res, ctx);
      }, async (registry) => {
        const result = await runCli(["tags", "-l", "image:app"], env(registry));
        assert.equal(result.code, 0, result.stderr);
        const lines = result.stdout.trim().split("\n");
        assert.equal(lines.length, tags.length);
        // Names from image:app:v0 to image:app:v199: the sizes still start in one column.
        assert.deepEqual(
          new Set(lines.map((l) => l.search(/\d+(\.\d)? (bytes|kB|MB)$/))).size,
          1,
          lines[0],
        );
        const lookups = registry.requests.filter((r) => r.url.includes("/manifests/")).length;
        assert.equal(lookups, tags.length);
        assert.ok(registry.peakInFlight() <= 16, `${registry.peakInFlight()} at once`);
      });
    });
  });

  describe("every URL from the registry must be http(s)", () => {
    it("an upload Location with a file: URL fails, and the file is neither read nor written", async () => {
      const target = join(dir, "not-the-registry");
      await writeFile(target, "untouched");
      const input = join(dir, "push-input.tar");
      const synthetic = syntheticImage([layerTar({ "a.txt": "hello" })]);
      await writeTar(input, docker25SaveEntries(synthetic, "app", "1"));
      await withRegistry((_req, res, ctx) => {
        const { request } = ctx;
        if (request.url === "/v2/") return void res.end("{}");
        if (request.method === "HEAD") return ociError(res, 404, "blob unknown");
        if (request.method === "POST" && request.url.includes("/blobs/uploads/")) {
          res.writeHead(202, { location: `file://${target}`, range: "0-0" });
          return void res.end();
        }
        ociError(res, 400, "unexpected");
      }, async (registry) => {
        const result = await runCli(
          ["push", "-q", "--input", input, "app:1", "image:app:1"],
          env(registry),
        );
        assert.equal(result.code, 1, result.stderr);
        assert.match(result.stderr, /the scheme file: is not http or https/);
        assert.equal(await readFile(target, "utf8"), "untouched");
        assert.equal(registry.requests.filter((r) => r.method === "PUT").length, 0);
      });
    });
  });

  describe("registry text reaches the terminal made printable", () => {
    const forged = "denied\x1b]0;pwned\x07\x1b[31m\r\napolo-images: forged line\x9b2J\u202e";
    it("an OCI error message with escape sequences and newlines", async () => {
      await withRegistry((_req, res) => ociError(res, 403, forged), async (registry) => {
        const result = await runCli(["size", "image:app:1"], env(registry));
        assert.equal(result.code, 1, result.stderr);
        assertOneCleanLine(result.stderr);
        assert.match(result.stderr, /denied\\x1b\]0;pwned\\x07/);
      });
    });

    it("an index of 15,000 hostile platforms gives one short, clean line", async () => {
      const child = sha256(new Uint8Array([1]));
      const index = new TextEncoder().encode(JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: Array.from({ length: 15_000 }, (_, i) => ({
          mediaType: IMAGE_MANIFEST,
          digest: child,
          size: 1,
          platform: { os: `evil\x1b[2J${i}`, architecture: "a\nb" },
        })),
      }));
      await withRegistry((_req, res, ctx) => {
        if (ctx.request.url === "/v2/") return void res.end("{}");
        if (ctx.request.url.includes("/manifests/")) {
          res.writeHead(200, {
            "content-type": "application/vnd.oci.image.index.v1+json",
            "docker-content-digest": sha256(index),
          });
          return void res.end(index);
        }
        ociError(res, 404, "unknown");
      }, async (registry) => {
        const out = join(dir, "platforms.tar");
        const result = await runCli(
          ["pull", "-q", "--platform", "linux/amd64", "image:app:1", "--output", out],
          env(registry),
        );
        assert.equal(result.code, 1, result.stderr);
        assertOneCleanLine(result.stderr);
        assert.ok(result.stderr.length < 4096, `${result.stderr.length} bytes`);
        assert.match(result.stderr, /and 14,980 more/);
      });
    });

    it("tags with escape sequences are not printed", async () => {
      await withRegistry((_req, res, ctx) => {
        if (ctx.request.url === "/v2/") return void res.end("{}");
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ name: "alice/app", tags: ["good", "\x1b]0;pwned\x07", "a\nb"] }));
      }, async (registry) => {
        const result = await runCli(["tags", "image:app"], env(registry));
        assert.equal(result.code, 0, result.stderr);
        assert.equal(result.stdout.trim(), "image:app:good");
      });
    });
  });

  it("a layer declared as 1 TiB fails before any room is made for it", async () => {
    const image = servedImage(new Uint8Array(4096).fill(5));
    const doc = JSON.parse(new TextDecoder().decode(image.manifest));
    doc.layers[0].size = 2 ** 40;
    const manifest = new TextEncoder().encode(JSON.stringify(doc));
    const documents = new Map([[sha256(manifest), { bytes: manifest, type: IMAGE_MANIFEST }]]);
    await withRegistry(
      imageHandler(image, { documents, top: sha256(manifest) }),
      async (registry) => {
        const out = join(dir, "tebibyte.tar");
        const result = await runCli(["pull", "-q", "image:app:1", "--output", out], env(registry));
        assert.equal(result.code, 1, result.stderr);
        assert.match(
          result.stderr,
          /declared as 1099511627776 bytes.*more than the \d+ bytes free/,
        );
        assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith("tebibyte")), []);
      },
    );
  });

  it("indexes nested 3 deep are pulled for the platform; deeper ones fail clearly", async () => {
    const image = servedImage(new Uint8Array(4096).fill(6));
    const INDEX = "application/vnd.oci.image.index.v1+json";
    /** Wraps `inner` (a manifest or an index) in `levels` indexes; returns the top. */
    const nest = (levels: number) => {
      const docs = new Map<string, { bytes: Uint8Array; type: string }>();
      let top = {
        digest: image.manifestDigest,
        size: image.manifest.byteLength,
        type: IMAGE_MANIFEST,
      };
      for (let i = 0; i < levels; i++) {
        const bytes = new TextEncoder().encode(JSON.stringify({
          schemaVersion: 2,
          mediaType: INDEX,
          manifests: [{
            mediaType: top.type,
            digest: top.digest,
            size: top.size,
            platform: { os: "linux", architecture: "amd64" },
          }],
        }));
        top = { digest: sha256(bytes), size: bytes.byteLength, type: INDEX };
        docs.set(top.digest, { bytes, type: INDEX });
      }
      return { docs, top };
    };
    for (const levels of [3, 5]) {
      const { docs, top } = nest(levels);
      await withRegistry(
        imageHandler(image, { documents: docs, top: top.digest }),
        async (registry) => {
          const out = join(dir, `nested-${levels}.tar`);
          const result = await runCli(
            ["pull", "-q", "--platform", "linux/amd64", "image:app:1", "--output", out],
            env(registry),
          );
          if (levels === 3) {
            assert.equal(result.code, 0, result.stderr);
          } else {
            assert.equal(result.code, 1, result.stderr);
            assert.match(result.stderr, /indexes nested more than 3 deep/);
          }
        },
      );
    }
  });

  it("a layout blob of the right size but other content is not trusted", async () => {
    const image = servedImage(new Uint8Array(8192).fill(4));
    await withRegistry(imageHandler(image), async (registry) => {
      const layout = join(dir, "planted");
      const args = ["pull", "-q", "image:app:1", "--output", layout + "/"];
      assert.equal((await runCli(args, env(registry))).code, 0);
      const blobFile = join(layout, "blobs", "sha256", image.layerDigest.slice(7));
      await writeFile(blobFile, new Uint8Array(8192).fill(0x66));
      const again = await runCli(args, env(registry));
      assert.equal(again.code, 0, again.stderr);
      assert.equal(sha256(new Uint8Array(await readFile(blobFile))), image.layerDigest);
    });
  });

  it("a failed pull into a new nested folder leaves no folder behind", async () => {
    const image = servedImage(new Uint8Array(4096).fill(5));
    // Every blob comes with wrong bytes: the pull fails after the layout was made.
    const wrong = imageHandler(image, {
      blob: (_digest, bytes, res) => {
        res.writeHead(200, { "content-length": String(bytes.byteLength) });
        res.end(new Uint8Array(bytes.byteLength).fill(9));
        return true;
      },
    });
    await withRegistry(wrong, async (registry) => {
      const top = join(dir, "nested-new");
      const out = join(top, "a", "b", "layout") + "/";
      const result = await runCli(["pull", "-q", "image:app:1", "--output", out], env(registry));
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, /digest/);
      assert.equal((await readdir(dir)).includes("nested-new"), false);
    });
  });

  describe("leftovers of a run killed with SIGKILL are removed by the next run", () => {
    const image = servedImage(new Uint8Array(256 * 1024).fill(3));
    for (const kind of ["archive", "layout"] as const) {
      it(`pull into ${kind === "archive" ? "an archive" : "a layout"}`, async () => {
        let stall = true;
        const serve = imageHandler(image, {
          blob: (digest, bytes, res) =>
            stall && digest === image.layerDigest && (stalledBody(res, {}, bytes, 64 * 1024), true),
        });
        await withRegistry(serve, async (registry) => {
          const parent = join(dir, `killed-${kind}`);
          await mkdir(parent, { recursive: true });
          const out = kind === "archive" ? join(parent, "out.tar") : join(parent, "layout") + "/";
          const args = ["pull", "-q", "image:app:1", "--output", out];
          const killed = startCli(["--stall-timeout", "600", ...args], env(registry));
          await registry.arrived((r) => r.url.includes(image.layerDigest));
          await new Promise((r) => setTimeout(r, 500));
          killed.kill("SIGKILL");
          await killed.done;
          const temps = async () =>
            (await readdir(parent, { recursive: true })).filter((p) => p.includes(".tmp-"));
          assert.ok((await temps()).length > 0, "the killed run left temporary files");
          stall = false;
          const again = await runCli(args, env(registry));
          assert.equal(again.code, 0, again.stderr);
          assert.deepEqual(await temps(), []);
        });
      });
    }
  });
});
