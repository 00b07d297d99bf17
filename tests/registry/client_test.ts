// The registry client against the in-process test registry, without faults:
// uploads in every mode, downloads, manifests, mounts, listings, auth flows.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { RegistryClient, type RegistryClientOptions } from "../../lib/registry/client.ts";
import {
  AuthenticationError,
  AuthorizationError,
  BlobNotFoundError,
  ManifestNotFoundError,
  RepositoryNotFoundError,
  UnsupportedError,
} from "../../lib/registry/errors.ts";
import { DigestMismatchError, ImagesError } from "../../lib/errors.ts";
import {
  bytesSource,
  digestOf,
  startTestRegistry,
  testBytes,
  type TestRegistry,
} from "../../testing/fake_registry.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const FAST = { retryBaseDelayMs: 1, retryMaxDelayMs: 20 };

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function manifestBytes(tag: string): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {
      mediaType: "application/vnd.oci.image.config.v1+json",
      digest: digestOf(new Uint8Array()),
      size: 0,
    },
    layers: [],
    annotations: { tag },
  }));
}

describe("uploads and downloads in every mode (in-process registry)", () => {
  let registry: TestRegistry;
  before(async () => {
    registry = await startTestRegistry();
  });
  after(async () => {
    await registry.close();
  });

  const chunk = 256 * KiB;
  const sizes = [0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk + 17];
  for (const mode of ["streaming", "chunked", "monolithic", "auto"] as const) {
    for (const absolute of [false, true]) {
      it(
        `${mode} mode, ${absolute ? "absolute" : "relative"} Location`,
        { timeout: 60_000 },
        async () => {
          registry.faults.absoluteLocation = absolute;
          const client = new RegistryClient({
            url: registry.url,
            uploadMode: mode,
            chunkSize: chunk,
            ...FAST,
          });
          for (const size of sizes) {
            const bytes = testBytes(size, size + 1);
            for (const withDigest of [false, true]) {
              const progress: number[] = [];
              const stored = await client.uploadBlob(
                `${mode}/app`,
                bytesSource(bytes, { withDigest }),
                {
                  onProgress: (n) => progress.push(n),
                },
              );
              assert.deepEqual(stored, { digest: digestOf(bytes), size });
              assert.equal(progress.at(-1), size);
              assert.equal(await client.headBlob(`${mode}/app`, stored.digest), size);
              const back = await readAll(await client.getBlob(`${mode}/app`, stored));
              assert.equal(digestOf(back), stored.digest);
            }
          }
          if (mode === "chunked") {
            const patches = registry.requests.filter((r) => r.method === "PATCH" && r.contentRange);
            assert.ok(patches.length > 0 && patches.every((r) => r.bodyBytes <= chunk));
          }
          assert.equal(registry.openUploads(), 0);
        },
      );
    }
  }

  it("checks the bytes against a digest and size given in advance", async () => {
    const client = new RegistryClient({ url: registry.url, ...FAST });
    const bytes = testBytes(1000, 9);
    const wrong = digestOf(testBytes(1000, 10));
    const before = registry.cancelledUploads;
    await assert.rejects(
      client.uploadBlob("check/app", bytesSource(bytes, { digest: wrong })),
      (e) => e instanceof DigestMismatchError && e.message.includes(wrong),
    );
    assert.ok(!registry.blobs.has(wrong) && !registry.blobs.has(digestOf(bytes)));
    assert.equal(registry.cancelledUploads, before + 1);
    await assert.rejects(
      client.uploadBlob("check/app", bytesSource(bytes, { size: 999 })),
      /more than the expected 999 bytes/,
    );
    assert.equal(registry.openUploads(), 0);
  });

  it("fails a download whose bytes do not match the digest, naming the blob", async () => {
    const client = new RegistryClient({ url: registry.url, ...FAST });
    const bytes = testBytes(5000, 2);
    const digest = registry.putBlob("verify/app", bytes);
    registry.faults.corruptGet = true;
    try {
      const stream = await client.getBlob("verify/app", { digest, size: 5000 });
      await assert.rejects(
        readAll(stream),
        (e) =>
          e instanceof DigestMismatchError && e.message.includes(digest) &&
          e.message.includes("verify/app"),
      );
    } finally {
      registry.faults.corruptGet = false;
    }
    await assert.rejects(
      client.getBlob("verify/app", { digest: digestOf(testBytes(3)) }),
      (e) => e instanceof BlobNotFoundError && e.message.includes("verify/app"),
    );
  });
});

describe("manifests, mounts and listings (in-process registry)", () => {
  let registry: TestRegistry;
  let client: RegistryClient;
  before(async () => {
    registry = await startTestRegistry({ faults: { maxPageSize: 2 } });
    client = new RegistryClient({ url: registry.url, ...FAST });
  });
  after(async () => {
    await registry.close();
  });

  it("puts, heads, gets and deletes manifests", async () => {
    const bytes = manifestBytes("1");
    const type = "application/vnd.oci.image.manifest.v1+json";
    const digest = await client.putManifest("m/app", "1.0", bytes, type);
    assert.equal(digest, digestOf(bytes));
    assert.deepEqual(await client.headManifest("m/app", "1.0"), {
      mediaType: type,
      digest,
      size: bytes.byteLength,
    });
    const got = await client.getManifest("m/app", digest);
    assert.deepEqual(got, { bytes, mediaType: type, digest });
    assert.equal(await client.headManifest("m/app", "nope"), undefined);
    await assert.rejects(
      client.getManifest("m/app", "nope"),
      (e) => e instanceof ManifestNotFoundError && e.message.includes("m/app:nope"),
    );
    await client.deleteManifest("m/app", digest);
    assert.equal(await client.headManifest("m/app", "1.0"), undefined);
    await assert.rejects(client.deleteManifest("m/app", digest), ManifestNotFoundError);
    await assert.rejects(client.deleteManifest("m/app", "1.0"), /deleted by digest/);
    await assert.rejects(
      client.putManifest("m/app", digestOf(testBytes(4)), bytes, type),
      DigestMismatchError,
    );
  });

  it("refuses manifests over 4 MiB before sending them", async () => {
    const big = new Uint8Array(4 * MiB + 1);
    await assert.rejects(
      client.putManifest("m/app", "big", big, "application/vnd.oci.image.manifest.v1+json"),
      /over the 4194304-byte limit/,
    );
  });

  it("reports deleting disabled as UnsupportedError", async () => {
    const digest = await client.putManifest(
      "m/nodelete",
      "1",
      manifestBytes("x"),
      "application/vnd.oci.image.manifest.v1+json",
    );
    registry.faults.deleteDisabled = true;
    try {
      await assert.rejects(client.deleteManifest("m/nodelete", digest), UnsupportedError);
    } finally {
      registry.faults.deleteDisabled = false;
    }
  });

  it("mounts blobs across repositories, cancelling a session opened instead", async () => {
    const bytes = testBytes(3000, 4);
    const digest = registry.putBlob("mount/base", bytes);
    assert.equal(await client.mountBlob("mount/app", digest, "mount/base"), true);
    assert.equal(await client.headBlob("mount/app", digest), 3000);
    const cancelled = registry.cancelledUploads;
    const missing = digestOf(testBytes(10));
    assert.equal(await client.mountBlob("mount/app", missing, "mount/base"), false);
    assert.equal(registry.cancelledUploads, cancelled + 1);
    assert.equal(registry.openUploads(), 0);

    // uploadBlob with mountFrom: mounted without reading the source …
    const source = bytesSource(bytes, { withDigest: true });
    const stored = await client.uploadBlob("mount/other", source, { mountFrom: ["mount/base"] });
    assert.deepEqual(stored, { digest, size: 3000 });
    assert.deepEqual(source.opens, []);
    // … or uploaded into the session the failed mount opened.
    const fresh = testBytes(2000, 5);
    const posts = registry.requests.filter((r) => r.method === "POST").length;
    const up = await client.uploadBlob("mount/other", bytesSource(fresh, { withDigest: true }), {
      mountFrom: ["mount/base"],
    });
    assert.equal(up.digest, digestOf(fresh));
    assert.equal(registry.requests.filter((r) => r.method === "POST").length, posts + 1);
    assert.equal(registry.openUploads(), 0);
  });

  it("lists repositories and tags 2 at a time to the end", async () => {
    for (let i = 0; i < 5; i++) registry.putTag("list/app", `t${i}`);
    for (const r of ["list/a", "list/b", "list/c"]) registry.putTag(r, "latest");
    const tags = await client.listTags("list/app", { pageSize: 30 });
    assert.deepEqual(tags, ["t0", "t1", "t2", "t3", "t4"]);
    const tagPages = registry.requests.filter((r) => r.url.startsWith("/v2/list/app/tags/list"));
    assert.equal(tagPages.length, 3);
    const repos = await client.listRepositories({ pageSize: 30 });
    for (const r of ["list/a", "list/app", "list/b", "list/c"]) assert.ok(repos.includes(r), r);
    assert.deepEqual(repos, [...repos].sort());
    await assert.rejects(client.listTags("list/none"), RepositoryNotFoundError);
  });

  it("refuses invalid names before sending anything", async () => {
    const count = registry.requests.length;
    await assert.rejects(client.listTags("Bad/Name"), /invalid repository name/);
    await assert.rejects(client.getManifest("app", "bad tag"), /invalid tag or digest/);
    await assert.rejects(client.headBlob("app", "sha256:xyz"), /sha256 digest/);
    assert.equal(registry.requests.length, count);
  });
});

describe("authentication (in-process registry)", () => {
  const password = "pw-Secret-123456";
  let basic: TestRegistry;
  let bearer: TestRegistry;
  before(async () => {
    basic = await startTestRegistry({ auth: "basic", users: { alice: password } });
    bearer = await startTestRegistry({
      auth: "bearer",
      users: { alice: password, reader: password },
      readOnlyUsers: ["reader"],
      identityTokens: { "identity-Token-abcdef": "alice" },
    });
  });
  after(async () => {
    await basic.close();
    await bearer.close();
  });

  const roundTrip = async (options: RegistryClientOptions) => {
    const client = new RegistryClient({ ...FAST, ...options });
    await client.ping();
    const bytes = testBytes(100_000, 6);
    const stored = await client.uploadBlob("auth/app", bytesSource(bytes));
    const back = await readAll(await client.getBlob("auth/app", stored));
    assert.equal(digestOf(back), digestOf(bytes));
    await client.putManifest(
      "auth/app",
      "1",
      manifestBytes("a"),
      "application/vnd.oci.image.manifest.v1+json",
    );
    assert.deepEqual(await client.listTags("auth/app"), ["1"]);
    return client;
  };

  it("Basic: sends the credentials, and fails typed without them", async () => {
    await roundTrip({ url: basic.url, credentials: { username: "alice", password } });
    const anonymous = new RegistryClient({
      url: basic.url,
      env: {},
      dockerConfigDir: "/nonexistent",
      ...FAST,
    });
    await assert.rejects(anonymous.ping(), AuthenticationError);
    const wrong = new RegistryClient({
      url: basic.url,
      credentials: { username: "alice", password: "wrong-password-1" },
      ...FAST,
    });
    await assert.rejects(wrong.headManifest("auth/app", "1"), AuthenticationError);
  });

  it("Bearer: fetches tokens per scope (OAuth2 POST), caches them", async () => {
    const before = bearer.tokensIssued;
    await roundTrip({ url: bearer.url, credentials: { username: "alice", password } });
    assert.ok(bearer.tokenRequests.includes("POST"));
    // ping, push (pull,push covers the later pulls) and catalog-free listing: few tokens
    assert.ok(bearer.tokensIssued - before <= 4, String(bearer.tokensIssued - before));
  });

  it("Bearer: falls back to GET when the token service refuses POST", async () => {
    bearer.faults.tokenPostStatus = 404;
    try {
      const methods = bearer.tokenRequests.length;
      await roundTrip({ url: bearer.url, credentials: { username: "alice", password } });
      const used = bearer.tokenRequests.slice(methods);
      assert.ok(used.includes("POST") && used.includes("GET"));
    } finally {
      bearer.faults.tokenPostStatus = undefined;
    }
  });

  it("Bearer: identity tokens go as OAuth2 refresh tokens", async () => {
    await roundTrip({ url: bearer.url, credentials: { identityToken: "identity-Token-abcdef" } });
    const bad = new RegistryClient({
      url: bearer.url,
      credentials: { identityToken: "nope-nope" },
      ...FAST,
    });
    await assert.rejects(bad.headManifest("auth/app", "1"), AuthenticationError);
  });

  it("Bearer: a read-only user pulls, and pushing is an AuthorizationError", async () => {
    const client = new RegistryClient({
      url: bearer.url,
      credentials: { username: "reader", password },
      ...FAST,
    });
    assert.ok(await client.headManifest("auth/app", "1"));
    await assert.rejects(
      client.uploadBlob("auth/app", bytesSource(testBytes(10))),
      (e) => e instanceof AuthorizationError && e.message.includes("auth/app"),
    );
  });

  it("Bearer: a token refused mid-way is fetched again", async () => {
    const client = new RegistryClient({
      url: bearer.url,
      credentials: { username: "alice", password },
      ...FAST,
    });
    assert.ok(await client.headManifest("auth/app", "1"));
    bearer.revokeTokens();
    const before = bearer.tokensIssued;
    assert.ok(await client.headManifest("auth/app", "1"));
    assert.equal(bearer.tokensIssued, before + 1);
  });

  it("403 is an AuthorizationError", async () => {
    basic.faults.statuses = [{ status: 403, path: /manifests/ }];
    const client = new RegistryClient({
      url: basic.url,
      credentials: { username: "alice", password },
      ...FAST,
    });
    await assert.rejects(client.getManifest("auth/app", "1"), AuthorizationError);
  });

  it("sends no Authorization to an upload Location on another host", async () => {
    const seen: { method: string; url: URL; authorization: string | null }[] = [];
    const fakeFetch = async (input: RequestInfo | URL, init?: RequestInit) => {
      const url = new URL(String(input));
      const authorization = new Headers(init?.headers).get("authorization");
      if (init?.body instanceof ReadableStream) await new Response(init.body).arrayBuffer();
      seen.push({ method: init?.method ?? "GET", url, authorization });
      if (url.host === "registry.example.com" && !authorization) {
        return Promise.resolve(
          new Response(null, { status: 401, headers: { "www-authenticate": 'Basic realm="r"' } }),
        );
      }
      if (init?.method === "POST") {
        return Promise.resolve(
          new Response(null, {
            status: 202,
            headers: { location: "https://storage.example.net/upload/1?sig=abc" },
          }),
        );
      }
      if (init?.method === "PATCH") {
        return Promise.resolve(
          new Response(null, {
            status: 202,
            headers: { location: "/upload/1?sig=def", range: "0-9" },
          }),
        );
      }
      return Promise.resolve(new Response(null, { status: 201 }));
    };
    const client = new RegistryClient({
      url: "https://registry.example.com",
      credentials: { username: "alice", password },
      fetch: fakeFetch as typeof fetch,
      ...FAST,
    });
    const bytes = testBytes(10);
    assert.deepEqual(await client.uploadBlob("app", bytesSource(bytes)), {
      digest: digestOf(bytes),
      size: 10,
    });
    assert.deepEqual(seen.map((s) => `${s.method} ${s.url.host}${s.url.pathname}`), [
      "POST registry.example.com/v2/app/blobs/uploads/",
      "POST registry.example.com/v2/app/blobs/uploads/",
      "PUT storage.example.net/upload/1",
    ]);
    assert.equal(seen[1].authorization, `Basic ${btoa(`alice:${password}`)}`);
    assert.ok(seen.slice(2).every((s) => s.authorization === null));
    assert.equal(seen[2].url.search, `?sig=abc&digest=${encodeURIComponent(digestOf(bytes))}`);
  });

  it("never sends credentials over plain http to a host that is not loopback", async () => {
    const seen: { url: string; authorization: string | null }[] = [];
    const fakeFetch = (input: RequestInfo | URL, init?: RequestInit) => {
      const headers = new Headers(init?.headers);
      seen.push({ url: String(input), authorization: headers.get("authorization") });
      return Promise.resolve(
        new Response("{}", {
          status: 401,
          headers: { "www-authenticate": 'Basic realm="r"' },
        }),
      );
    };
    const client = new RegistryClient({
      url: "http://registry.invalid:5000",
      credentials: { username: "alice", password },
      fetch: fakeFetch as typeof fetch,
      ...FAST,
    });
    await assert.rejects(
      client.ping(),
      (e) =>
        e instanceof ImagesError && e.code === "INSECURE_CREDENTIALS" &&
        !e.message.includes(password),
    );
    assert.ok(seen.length >= 1 && seen.every((s) => s.authorization === null));
    // …unless the registry is marked insecure.
    const insecure = new RegistryClient({
      url: "registry.invalid:5000",
      insecure: true,
      credentials: { username: "alice", password },
      fetch: fakeFetch as typeof fetch,
      ...FAST,
    });
    assert.equal(insecure.url.protocol, "http:");
    await assert.rejects(insecure.ping(), AuthenticationError);
    assert.ok(seen.some((s) => s.authorization?.startsWith("Basic ")));
  });
});
