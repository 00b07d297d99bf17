// Several writers and readers at once: processes pulling into the same OCI layout
// directory (index.json never torn, no image lost, no blob another image uses removed),
// and a push reading an archive while another process replaces it (the push completes
// with a consistent image or fails clearly; never a torn read).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { copyFile, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { Images, LocalImage } from "../../mod.ts";
import { openOciLayoutDestination } from "../../lib/archive/mod.ts";
import { sha256Digest } from "../../lib/oci/digest.ts";
import { MediaType } from "../../lib/oci/media_types.ts";
import {
  registryAvailable,
  type RunningRegistry,
  startRegistry,
} from "../../testing/docker_registry.ts";
import { type FaultProxy, startFaultProxy } from "../../testing/fault_proxy.ts";
import { runCli, startCli } from "../../testing/cli.ts";
import { makeTempDir, removeTempDir } from "../../testing/fs.ts";
import {
  buildSoakImage,
  checkArchiveImage,
  checkLayoutImage,
  exists,
  listFiles,
  type SoakImage,
  temporaryFiles,
} from "../../testing/soak.ts";
import {
  docker25SaveEntries,
  layerTar,
  type SyntheticImage,
  syntheticImage,
  writeTar,
} from "../../testing/tools.ts";
import { testBytes } from "../../testing/fake_registry.ts";

const NAMES = ["alpha", "beta", "gamma", "delta"];

/** Images sharing a base layer, each with its own top layer. */
function family(): SyntheticImage[] {
  const base = layerTar({ "base.bin": testBytes(300_000, 1) });
  return NAMES.map((name, i) =>
    syntheticImage([base, layerTar({ [`${name}.bin`]: testBytes(200_000 + i, 10 + i) })], {
      gzip: true,
      env: [`NAME=${name}`],
    })
  );
}

/** Checks a layout holds exactly the images `names`, each intact, and nothing half-written. */
async function checkLayout(layout: string, names: string[]): Promise<void> {
  const index = JSON.parse(await readFile(join(layout, "index.json"), "utf8"));
  const held = index.manifests.map((m: { annotations: Record<string, string> }) =>
    m.annotations["io.containerd.image.name"]
  ).sort();
  assert.deepEqual(held, names.map((n) => `docker.io/library/${n}`).sort());
  for (const name of names) await checkLayoutImage(layout, name, false);
  const files = await listFiles(layout);
  assert.deepEqual(temporaryFiles(files), []);
  assert.ok(!files.includes("index.json.lock"), "the lock is released");
}

describe("several processes on one OCI layout", { skip: !registryAvailable }, () => {
  let registry: RunningRegistry;
  let dir: string;
  let env: Record<string, string>;
  let api: Images;

  before(async () => {
    [registry, dir] = await Promise.all([startRegistry(), makeTempDir("apolo-concurrent")]);
    api = new Images({
      registries: { default: registry.url },
      clusterName: "default",
      owner: "team",
      cacheDir: false,
    });
    const images = family();
    for (const [i, name] of NAMES.entries()) {
      const archive = join(dir, `${name}.tar`);
      await writeTar(archive, docker25SaveEntries(images[i], name, "1"));
      await api.push(new LocalImage(name, "1"), api.parser.parseRemote(`image:${name}:1`), {
        input: archive,
      });
    }
    env = { APOLO_REGISTRY: registry.url, APOLO_OWNER: "team", XDG_CACHE_HOME: join(dir, "cache") };
  });
  after(async () => {
    await registry?.stop();
    if (dir) await removeTempDir(dir);
  });

  it("two processes pulling into a new layout at once: both images, index.json whole", {
    timeout: 120_000,
  }, async () => {
    for (let round = 0; round < 3; round++) {
      const layout = join(dir, `two-${round}`) + "/";
      const [a, b] = await Promise.all([
        runCli(["pull", "-q", "image:alpha:1", "alpha:1", "--output", layout], env),
        runCli(["pull", "-q", "image:beta:1", "beta:1", "--output", layout], env),
      ]);
      assert.equal(a.code, 0, a.stderr);
      assert.equal(b.code, 0, b.stderr);
      await checkLayout(layout, ["alpha:1", "beta:1"]);
    }
  });

  it("four pulls at once in one process: no image lost to another's index.json update", async () => {
    for (let round = 0; round < 5; round++) {
      const layout = join(dir, `four-${round}`) + "/";
      await Promise.all(
        NAMES.map((name) =>
          new Images({
            registries: { default: registry.url },
            clusterName: "default",
            owner: "team",
          }).pull(api.parser.parseRemote(`image:${name}:1`), new LocalImage(name, "1"), {
            output: layout,
          })
        ),
      );
      await checkLayout(layout, NAMES.map((n) => `${n}:1`));
    }
  });

  it("a writer rolling back keeps the blobs another writer's image came to use", async () => {
    const layout = join(dir, "rollback");
    const config = new TextEncoder().encode('{"rootfs":{"type":"layers","diff_ids":[]}}');
    const shared = new Uint8Array(testBytes(1000, 3));
    const put = (d: Awaited<ReturnType<typeof openOciLayoutDestination>>, bytes: Uint8Array) =>
      d.putBlob(new Blob([bytes as BlobPart]).stream(), {
        mediaType: MediaType.OciLayerGzip,
        digest: sha256Digest(bytes),
        size: bytes.length,
      });
    const first = await openOciLayoutDestination(layout);
    const second = await openOciLayoutDestination(layout);
    await put(first, shared); // the first writer adds the shared blob
    const layer = { mediaType: MediaType.OciLayerGzip, digest: sha256Digest(shared), size: 1000 };
    assert.ok(await second.hasBlob(layer), "the second writer finds it and skips it");
    const configDescriptor = await put(second, config);
    const manifest = new TextEncoder().encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { ...configDescriptor, mediaType: MediaType.OciConfig },
      layers: [layer],
    }));
    await second.putManifest(manifest, {
      mediaType: MediaType.OciManifest,
      digest: sha256Digest(manifest),
      size: manifest.length,
    }, "second:1");
    await second.commit();
    await first.abort(); // the first writer fails and rolls back
    assert.ok(
      await exists(join(layout, "blobs/sha256", layer.digest.slice(7))),
      "shared blob kept",
    );
    const index = JSON.parse(await readFile(join(layout, "index.json"), "utf8"));
    assert.equal(index.manifests.length, 1);
  });

  it("a stale lock left by a process that died is broken; a live one is waited for", async () => {
    const layout = join(dir, "stale") + "/";
    const lock = join(layout, "index.json.lock");
    const { hostname } = await import("node:os");
    assert.equal(
      (await runCli(["pull", "-q", "image:alpha:1", "alpha:1", "--output", layout], env)).code,
      0,
    );
    // the lock of a process that is gone (above Linux's default pid_max)
    await writeFile(lock, JSON.stringify({ pid: 4194305, host: hostname() }));
    const broken = await runCli(["pull", "-q", "image:beta:1", "beta:1", "--output", layout], env);
    assert.equal(broken.code, 0, broken.stderr);
    await checkLayout(layout, ["alpha:1", "beta:1"]);
    // the lock of a live process (this one): the pull waits until it is released
    await writeFile(lock, JSON.stringify({ pid: process.pid, host: hostname() }));
    const waiting = startCli(["pull", "-q", "image:gamma:1", "gamma:1", "--output", layout], env);
    let ended = false;
    waiting.done.then(() => ended = true);
    await new Promise((r) => setTimeout(r, 1500));
    const index = JSON.parse(await readFile(join(layout, "index.json"), "utf8"));
    assert.equal(index.manifests.length, 2, "index.json untouched while the lock is held");
    assert.equal(ended, false, "the pull waits while the lock is held");
    await rm(lock);
    const result = await waiting.done;
    assert.equal(result.code, 0, result.stderr);
    await checkLayout(layout, ["alpha:1", "beta:1", "gamma:1"]);
  });
});

describe("a push reading an archive another process replaces", { skip: !registryAvailable }, () => {
  let registry: RunningRegistry;
  let proxy: FaultProxy;
  let dir: string;
  let first: SoakImage;
  let second: SyntheticImage;
  let secondArchive: string;
  let env: Record<string, string>;
  let api: Images;

  before(async () => {
    [registry, dir] = await Promise.all([startRegistry(), makeTempDir("apolo-replace")]);
    first = await buildSoakImage(dir, 0.25);
    second = syntheticImage([layerTar({ "other.bin": testBytes(2_000_000, 99) })], { gzip: true });
    secondArchive = join(dir, "second.tar");
    await writeTar(secondArchive, docker25SaveEntries(second, "localhost/soak/image", "source"));
    // Uploads go slowly: each PATCH waits 150 ms before its first byte goes on.
    proxy = await startFaultProxy({
      target: registry.host,
      rate: 0,
      plan: (r) =>
        r.method === "PATCH" ? { kind: "stall", direction: "request", at: 0, stallMs: 150 } : null,
    });
    api = new Images({
      registries: { default: registry.url },
      clusterName: "default",
      owner: "team",
      cacheDir: false,
    });
    env = {
      APOLO_REGISTRY: proxy.url,
      APOLO_OWNER: "team",
      XDG_CACHE_HOME: join(dir, "cache"),
    };
  });
  after(async () => {
    await proxy?.close();
    await registry?.stop();
    if (dir) await removeTempDir(dir);
  });

  /** What the registry holds under `tag`, pulled and checked independently. */
  const pulled = async (how: string) => {
    const output = join(dir, `${how}.tar`);
    await api.pull(api.parser.parseRemote(`image:replaced-${how}:v1`), new LocalImage("x", how), {
      output,
    });
    return await checkArchiveImage(output, join(dir, "scratch"), `x:${how}`, true);
  };

  for (const how of ["rename", "overwrite"] as const) {
    it(`${how} mid-push: a consistent image or a clear error`, { timeout: 120_000 }, async () => {
      const input = join(dir, `input-${how}.tar`);
      await copyFile(first.path, input);
      const requests = proxy.requests;
      const cli = startCli(
        [
          "--progress",
          "plain",
          "push",
          "--input",
          input,
          "localhost/soak/image:source",
          `image:replaced-${how}:v1`,
        ],
        env,
      );
      // once the upload has started, the other process replaces the archive
      const deadline = Date.now() + 30_000;
      while (proxy.requests < requests + 4 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      if (how === "rename") {
        await copyFile(secondArchive, `${input}.new`);
        await rename(`${input}.new`, input);
      } else {
        await writeFile(input, await readFile(secondArchive)); // truncates and rewrites in place
      }
      const result = await cli.done;
      if (process.env.SHOW_OUTCOMES) console.log(how, result.code, result.stderr.slice(-200));
      if (result.code === 0) {
        const got = await pulled(how);
        // renamed over: the push read the file it opened, whole
        if (how === "rename") assert.equal(got.configDigest, first.configDigest);
        else assert.ok([first.configDigest, second.configDigest].includes(got.configDigest));
      } else {
        assert.equal(result.code, 1, result.stderr);
        const last = result.stderr.trim().split("\n").at(-1)!;
        assert.match(last, /^apolo-images: (?!unexpected)/, result.stderr);
        assert.match(last, new RegExp(input.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")), last);
        const head = await fetch(`${registry.url}/v2/team/replaced-${how}/manifests/v1`, {
          method: "HEAD",
          headers: { accept: `${MediaType.OciManifest}, ${MediaType.DockerManifest}` },
        });
        assert.equal(head.status, 404, "a failed push leaves no tag");
      }
    });
  }
});
