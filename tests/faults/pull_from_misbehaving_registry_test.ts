// Registries that misbehave under a pull: docker-registry restarted mid-download; a
// registry answering 200 with a truncated body (cut, or complete with a short
// Content-Length); one serving bytes that do not match the blob's digest. The pull
// completes with a verified image, or fails with a clear error naming the blob and
// leaves no output at all.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import process from "node:process";
import {
  AbstractDockerImageProgress,
  type ImageProgressStep,
  Images,
  ImagesError,
  LocalImage,
} from "../../mod.ts";
import { DigestMismatchError } from "../../lib/errors.ts";
import { sha256Digest } from "../../lib/oci/digest.ts";
import { MediaType } from "../../lib/oci/media_types.ts";
import {
  registryAvailable,
  type RunningRegistry,
  startRegistry,
} from "../../testing/docker_registry.ts";
import { type FaultProxy, startFaultProxy } from "../../testing/fault_proxy.ts";
import { runCli } from "../../testing/cli.ts";
import { makeTempDir, removeTempDir } from "../../testing/fs.ts";
import {
  buildSoakImage,
  checkArchiveImage,
  exists,
  listFiles,
  type SoakImage,
  temporaryFiles,
} from "../../testing/soak.ts";
import { layerTar, syntheticImage } from "../../testing/tools.ts";
import { testBytes } from "../../testing/fake_registry.ts";

const FAST = { retryBaseDelayMs: 5, retryMaxDelayMs: 50, maxRetries: 4, cacheDir: false as const };

describe("docker-registry restarted mid-pull", { skip: !registryAvailable }, () => {
  let registry: RunningRegistry;
  let proxy: FaultProxy;
  let dir: string;
  let image: SoakImage;

  before(async () => {
    [registry, dir] = await Promise.all([startRegistry(), makeTempDir("apolo-restart")]);
    image = await buildSoakImage(dir, 0.25);
    const api = new Images({
      registries: { default: registry.url },
      clusterName: "default",
      owner: "r",
      ...FAST,
    });
    await api.push(
      new LocalImage("localhost/soak/image", "source"),
      api.parser.parseRemote("image:app:1"),
      {
        input: image.path,
      },
    );
    proxy = await startFaultProxy({ target: registry.host, rate: 0 });
  });
  after(async () => {
    await proxy?.close();
    await registry?.stop();
    if (dir) await removeTempDir(dir);
  });

  for (const format of ["docker", "layout"] as const) {
    it(`the pull (${format}) resumes once the registry is back, and the image is intact`, {
      timeout: 60_000,
    }, async () => {
      // The first download of the biggest blob stalls half-way; the registry restarts
      // then, and once it is back the stalled connection dies. The stall ends when the
      // restart did, not after a time: however slow the restart, the retries that
      // follow find the registry up.
      const big = image.layers.reduce((a, b) => (b.size > a.size ? b : a));
      let first = true;
      proxy.setPlan((r) => {
        if (!(r.method === "GET" && r.path.endsWith(big.digest) && first)) return null;
        first = false;
        return { kind: "stall", direction: "response", at: 0.5, stallMs: 60_000 };
      });
      const stalls = proxy.counts.stall;
      let restart: Promise<void> | undefined;
      const watcher = setInterval(() => {
        if (restart || proxy.counts.stall <= stalls) return;
        restart = registry.restart().then(() => proxy.dropAll());
      }, 20);
      const api = new Images({
        registries: { default: proxy.url },
        clusterName: "default",
        owner: "r",
        ...FAST,
        // retries: the stalled connection dies only once the registry is back up
        maxRetries: 8,
        retryBaseDelayMs: 100,
        retryMaxDelayMs: 1000,
      });
      const output = format === "layout" ? join(dir, "layout") + "/" : join(dir, "restart.tar");
      const resumed: ImageProgressStep[] = [];
      class Progress extends AbstractDockerImageProgress {
        override step(s: ImageProgressStep) {
          if (restart) resumed.push(s);
        }
      }
      try {
        await api.pull(api.parser.parseRemote("image:app:1"), new LocalImage("app", format), {
          output,
          progress: new Progress(),
        });
      } finally {
        clearInterval(watcher);
        await restart;
      }
      assert.ok(restart, "the registry was restarted mid-pull");
      assert.ok(resumed.some((s) => s.status === "Download complete"), "downloads went on after");
      if (format === "layout") {
        const { checkLayoutImage } = await import("../../testing/soak.ts");
        const got = await checkLayoutImage(output, `app:${format}`, false);
        assert.equal(got.configDigest, image.configDigest);
        assert.deepEqual(got.diffIds, image.diffIds);
      } else {
        const got = await checkArchiveImage(output, join(dir, "scratch"), `app:${format}`, true);
        assert.equal(got.configDigest, image.configDigest);
        assert.deepEqual(got.diffIds, image.diffIds);
      }
    });
  }
});

describe("token expiry mid-push of a multi-layer image", { skip: !registryAvailable }, () => {
  let registry: RunningRegistry;
  let proxy: FaultProxy;
  let dir: string;
  let image: SoakImage;

  before(async () => {
    // The registry refuses a token 2 s after it was issued; the client is told 1 h.
    [registry, dir] = await Promise.all([
      startRegistry({ auth: "token", tokenValidSeconds: 2, tokenExpiresIn: 3600 }),
      makeTempDir("apolo-expiry"),
    ]);
    image = await buildSoakImage(dir, 0.25);
    // Uploads go slowly, so the push outlives its first token (small layers go whole,
    // in one PUT each and at once: only the big one's PATCH and PUT follow each other).
    proxy = await startFaultProxy({
      target: registry.host,
      rate: 0,
      plan: (r) =>
        r.method === "PATCH" || r.method === "PUT"
          ? { kind: "stall", direction: "request", at: 0, stallMs: 1000 }
          : null,
    });
  });
  after(async () => {
    await proxy?.close();
    await registry?.stop();
    if (dir) await removeTempDir(dir);
  });

  it("the push asks for new tokens and completes; the image pulls back intact", {
    timeout: 120_000,
  }, async () => {
    const api = (url: string) =>
      new Images({
        registries: { default: url },
        clusterName: "default",
        owner: "tester",
        username: registry.username,
        password: registry.password,
        ...FAST,
      });
    const issued = registry.tokenServer!.issued;
    const started = Date.now();
    const pushing = api(proxy.url);
    await pushing.push(
      new LocalImage("localhost/soak/image", "source"),
      pushing.parser.parseRemote("image:expiring:1"),
      { input: image.path },
    );
    assert.ok(Date.now() - started > 2500, "the push outlived its first token");
    assert.ok(registry.tokenServer!.issued >= issued + 2, "new tokens were asked for");
    const pulling = api(registry.url);
    const output = join(dir, "expiry.tar");
    await pulling.pull(pulling.parser.parseRemote("image:expiring:1"), new LocalImage("e", "1"), {
      output,
    });
    const got = await checkArchiveImage(output, join(dir, "scratch"), "e:1", true);
    assert.equal(got.configDigest, image.configDigest);
    assert.deepEqual(got.diffIds, image.diffIds);
  });
});

/** The image the misbehaving registries serve, and its top layer (the one tampered with). */
const SERVED = syntheticImage([
  layerTar({ "base.bin": testBytes(400_000, 41) }),
  layerTar({ "top.bin": testBytes(900_000, 42) }),
], { gzip: true });
const TOP = SERVED.layerDigests[1];

/** How a misbehaving registry answers a blob GET. */
type Tamper = (digest: string, bytes: Uint8Array, nth: number) =>
  | { body: Uint8Array; length?: number; cut?: boolean }
  | undefined;

/**
 * A registry serving one image (no auth), whose blob answers `tamper` may change:
 * a body cut short (`cut`: the connection drops after it), a `Content-Length` that
 * says what the body really is, or other bytes. `Range` is honoured.
 */
async function misbehavingRegistry(tamper: Tamper) {
  const image = SERVED;
  const manifest = new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: {
      mediaType: MediaType.OciConfig,
      digest: image.configDigest,
      size: image.config.length,
    },
    layers: image.layers.map((l, i) => ({
      mediaType: MediaType.OciLayerGzip,
      digest: image.layerDigests[i],
      size: l.length,
    })),
  }));
  const blobs = new Map<string, Uint8Array>([[image.configDigest, image.config]]);
  image.layers.forEach((l, i) => blobs.set(image.layerDigests[i], l));
  const seen = new Map<string, number>();
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (path === "/v2/") {
      return res.writeHead(200, { "content-type": "application/json" }).end("{}");
    }
    if (/\/manifests\//.test(path)) {
      return res.writeHead(200, {
        "content-type": MediaType.OciManifest,
        "content-length": String(manifest.length),
        "docker-content-digest": sha256Digest(manifest),
      }).end(req.method === "HEAD" ? undefined : manifest);
    }
    const digest = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(path)?.[1] ?? "";
    const bytes = blobs.get(digest);
    if (!bytes) return res.writeHead(404).end();
    const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? "")?.[1] ?? 0);
    const nth = seen.get(digest) ?? 0;
    seen.set(digest, nth + 1);
    const changed = req.method === "GET" ? tamper(digest, bytes, nth) : undefined;
    const body = (changed?.body ?? bytes).subarray(start);
    const length = changed?.length ?? body.length;
    res.writeHead(start > 0 ? 206 : 200, {
      "content-type": "application/octet-stream",
      "content-length": String(length),
      "docker-content-digest": digest,
      ...(start > 0
        ? { "content-range": `bytes ${start}-${bytes.length - 1}/${bytes.length}` }
        : {}),
    });
    if (req.method === "HEAD") return res.end();
    if (changed?.cut) res.write(body, () => setTimeout(() => res.socket?.destroy(), 10));
    else res.end(body);
  };
  const server: Server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    image,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      }),
  };
}

describe("a registry answering 200 with a truncated body, or with the wrong bytes", () => {
  let dir: string;
  before(async () => {
    dir = await makeTempDir("apolo-misbehave");
  });
  after(async () => {
    if (dir) await removeTempDir(dir);
  });

  /** Pulls from a misbehaving registry into a fresh folder; returns the error, if any. */
  const pull = async (tamper: Tamper, name: string) => {
    const registry = await misbehavingRegistry(tamper);
    const out = join(dir, name);
    await import("node:fs/promises").then((fs) => fs.mkdir(out, { recursive: true }));
    const output = join(out, "image.tar");
    const api = new Images({
      registries: { default: registry.url },
      clusterName: "default",
      owner: "m",
      ...FAST,
    });
    try {
      await api.pull(api.parser.parseRemote("image:app:1"), new LocalImage("app", "1"), { output });
      const got = await checkArchiveImage(output, join(dir, "scratch"), "app:1", true);
      assert.equal(got.configDigest, registry.image.configDigest);
      assert.deepEqual(got.diffIds, registry.image.diffIds);
      return { error: undefined, registry };
    } catch (error) {
      assert.equal(await exists(output), false, `${name}: no output after a failure`);
      assert.deepEqual(temporaryFiles(await listFiles(out)), [], `${name}: no temporary file`);
      if (process.env.SHOW_ERRORS) console.log(name, String(error));
      return { error, registry };
    } finally {
      await registry.close();
    }
  };

  it("a body cut once is resumed with Range: the image is intact", async () => {
    const { error } = await pull(
      (_, bytes, nth) =>
        nth === 0
          ? { body: bytes.subarray(0, bytes.length >> 1), length: bytes.length, cut: true }
          : undefined,
      "cut-once",
    );
    assert.equal(error, undefined);
  });

  it("a short Content-Length once (a complete but truncated answer) is resumed: intact", async () => {
    const { error } = await pull(
      (_, bytes, nth) => nth === 0 ? { body: bytes.subarray(0, bytes.length - 1000) } : undefined,
      "short-once",
    );
    assert.equal(error, undefined);
  });

  it("a body always truncated fails after the retry bound, naming the blob", async () => {
    for (
      const [name, tamper] of [
        [
          "always-cut",
          (_d: string, bytes: Uint8Array) => ({
            body: bytes.subarray(0, 1000),
            length: bytes.length,
            cut: true,
          }),
        ],
        ["always-short", (_d: string, bytes: Uint8Array) => ({ body: bytes.subarray(0, 1000) })],
      ] as [string, Tamper][]
    ) {
      const { error } = await pull(
        (d, bytes, nth) => (d === TOP ? tamper(d, bytes, nth) : undefined),
        name,
      );
      assert.ok(error instanceof ImagesError, `${name}: ${error}`);
      assert.match(
        error.message,
        /gave up after \d+ retries|ended after/,
        `${name}: ${error.message}`,
      );
      assert.ok(error.message.includes(TOP), `${name}: names the blob: ${error.message}`);
    }
  });

  it("bytes that do not match the digest fail the pull, naming the blob", async () => {
    for (
      const [name, tamper] of [
        ["flipped", (bytes: Uint8Array) => {
          const copy = bytes.slice();
          copy[copy.length >> 1] ^= 0xff;
          return { body: copy };
        }],
        ["longer", (bytes: Uint8Array) => {
          const copy = new Uint8Array(bytes.length + 10);
          copy.set(bytes);
          return { body: copy };
        }],
      ] as [string, (b: Uint8Array) => { body: Uint8Array }][]
    ) {
      const { error } = await pull(
        (d, bytes) => (d === TOP ? tamper(bytes) : undefined),
        name,
      );
      assert.ok(error instanceof ImagesError, `${name}: ${error}`);
      if (name === "flipped") assert.ok(error instanceof DigestMismatchError, `${name}: ${error}`);
      assert.ok(error.message.includes(TOP), `${name}: names the blob: ${error.message}`);
    }
  });

  it("the command line says it in one line naming the blob, exit 1, no output", async () => {
    const registry = await misbehavingRegistry((d, bytes) => {
      if (d !== TOP) return undefined;
      const copy = bytes.slice();
      copy[100] ^= 1;
      return { body: copy };
    });
    try {
      const output = join(dir, "cli.tar");
      const result = await runCli(["pull", "-q", "image:app:1", "--output", output], {
        APOLO_REGISTRY: registry.url,
        APOLO_OWNER: "m",
        XDG_CACHE_HOME: join(dir, "cache"),
      });
      assert.equal(result.code, 1);
      const lines = result.stderr.trim().split("\n");
      assert.equal(lines.length, 1, result.stderr);
      assert.match(lines[0], /^apolo-images: .*sha256:[0-9a-f]{64}/);
      assert.ok(lines[0].includes(TOP), lines[0]);
      assert.equal(await exists(output), false);
    } finally {
      await registry.close();
    }
  });
});
