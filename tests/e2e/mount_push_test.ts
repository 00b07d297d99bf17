// Pushing to another repository of the same registry mounts what the blob cache saw
// there instead of uploading it again: against docker-registry with htpasswd and with
// token auth, through a proxy that counts the bytes of every request, a push of the
// same image to a second repository sends no blob bytes, an image built on it sends
// only its new layer, a re-push to a new tag is a manifest HEAD and PUT, and skopeo
// reads every image back intact. A mount the registry refuses (a session instead, or
// an error) falls back to the upload (the in-process registry refuses on demand).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import {
  registryAvailable,
  type RunningRegistry,
  startRegistry,
} from "../../testing/docker_registry.ts";
import { type FaultProxy, startFaultProxy } from "../../testing/fault_proxy.ts";
import { startTestRegistry, type TestRegistry } from "../../testing/fake_registry.ts";
import { runCli } from "../../testing/cli.ts";
import { makeTempDir, removeTempDir } from "../../testing/fs.ts";
import {
  layerTar,
  legacySaveEntries,
  run,
  type SyntheticImage,
  syntheticImage,
  writeTar,
} from "../../testing/tools.ts";

const KiB = 1024;

/** Two base layers gzip cannot shrink, and an image built on them with one new layer. */
async function makeImages(dir: string): Promise<{
  base: SyntheticImage;
  derived: SyntheticImage;
  archives: Record<string, string>;
}> {
  const one = layerTar({ "usr/lib/one.bin": new Uint8Array(randomBytes(600 * KiB)) });
  const two = layerTar({ "usr/lib/two.bin": new Uint8Array(randomBytes(300 * KiB)) });
  const top = layerTar({ "app/main.bin": new Uint8Array(randomBytes(40 * KiB)) });
  const base = syntheticImage([one, two]);
  const derived = syntheticImage([one, two, top]);
  const archives = { "base:v1": join(dir, "base.tar"), "derived:v1": join(dir, "derived.tar") };
  await writeTar(archives["base:v1"], legacySaveEntries(base, ["base:v1"]));
  await writeTar(archives["derived:v1"], legacySaveEntries(derived, ["derived:v1"]));
  return { base, derived, archives };
}

/**
 * Requests of the proxy's log that wrote blobs (uploads, mounts), and their body bytes.
 * Mounts are counted by what they asked (one answered 401 is sent again with credentials).
 */
function blobWrites(proxy: FaultProxy, from = 0) {
  const writes = proxy.log.slice(from).filter((r) => /\/blobs\/uploads\//.test(r.path));
  const mounts = writes.filter((r) => r.method === "POST" && /[?&]mount=/.test(r.path));
  return {
    mounts: new Set(mounts.map((r) => r.path)).size,
    uploads: writes.filter((r) => !/[?&]mount=/.test(r.path)).length,
    bytes: writes.reduce((sum, r) => sum + r.bodyBytes, 0),
  };
}

for (const auth of ["htpasswd", "token"] as const) {
  describe(`push to another repository mounts (docker-registry, ${auth})`, {
    skip: !registryAvailable,
  }, () => {
    let registry: RunningRegistry;
    let proxy: FaultProxy;
    let dir: string;
    let images: Awaited<ReturnType<typeof makeImages>>;

    before(async () => {
      registry = await startRegistry({ auth });
      proxy = await startFaultProxy({ target: registry.host, rate: 0 });
      dir = await makeTempDir("apolo-mount-test");
      images = await makeImages(dir);
    });

    after(async () => {
      await proxy?.close();
      await registry?.stop();
      if (dir) await removeTempDir(dir);
    });

    const push = async (local: string, remote: string) => {
      const result = await runCli(
        ["push", "--input", images.archives[local], local, `image:${remote}`],
        {
          APOLO_REGISTRY: proxy.url,
          APOLO_OWNER: "alice",
          APOLO_USERNAME: registry.username!,
          APOLO_TOKEN: registry.password!,
          XDG_CACHE_HOME: join(dir, "cache"),
        },
      );
      assert.equal(result.code, 0, result.stderr.slice(-3000));
      return result;
    };

    /** What the registry holds under a tag, read back and verified by skopeo. */
    const readBack = async (repo: string, tag: string, image: SyntheticImage) => {
      const ref = `docker://${registry.host}/alice/${repo}:${tag}`;
      const creds = `--creds=${registry.username}:${registry.password}`;
      const manifest = JSON.parse(
        (await run("skopeo", ["inspect", "--raw", "--tls-verify=false", creds, ref])).stdout,
      );
      assert.equal(manifest.config.digest, image.configDigest);
      const config = JSON.parse(
        (await run("skopeo", ["inspect", "--config", "--raw", "--tls-verify=false", creds, ref]))
          .stdout,
      );
      assert.deepEqual(config.rootfs.diff_ids, image.diffIds);
      await run("skopeo", [
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        `--src-creds=${registry.username}:${registry.password}`,
        ref,
        `oci:${join(dir, `check-${repo}-${tag}`)}:${tag}`,
      ]);
      return manifest as { layers: { size: number; digest: string }[]; config: { size: number } };
    };

    it("the same image to a second repository sends no blob bytes", async () => {
      const start = proxy.log.length;
      await push("base:v1", "first:v1");
      const cold = blobWrites(proxy, start);
      const first = await readBack("first", "v1", images.base);
      const layerBytes = first.layers.reduce((n, l) => n + l.size, 0);
      assert.ok(cold.bytes >= layerBytes, `the cold push sent ${cold.bytes} of ${layerBytes}`);

      const again = proxy.log.length;
      await push("base:v1", "second:v1");
      const second = blobWrites(proxy, again);
      assert.equal(second.uploads, 0, "no upload session");
      assert.equal(second.bytes, 0, "no blob byte");
      assert.equal(second.mounts, first.layers.length + 1, "layers and config mounted");
      const copy = await readBack("second", "v1", images.base);
      assert.deepEqual(copy.layers, first.layers);
    });

    it("an image built on a pushed one sends only its new layer", async () => {
      const start = proxy.log.length;
      await push("derived:v1", "third:v1");
      const sent = blobWrites(proxy, start);
      const third = await readBack("third", "v1", images.derived);
      const fresh = third.layers[2].size + third.config.size;
      // The new layer and config (the config maybe twice: it may ask whether the registry
      // takes a blob in the POST), plus the framing of a streamed body.
      assert.ok(
        sent.bytes >= fresh && sent.bytes < fresh + third.config.size + 4 * KiB,
        `sent ${sent.bytes} bytes; the new layer and config are ${fresh}`,
      );
      assert.equal(sent.mounts, 2, "the base layers were mounted");
    });

    it("a re-push to a new tag is a manifest HEAD and PUT", async () => {
      const start = proxy.log.length;
      await push("base:v1", "second:v2");
      const requests = proxy.log.slice(start)
        .filter((r) => r.path.startsWith("/v2/") && r.path !== "/v2/")
        .map((r) => `${r.method} ${r.path.replace(/sha256:[0-9a-f]{64}/, "<digest>")}`);
      // A 401 answered (and sent again with credentials) shows as the same request twice.
      assert.deepEqual(
        [...new Set(requests)],
        ["HEAD /v2/alice/second/manifests/<digest>", "PUT /v2/alice/second/manifests/v2"],
      );
      await readBack("second", "v2", images.base);
    });
  });
}

describe("a mount the registry refuses falls back to the upload (in-process registry)", () => {
  let registry: TestRegistry;
  let dir: string;
  let images: Awaited<ReturnType<typeof makeImages>>;

  before(async () => {
    registry = await startTestRegistry({ auth: "basic", users: { alice: "secret" } });
    dir = await makeTempDir("apolo-mount-refused");
    images = await makeImages(dir);
  });

  after(async () => {
    await registry?.close();
    if (dir) await removeTempDir(dir);
  });

  const push = async (remote: string, cache: string) => {
    const result = await runCli(
      ["push", "--input", images.archives["base:v1"], "base:v1", `image:${remote}`],
      {
        APOLO_REGISTRY: registry.url,
        APOLO_OWNER: "alice",
        APOLO_USERNAME: "alice",
        APOLO_TOKEN: "secret",
        XDG_CACHE_HOME: join(dir, cache),
      },
    );
    assert.equal(result.code, 0, result.stderr.slice(-3000));
  };

  for (const refusal of ["session", 403, 404] as const) {
    it(`refused with ${refusal === "session" ? "202 and a session" : refusal}`, async () => {
      const cache = `cache-${refusal}`;
      await push(`src-${refusal}:v1`, cache);
      registry.faults.refuseMount = refusal;
      const start = registry.requests.length;
      try {
        await push(`dst-${refusal}:v1`, cache);
      } finally {
        registry.faults.refuseMount = undefined;
      }
      const seen = registry.requests.slice(start);
      const mounts = seen.filter((r) => /[?&]mount=/.test(r.url) && r.status !== 401);
      assert.equal(mounts.length, 3, "layers and config were tried");
      const sent = seen.filter((r) => /\/blobs\/uploads\//.test(r.url))
        .reduce((n, r) => n + r.bodyBytes, 0);
      assert.ok(sent > 900 * KiB, `uploaded ${sent} bytes`);
      assert.equal(registry.openUploads(), 0, "no session left open");
      // The pushed image reads back whole, each blob checked against its digest.
      const pulled = await runCli([
        "pull",
        "--output",
        join(dir, `pulled-${refusal}.tar`),
        `image:dst-${refusal}:v1`,
      ], {
        APOLO_REGISTRY: registry.url,
        APOLO_OWNER: "alice",
        APOLO_USERNAME: "alice",
        APOLO_TOKEN: "secret",
        XDG_CACHE_HOME: join(dir, "cache"),
      });
      assert.equal(pulled.code, 0, pulled.stderr.slice(-3000));
      const config = JSON.parse(
        (await run("skopeo", [
          "inspect",
          "--config",
          "--raw",
          `docker-archive:${join(dir, `pulled-${refusal}.tar`)}`,
        ]))
          .stdout,
      );
      assert.deepEqual(config.rootfs.diff_ids, images.base.diffIds);
    });
  }
});
