// Small blobs go up in one request where the registry takes a `POST ?digest=` with the
// body (the in-process registry), and in two (`POST`, then `PUT` with the body) where it
// opens a session instead, as docker-registry does; what the registry does is learnt
// once per client (the first small upload asks, the others wait for its answer), and a
// registry refusing a `PUT` with bytes gets the usual `PATCH`.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { RegistryClient } from "../../lib/registry/client.ts";
import {
  bytesSource,
  digestOf,
  startTestRegistry,
  testBytes,
  type TestRegistry,
} from "../../testing/fake_registry.ts";
import {
  registryAvailable,
  type RunningRegistry,
  startRegistry,
} from "../../testing/docker_registry.ts";
import { type FaultProxy, startFaultProxy } from "../../testing/fault_proxy.ts";

const MiB = 1024 * 1024;
const FAST = { retryBaseDelayMs: 1, retryMaxDelayMs: 10, maxRetries: 4 };

async function readBack(client: RegistryClient, repo: string, digest: string) {
  return new Uint8Array(await new Response(await client.getBlob(repo, { digest })).arrayBuffer());
}

describe("small blobs in one request (in-process registry)", () => {
  let registry: TestRegistry;
  before(async () => {
    registry = await startTestRegistry();
  });
  after(async () => {
    await registry.close();
  });
  const uploads = (from: number) =>
    registry.requests.slice(from).filter((r) => r.url.includes("/blobs/uploads/"))
      .map((r) => `${r.method} ${r.bodyBytes} ${r.status}`);

  it("a registry taking POST ?digest= with the body gets one request a blob", async () => {
    const client = new RegistryClient({ url: registry.url, ...FAST });
    for (const [i, size] of [0, 1, 3000, MiB].entries()) {
      const bytes = testBytes(size, 40 + i);
      const start = registry.requests.length;
      // Without digest or size: the upload reads the small source whole first.
      const stored = await client.uploadBlob("one/app", { open: bytesSource(bytes).open });
      assert.deepEqual(stored, { digest: digestOf(bytes), size });
      assert.deepEqual(uploads(start), [`POST ${size} 201`]);
      assert.ok(
        registry.requests[start].url.includes(`digest=${encodeURIComponent(stored.digest)}`),
      );
      assert.deepEqual(await readBack(client, "one/app", stored.digest), bytes);
    }
    // Larger than 1 MiB: not small, the usual session.
    const start = registry.requests.length;
    const big = testBytes(MiB + 1, 49);
    await client.uploadBlob("one/app", { open: bytesSource(big).open });
    assert.deepEqual(uploads(start).map((r) => r.split(" ")[0]), ["POST", "PATCH", "PUT"]);
    assert.equal(registry.requests[start].bodyBytes, 0);
  });

  it("a registry ignoring the body gets it once in a PUT, learnt once per client", async () => {
    registry.faults.refuseSinglePost = true;
    try {
      const client = new RegistryClient({ url: registry.url, ...FAST });
      const blobs = Array.from({ length: 6 }, (_, i) => testBytes(2000 + i, 50 + i));
      const start = registry.requests.length;
      // At once: one of them asks, the others wait for the answer.
      const stored = await Promise.all(
        blobs.map((b) => client.uploadBlob("two/app", bytesSource(b))),
      );
      assert.deepEqual(stored.map((s) => s.digest), blobs.map(digestOf));
      const seen = uploads(start);
      const posts = seen.filter((r) => r.startsWith("POST"));
      assert.equal(posts.length, 6);
      assert.equal(posts.filter((r) => r !== "POST 0 202").length, 1, "one POST carried a body");
      assert.equal(seen.filter((r) => r.startsWith("PUT") && r.endsWith(" 201")).length, 6);
      assert.ok(!seen.some((r) => r.startsWith("PATCH")));
      for (const [i, b] of blobs.entries()) {
        assert.deepEqual(await readBack(client, "two/app", stored[i].digest), b);
      }
      assert.equal(registry.openUploads(), 0);
    } finally {
      registry.faults.refuseSinglePost = false;
    }
  });

  it("a registry refusing a PUT with the bytes gets PATCH, learnt once per client", async () => {
    registry.faults.refuseSinglePost = true;
    registry.faults.refuseMonolithic = true;
    try {
      const client = new RegistryClient({ url: registry.url, ...FAST });
      const first = testBytes(5000, 60);
      let start = registry.requests.length;
      assert.equal(
        (await client.uploadBlob("three/app", bytesSource(first))).digest,
        digestOf(first),
      );
      assert.deepEqual(
        uploads(start).map((r) => r.split(" ").slice(0, 1).concat(r.split(" ")[2]).join(" ")),
        [
          "POST 202",
          "PUT 400",
          "DELETE 204",
          "POST 202",
          "PATCH 202",
          "PUT 201",
        ],
      );
      const second = testBytes(5000, 61);
      start = registry.requests.length;
      await client.uploadBlob("three/app", bytesSource(second));
      assert.deepEqual(uploads(start).map((r) => r.split(" ")[0]), ["POST", "PATCH", "PUT"]);
      assert.deepEqual(await readBack(client, "three/app", digestOf(second)), second);
      assert.equal(registry.openUploads(), 0);
    } finally {
      registry.faults.refuseSinglePost = false;
      registry.faults.refuseMonolithic = false;
    }
  });
});

describe("small blobs against docker-registry (which opens a session instead)", {
  skip: !registryAvailable,
}, () => {
  let registry: RunningRegistry;
  let proxy: FaultProxy;
  before(async () => {
    registry = await startRegistry();
    proxy = await startFaultProxy({ target: registry.host, rate: 0 });
  });
  after(async () => {
    await proxy?.close();
    await registry?.stop();
  });

  it("falls back to POST then PUT with the body, the body sent once", async () => {
    const client = new RegistryClient({ url: proxy.url, ...FAST });
    const sizes = [70_000, 3000, 90_000];
    const blobs = sizes.map((size, i) => testBytes(size, 70 + i));
    const sent: string[][] = [];
    for (const bytes of blobs) {
      const start = proxy.log.length;
      await client.uploadBlob("small/app", bytesSource(bytes));
      sent.push(proxy.log.slice(start).map((r) => `${r.method} ${r.bodyBytes}`));
    }
    assert.deepEqual(sent, [
      // Over 16 KiB, it does not ask whether the registry takes the body in the POST …
      ["POST 0", "PUT 70000"],
      // … a small one asks, and the registry opens a session instead, ignoring it …
      ["POST 3000", "PUT 3000"],
      // … which is remembered.
      ["POST 0", "PUT 90000"],
    ]);
    for (const bytes of blobs) {
      assert.deepEqual(await readBack(client, "small/app", digestOf(bytes)), bytes);
    }
  });
});
