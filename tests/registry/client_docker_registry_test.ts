// The registry client against Debian's docker-registry (CNCF distribution 2.8), started on
// a free loopback port in three configurations: no auth, htpasswd Basic, token auth.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { RegistryClient, type RegistryClientOptions } from "../../lib/registry/client.ts";
import {
  AuthenticationError,
  AuthorizationError,
  BlobNotFoundError,
  ManifestNotFoundError,
} from "../../lib/registry/errors.ts";
import { AbortedError } from "../../lib/errors.ts";
import {
  registryAvailable,
  type RunningRegistry,
  startRegistry,
} from "../../testing/docker_registry.ts";
import { bytesSource, digestOf, testBytes } from "../../testing/fake_registry.ts";

const MiB = 1024 * 1024;
const CHUNK = 2 * MiB;
const FAST = { retryBaseDelayMs: 5, retryMaxDelayMs: 50 };
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function manifestFor(
  config: { digest: string; size: number },
  layers: { digest: string; size: number }[],
) {
  return new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
    layers: layers.map((l) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...l })),
  }));
}

/** Upload sessions still open in a repository (a cancelled one keeps only its hash states). */
async function uploadsLeft(registry: RunningRegistry, repo: string): Promise<number> {
  const dir = join(registry.storageDir, "docker/registry/v2/repositories", repo, "_uploads");
  let open = 0;
  try {
    for (const id of await readdir(dir)) {
      if ((await readdir(join(dir, id))).includes("data")) open++;
    }
  } catch {
    // no uploads folder: none open
  }
  return open;
}

for (const auth of ["none", "htpasswd", "token"] as const) {
  describe(`docker-registry with auth ${auth}`, { skip: !registryAvailable }, () => {
    let registry: RunningRegistry;
    const client = (options: Partial<RegistryClientOptions> = {}) =>
      new RegistryClient({
        url: registry.url,
        env: {},
        dockerConfigDir: "/nonexistent",
        ...(registry.username
          ? { credentials: { username: registry.username, password: registry.password! } }
          : {}),
        ...FAST,
        ...options,
      });
    before(async () => {
      registry = await startRegistry({ auth });
    });
    after(async () => {
      await registry?.stop();
    });

    it("pings", async () => {
      await client().ping();
    });

    for (const mode of ["streaming", "chunked", "monolithic", "auto"] as const) {
      it(`pushes and pulls blobs of 0, 1, chunk ± 1 bytes and 24 MiB (${mode})`, {
        timeout: 120_000,
      }, async () => {
        const c = client({ uploadMode: mode, chunkSize: CHUNK });
        const repo = `real/${mode}`;
        for (const [i, size] of [0, 1, CHUNK - 1, CHUNK + 1, 24 * MiB].entries()) {
          const bytes = testBytes(size, 100 + i);
          const stored = await c.uploadBlob(repo, bytesSource(bytes, { withDigest: i % 2 === 0 }));
          assert.deepEqual(stored, { digest: digestOf(bytes), size });
          assert.equal(await c.headBlob(repo, stored.digest), size);
          const back = await readAll(await c.getBlob(repo, stored));
          assert.equal(back.byteLength, size);
          assert.equal(digestOf(back), stored.digest);
        }
        assert.equal(await uploadsLeft(registry, repo), 0);
      });
    }

    it("puts, heads, gets and deletes manifests", async () => {
      const c = client();
      const repo = "real/manifests";
      const config = await c.uploadBlob(repo, bytesSource(new TextEncoder().encode("{}")));
      const layer = await c.uploadBlob(repo, bytesSource(testBytes(1000, 7)));
      const bytes = manifestFor(config, [layer]);
      const digest = await c.putManifest(repo, "v1", bytes, OCI_MANIFEST);
      assert.equal(digest, digestOf(bytes));
      assert.deepEqual(await c.headManifest(repo, "v1"), {
        mediaType: OCI_MANIFEST,
        digest,
        size: bytes.byteLength,
      });
      assert.deepEqual(await c.getManifest(repo, "v1"), { bytes, mediaType: OCI_MANIFEST, digest });
      assert.deepEqual(await c.getManifest(repo, digest), {
        bytes,
        mediaType: OCI_MANIFEST,
        digest,
      });
      assert.equal(await c.putManifest(repo, digest, bytes, OCI_MANIFEST), digest);
      await c.deleteManifest(repo, digest);
      assert.equal(await c.headManifest(repo, "v1"), undefined);
      await assert.rejects(
        c.getManifest(repo, "v1"),
        (e) =>
          e instanceof ManifestNotFoundError && e.message.includes(`${registry.host}/${repo}:v1`),
      );
      await assert.rejects(c.getBlob(repo, { digest: digestOf(testBytes(5)) }), BlobNotFoundError);
    });

    it("mounts a blob from another repository", async () => {
      const c = client();
      const bytes = testBytes(50_000, 8);
      const stored = await c.uploadBlob("real/mount-a", bytesSource(bytes));
      assert.equal(await c.mountBlob("real/mount-b", stored.digest, "real/mount-a"), true);
      assert.equal(await c.headBlob("real/mount-b", stored.digest), 50_000);
      assert.equal(
        await c.mountBlob("real/mount-b", digestOf(testBytes(9)), "real/mount-a"),
        false,
      );
      const source = bytesSource(bytes, { withDigest: true });
      assert.deepEqual(
        await c.uploadBlob("real/mount-c", source, { mountFrom: ["real/mount-a"] }),
        { digest: stored.digest, size: 50_000 },
      );
      assert.deepEqual(source.opens, []);
      assert.equal(await uploadsLeft(registry, "real/mount-b"), 0);
    });

    it("lists repositories and tags, following pages", async () => {
      const c = client();
      const config = await c.uploadBlob("real/list-0", bytesSource(new TextEncoder().encode("{}")));
      const names = ["real/list-0", "real/list-1", "real/list-2", "real/list-3", "real/list-4"];
      for (const name of names) {
        if (name !== "real/list-0") await c.mountBlob(name, config.digest, "real/list-0");
        for (const tag of ["a", "b", "c"]) {
          await c.putManifest(name, tag, manifestFor(config, []), OCI_MANIFEST);
        }
      }
      const repos = await c.listRepositories({ pageSize: 2 });
      for (const name of names) assert.ok(repos.includes(name), name);
      assert.equal(new Set(repos).size, repos.length);
      assert.deepEqual((await c.listTags("real/list-3", { pageSize: 2 })).sort(), ["a", "b", "c"]);
    });

    it("cancels the upload session on abort", async () => {
      const c = client({ uploadMode: "chunked", chunkSize: MiB });
      const controller = new AbortController();
      const bytes = testBytes(6 * MiB, 10);
      const source = bytesSource(bytes);
      await assert.rejects(
        c.uploadBlob("real/abort", source, {
          signal: controller.signal,
          onProgress: (n) => n >= 2 * MiB && controller.abort(),
        }),
        AbortedError,
      );
      assert.equal(await uploadsLeft(registry, "real/abort"), 0);
      assert.equal(await c.headBlob("real/abort", digestOf(bytes)), undefined);
    });

    if (auth !== "none") {
      it("types authentication failures and keeps the password out of messages", async () => {
        const wrong = `${registry.password}-wrong`;
        const lines: string[] = [];
        const bad = client({
          credentials: { username: registry.username!, password: wrong },
          log: (l) => lines.push(l),
        });
        let error: unknown;
        try {
          await bad.headManifest("real/manifests", "v1");
        } catch (e) {
          error = e;
        }
        assert.ok(error instanceof AuthenticationError, String(error));
        assert.ok(
          !(error as Error).message.includes(wrong) && !(error as Error).stack?.includes(wrong),
        );
        assert.ok(lines.length > 0 && lines.every((l) => !l.includes(wrong)));
        // anonymous: refused with an AuthenticationError that says no credentials were found
        await assert.rejects(
          client({ credentials: undefined }).headManifest("real/manifests", "v1"),
          (e) => e instanceof AuthenticationError && /no credentials/.test(e.message),
        );
      });
    }

    if (auth === "token") {
      it("a read-only user may pull but not push (AuthorizationError)", async () => {
        const reader = client({
          credentials: { username: registry.readerUsername!, password: registry.readerPassword! },
        });
        const pushed = await client().uploadBlob("real/readonly", bytesSource(testBytes(100, 11)));
        assert.equal(await reader.headBlob("real/readonly", pushed.digest), 100);
        await assert.rejects(
          reader.uploadBlob("real/readonly", bytesSource(testBytes(100, 12))),
          AuthorizationError,
        );
      });
    }
  });
}

describe("docker-registry with tokens that expire mid-upload", { skip: !registryAvailable }, () => {
  let registry: RunningRegistry;
  before(async () => {
    // The registry refuses a token 2 s after it was issued; the client is told 1 h.
    registry = await startRegistry({
      auth: "token",
      tokenValidSeconds: 2,
      tokenExpiresIn: 3600,
      identityTokens: { "identity-token-for-tester": "tester" },
    });
  });
  after(async () => {
    await registry?.stop();
  });

  const slowSource = (bytes: Uint8Array, delayMs: number) => {
    const source = bytesSource(bytes, { piece: 256 * 1024 });
    const open = source.open;
    source.open = (offset) => {
      const inner = open(offset).getReader();
      return new ReadableStream<Uint8Array>({
        async pull(ctl) {
          await new Promise((r) => setTimeout(r, delayMs));
          const { done, value } = await inner.read();
          if (done) ctl.close();
          else ctl.enqueue(value);
        },
      });
    };
    return source;
  };

  for (const mode of ["chunked", "streaming"] as const) {
    it(`${mode}: the upload outlives its token and completes`, { timeout: 60_000 }, async () => {
      const client = new RegistryClient({
        url: registry.url,
        credentials: { username: registry.username!, password: registry.password! },
        uploadMode: mode,
        chunkSize: 512 * 1024,
        ...FAST,
      });
      const bytes = testBytes(3 * MiB, 20);
      const issued = registry.tokenServer!.issued;
      const stored = await client.uploadBlob(`real/expire-${mode}`, slowSource(bytes, 250));
      assert.equal(stored.digest, digestOf(bytes));
      assert.ok(registry.tokenServer!.issued >= issued + 2);
      const back = await readAll(await client.getBlob(`real/expire-${mode}`, stored));
      assert.equal(digestOf(back), stored.digest);
    });
  }

  it("identity tokens are exchanged with an OAuth2 POST", async () => {
    const client = new RegistryClient({
      url: registry.url,
      credentials: { identityToken: "identity-token-for-tester" },
      ...FAST,
    });
    const before = registry.tokenServer!.methods.length;
    const stored = await client.uploadBlob("real/identity", bytesSource(testBytes(1000, 21)));
    assert.equal(await client.headBlob("real/identity", stored.digest), 1000);
    assert.ok(registry.tokenServer!.methods.slice(before).includes("POST"));
  });
});
