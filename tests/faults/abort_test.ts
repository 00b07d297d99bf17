// Aborts at random points of push and pull (an AbortSignal from the API, Ctrl-C in the
// CLI): the push changes no tag and leaves no upload session open that could be
// cancelled; the pull leaves no partial output and no temporary file, and the previous
// output as it was. The random points come from a seeded PRNG (ABORT_SEED=<n> replays).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import {
  AbortedError,
  AbstractDockerImageProgress,
  type ImageProgressStep,
  Images,
  LocalImage,
} from "../../mod.ts";
import {
  registryAvailable,
  type RunningRegistry,
  startRegistry,
} from "../../testing/docker_registry.ts";
import { startTestRegistry, type TestRegistry } from "../../testing/fake_registry.ts";
import { type FaultProxy, seededRandom, startFaultProxy } from "../../testing/fault_proxy.ts";
import { type RunningCli, startCli } from "../../testing/cli.ts";
import { makeTempDir, removeTempDir } from "../../testing/fs.ts";
import {
  buildSoakImage,
  cancellable,
  checkArchiveImage,
  checkLayoutImage,
  exists,
  listFiles,
  openUploadSessions,
  recordUploadLocations,
  type SoakImage,
  temporaryFiles,
} from "../../testing/soak.ts";

const seed = Number(process.env.ABORT_SEED ?? Date.now() % 1_000_000);
const random = seededRandom(seed);
const SOURCE = new LocalImage("localhost/soak/image", "source");
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** HEAD of a tag, straight at the registry (accepting OCI manifests, or distribution says 404). */
async function headManifest(url: string, repo: string, tag = "v1"): Promise<Response> {
  const res = await fetch(`${url}/v2/${repo}/manifests/${tag}`, {
    method: "HEAD",
    headers: { accept: "application/vnd.oci.image.manifest.v1+json" },
  });
  await res.body?.cancel();
  return res;
}

/** Calls `abort` at the n-th progress step. */
class AbortAtStep extends AbstractDockerImageProgress {
  steps = 0;
  constructor(readonly at: number, readonly abort: () => void) {
    super();
  }
  override step(_: ImageProgressStep): void {
    if (++this.steps === this.at) this.abort();
  }
}

/** Aborts as soon as a layer has sent some of its bytes: an upload is in flight. */
class AbortWhilePushing extends AbstractDockerImageProgress {
  constructor(readonly abort: () => void) {
    super();
  }
  override step(step: ImageProgressStep): void {
    if (step.status === "Pushing" && step.current > 0) this.abort();
  }
}

/** Whether an error is what an aborted operation rejects with. */
function isAbort(error: unknown, signal: AbortSignal): boolean {
  return error instanceof AbortedError || error === signal.reason ||
    (error as Error)?.name === "AbortError";
}

/** A random abort: at a progress step, or after a delay (ms); returns how it was armed. */
function arm(controller: AbortController, maxSteps: number, maxMs: number) {
  if (random() < 0.5) {
    const at = 1 + Math.floor(random() * maxSteps);
    return { progress: new AbortAtStep(at, () => controller.abort()), point: `step ${at}` };
  }
  const ms = Math.floor(random() * maxMs);
  const timer = setTimeout(() => controller.abort(), ms);
  controller.signal.addEventListener("abort", () => clearTimeout(timer));
  return { progress: undefined, point: `${ms} ms`, timer };
}

describe(`abort at random points (seed ${seed})`, { skip: !registryAvailable }, () => {
  let registry: RunningRegistry;
  let dir: string;
  let image: SoakImage;
  const api = (url = registry.url) =>
    new Images({
      registries: { default: url },
      clusterName: "default",
      owner: "abort",
      cacheDir: false,
      chunkSize: 1024 * 1024,
    });

  before(async () => {
    [registry, dir] = await Promise.all([startRegistry(), makeTempDir("apolo-abort")]);
    image = await buildSoakImage(dir, 0.25);
    const images = api();
    await images.push(SOURCE, images.parser.parseRemote("image:pulled:v1"), { input: image.path });
  });
  after(async () => {
    await registry?.stop();
    if (dir) await removeTempDir(dir);
  });

  it("push: no tag, no session left open that could be cancelled", async () => {
    const recorder = recordUploadLocations();
    const outcomes: string[] = [];
    try {
      for (let i = 0; i < 8; i++) {
        const images = api();
        const repo = `abort/push-${i}`;
        const controller = new AbortController();
        const { progress, point, timer } = arm(controller, 40, 1200);
        let completed = false;
        try {
          await images.push(SOURCE, images.parser.parseRemote(`image:/${repo}:v1`), {
            input: image.path,
            signal: controller.signal,
            progress,
          });
          completed = true;
        } catch (error) {
          assert.ok(isAbort(error, controller.signal), `push ${i} (${point}): ${error}`);
        } finally {
          clearTimeout(timer);
        }
        outcomes.push(`${point}: ${completed ? "completed first" : "aborted"}`);
        const head = await headManifest(registry.url, repo);
        assert.equal(head.status, completed ? 200 : 404, `push ${i} (${point}): the tag`);
        await new Promise((r) => setTimeout(r, 50));
        for (const id of await openUploadSessions(registry.storageDir, repo)) {
          assert.ok(
            !(await cancellable(registry.url, recorder.locations, id)),
            `push ${i} (${point}): upload session ${id} left open`,
          );
        }
      }
    } finally {
      recorder.stop();
    }
    assert.ok(outcomes.some((o) => o.endsWith("aborted")), outcomes.join("; "));
  });

  for (const format of ["docker", "oci", "layout"] as const) {
    it(`pull into ${format}: no partial output, no temporary file, the previous one intact`, async () => {
      const out = join(dir, `pull-${format}`);
      await mkdir(out, { recursive: true });
      const output = format === "layout" ? join(out, "layout") + "/" : join(out, "image.tar");
      const images = api();
      const remote = images.parser.parseRemote("image:pulled:v1");
      const pullFormat = format === "oci" ? "oci" : "docker";
      // a previous output
      await images.pull(remote, new LocalImage("first", "v1"), { output, format: pullFormat });
      const fingerprint = async () =>
        sha256(
          new Uint8Array(await readFile(format === "layout" ? join(output, "index.json") : output)),
        );
      const blobs = async () =>
        format === "layout" ? await readdir(join(output, "blobs/sha256")) : [];
      let last = "first:v1";
      for (let i = 0; i < 5; i++) {
        const before = await fingerprint();
        const blobsBefore = await blobs();
        const controller = new AbortController();
        const { progress, point, timer } = arm(controller, 30, 600);
        try {
          await images.pull(remote, new LocalImage("again", `v${i}`), {
            output,
            format: pullFormat,
            signal: controller.signal,
            progress,
          });
          last = `again:v${i}`;
        } catch (error) {
          assert.ok(isAbort(error, controller.signal), `pull ${i} (${point}): ${error}`);
          assert.equal(
            await fingerprint(),
            before,
            `pull ${i} (${point}): previous output changed`,
          );
          assert.deepEqual(await blobs(), blobsBefore, `pull ${i} (${point}): blobs added`);
        } finally {
          clearTimeout(timer);
        }
        assert.deepEqual(temporaryFiles(await listFiles(out)), [], `pull ${i} (${point})`);
      }
      // whatever happened, the output holds the last image pulled, intact
      if (format === "layout") await checkLayoutImage(output, last, false);
      else await checkArchiveImage(output, join(dir, "scratch"), last, format === "docker");
    });
  }

  it("pull into a new file: an abort leaves nothing at all", async () => {
    const out = join(dir, "pull-new");
    await mkdir(out, { recursive: true });
    const images = api();
    for (let i = 0; i < 4; i++) {
      const controller = new AbortController();
      const { progress, point, timer } = arm(controller, 30, 500);
      const output = join(out, `new-${i}.tar`);
      try {
        await images.pull(images.parser.parseRemote("image:pulled:v1"), undefined, {
          output,
          signal: controller.signal,
          progress,
        });
        await checkArchiveImage(output, join(dir, "scratch"), "pulled:v1", true);
      } catch (error) {
        assert.ok(isAbort(error, controller.signal), `pull ${i} (${point}): ${error}`);
        assert.equal(await exists(output), false, `pull ${i} (${point}): partial output`);
      } finally {
        clearTimeout(timer);
      }
      assert.deepEqual(temporaryFiles(await listFiles(out)), [], `pull ${i} (${point})`);
    }
  });
});

describe("abort cancels the upload sessions (in-process registry)", () => {
  let registry: TestRegistry;
  let dir: string;
  let image: SoakImage;
  before(async () => {
    [registry, dir] = await Promise.all([startTestRegistry(), makeTempDir("apolo-abort-mem")]);
    image = await buildSoakImage(dir, 0.25);
  });
  after(async () => {
    await registry?.close();
    if (dir) await removeTempDir(dir);
  });

  it("every session opened is cancelled, whatever the point", async () => {
    let cancelledSome = false;
    for (let i = 0; i < 8; i++) {
      const images = new Images({
        registries: { default: registry.url },
        clusterName: "default",
        owner: "abort",
        cacheDir: false,
        chunkSize: 1024 * 1024,
      });
      const controller = new AbortController();
      // The first push stops mid-upload for sure; the others at random points.
      const { progress, point, timer } = i === 0
        ? { progress: new AbortWhilePushing(() => controller.abort()), point: "mid-upload" }
        : arm(controller, 40, 400);
      const cancelled = registry.cancelledUploads;
      try {
        await images.push(SOURCE, images.parser.parseRemote(`image:mem/push-${i}:v1`), {
          input: image.path,
          signal: controller.signal,
          progress,
        });
      } catch (error) {
        assert.ok(isAbort(error, controller.signal), `push ${i} (${point}): ${error}`);
      } finally {
        clearTimeout(timer);
      }
      cancelledSome ||= registry.cancelledUploads > cancelled;
      assert.equal(registry.openUploads(), 0, `push ${i} (${point}): sessions left open`);
    }
    assert.ok(cancelledSome, "some abort hit an upload in flight");
  });
});

describe("Ctrl-C in the command line", { skip: !registryAvailable }, () => {
  let registry: RunningRegistry;
  let proxy: FaultProxy;
  let dir: string;
  let image: SoakImage;
  let env: Record<string, string>;

  before(async () => {
    [registry, dir] = await Promise.all([startRegistry(), makeTempDir("apolo-sigint")]);
    image = await buildSoakImage(dir, 0.25);
    proxy = await startFaultProxy({ target: registry.host, rate: 0 });
    const images = new Images({
      registries: { default: registry.url },
      clusterName: "default",
      owner: "cli",
      cacheDir: false,
    });
    await images.push(SOURCE, images.parser.parseRemote("image:slow:v1"), { input: image.path });
    env = {
      APOLO_REGISTRY: proxy.url,
      APOLO_OWNER: "cli",
      APOLO_CLUSTER: "default",
      XDG_CACHE_HOME: join(dir, "cache"),
    };
  });
  after(async () => {
    await proxy?.close();
    await registry?.stop();
    if (dir) await removeTempDir(dir);
  });

  /** Waits until `ready()`; fails after `ms`, or when the command ended first. */
  const waitFor = async (cli: RunningCli, ready: () => boolean, ms: number, what: string) => {
    const deadline = Date.now() + ms;
    let ended = false;
    cli.done.then(() => ended = true);
    while (!ready()) {
      if (Date.now() > deadline || ended) {
        throw new Error(
          `${ended ? "the command ended" : "timed out"} waiting for ${what}:\n${
            cli.stderr().slice(-3000)
          }`,
        );
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  it("push: SIGINT while uploads stall exits 130, cancels the sessions, changes no tag", {
    timeout: 60_000,
  }, async () => {
    // Every PATCH stalls before its first byte reaches the registry.
    proxy.setPlan((r) =>
      r.method === "PATCH" ? { kind: "stall", direction: "request", at: 0, stallMs: 60_000 } : null
    );
    const stalls = proxy.counts.stall;
    const cli = startCli(
      [
        "--debug",
        "--progress",
        "plain",
        "push",
        "--input",
        image.path,
        SOURCE.toString(),
        "image:sigint:v1",
      ],
      env,
    );
    try {
      await waitFor(cli, () => proxy.counts.stall > stalls, 30_000, "an upload to stall");
      await new Promise((r) => setTimeout(r, 200));
      cli.kill("SIGINT");
      const result = await cli.done;
      assert.equal(result.code, 130, result.stderr.slice(-2000));
      assert.match(result.stderr, /interrupted/);
      assert.match(result.stderr, /upload session cancelled \(20\d\)/);
      assert.equal(result.stdout, "");
    } finally {
      cli.kill("SIGKILL");
      proxy.setPlan(undefined);
      proxy.dropAll();
    }
    const head = await headManifest(registry.url, "cli/sigint");
    assert.equal(head.status, 404);
    assert.deepEqual(await openUploadSessions(registry.storageDir, "cli/sigint"), []);
  });

  for (const format of ["docker", "layout"] as const) {
    it(`pull (${format}): SIGINT while a download stalls exits 130 and leaves no output`, {
      timeout: 60_000,
    }, async () => {
      const out = join(dir, `sigint-${format}`);
      await mkdir(out, { recursive: true });
      const output = format === "layout" ? join(out, "layout") + "/" : join(out, "image.tar");
      // Blob downloads stall half-way.
      proxy.setPlan((r) =>
        r.method === "GET" && r.path.includes("/blobs/sha256:")
          ? { kind: "stall", direction: "response", at: 0.5, stallMs: 60_000 }
          : null
      );
      const stalls = proxy.counts.stall;
      const cli = startCli(
        ["--progress", "plain", "pull", "image:slow:v1", "--output", output],
        env,
      );
      try {
        await waitFor(cli, () => proxy.counts.stall > stalls, 30_000, "a download to stall");
        await new Promise((r) => setTimeout(r, 200));
        cli.kill("SIGINT");
        const result = await cli.done;
        assert.equal(result.code, 130, result.stderr.slice(-2000));
        assert.match(result.stderr, /interrupted; nothing was left half-written/);
      } finally {
        cli.kill("SIGKILL");
        proxy.setPlan(undefined);
        proxy.dropAll();
      }
      assert.equal(await exists(output), false, "no output");
      assert.deepEqual(temporaryFiles(await listFiles(out)), []);
    });
  }
});
