// Faults injected by the in-process test registry: every operation either completes
// with intact data or fails with a clear error after the retry bound; never corrupt.
import { after, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { RegistryClient, type RegistryClientOptions } from "../../lib/registry/client.ts";
import {
  RegistryConnectionError,
  RegistryError,
  TooManyRequestsError,
  UnsupportedError,
} from "../../lib/registry/errors.ts";
import { AbortedError } from "../../lib/errors.ts";
import { markDisposable } from "../../lib/gc.ts";
import {
  bytesSource,
  digestOf,
  startTestRegistry,
  testBytes,
  type TestRegistry,
} from "../../testing/fake_registry.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const FAST = { retryBaseDelayMs: 1, retryMaxDelayMs: 10, maxRetries: 4 };

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

describe("faults during uploads", () => {
  let registry: TestRegistry;
  const client = (options: Partial<RegistryClientOptions> = {}) =>
    new RegistryClient({ url: registry.url, ...FAST, ...options });
  before(async () => {
    registry = await startTestRegistry();
  });
  after(async () => {
    await registry.close();
  });
  beforeEach(() => {
    for (const key of Object.keys(registry.faults)) {
      delete (registry.faults as Record<string, unknown>)[key];
    }
    registry.requests.length = 0;
  });

  const check = async (c: RegistryClient, repo: string, bytes: Uint8Array, withDigest = false) => {
    const stored = await c.uploadBlob(repo, bytesSource(bytes, { withDigest }));
    assert.deepEqual(stored, { digest: digestOf(bytes), size: bytes.byteLength });
    assert.equal(digestOf(registry.blobs.get(stored.digest)!), stored.digest);
    assert.equal(registry.openUploads(), 0);
    return stored;
  };

  it("a streamed PATCH dropped part-way resumes from the offset the session holds", async () => {
    const bytes = testBytes(3 * MiB + 5, 11);
    registry.faults.dropPatchAfterBytes = 1_234_567;
    const c = client({ uploadMode: "streaming", chunkSize: MiB });
    await check(c, "drop/stream", bytes);
    const patches = registry.requests.filter((r) => r.method === "PATCH");
    assert.equal(patches[0].contentRange, undefined);
    assert.equal(patches[1].contentRange, `1234567-${1_234_567 + MiB - 1}`);
    assert.ok(
      registry.requests.some((r) => r.method === "GET" && r.url.includes("/blobs/uploads/")),
    );
  });

  it("a chunk dropped mid-way resumes mid-chunk, the hash restored from a snapshot", async () => {
    const bytes = testBytes(5 * MiB + 3, 12);
    registry.faults.dropPatchSkip = 2; // the third chunk drops half-way
    registry.faults.dropPatchAfterBytes = MiB / 2 + 3;
    const source = bytesSource(bytes);
    await check(client({ uploadMode: "chunked", chunkSize: MiB }), "drop/chunk", bytes);
    const c = client({ uploadMode: "chunked", chunkSize: MiB });
    registry.faults.dropPatchSkip = 2;
    registry.faults.dropPatchAfterBytes = MiB / 2 + 3;
    registry.faults.dropPatchTimes = 1;
    const stored = await c.uploadBlob("drop/chunk2", source);
    assert.equal(stored.digest, digestOf(bytes));
    // the source was re-opened at the last acknowledged chunk (2 MiB), not at 0, and
    // the upload went on from the byte the session held (2.5 MiB + 3)
    assert.deepEqual(source.opens, [0, 2 * MiB]);
    const ranges = registry.requests.filter((r) => r.method === "PATCH" && r.url.includes(""))
      .map((r) => r.contentRange);
    assert.ok(ranges.includes(`${2.5 * MiB + 3}-${3.5 * MiB + 2}`), String(ranges));
  });

  for (const mode of ["streaming", "chunked"] as const) {
    it(`a ${mode} upload the registry stops reading times out and resumes`, {
      timeout: 20_000,
    }, async () => {
      const bytes = testBytes(3 * MiB, 17);
      registry.faults.stallPatchAfterBytes = 1_500_000;
      // The stalled PATCH is never answered: the upload completes only if the stall
      // timeout ended it (a busy machine can only make that later, never wrong).
      const c = client({
        uploadMode: mode,
        chunkSize: 2 * MiB,
        stallTimeoutMs: 1000,
        connectTimeoutMs: 2000,
      });
      await check(c, `stall/${mode}`, bytes);
      assert.equal(registry.faults.stallPatchAfterBytes, undefined, "a PATCH was stalled");
      const patches = registry.requests.filter((r) => r.method === "PATCH");
      assert.ok(patches.length >= 2, `the upload went on after the stall: ${patches.length}`);
    });
  }

  it("a session that cannot say where it stands is replaced by a new one", async () => {
    const bytes = testBytes(2 * MiB, 13);
    registry.faults.dropPatchAfterBytes = 700_000;
    registry.faults.noUploadStatus = true;
    await check(client({ uploadMode: "streaming" }), "drop/nostatus", bytes);
    assert.equal(registry.requests.filter((r) => r.method === "POST").length, 2);
  });

  it("a session the registry cancels after a drop (CNCF distribution) starts over", async () => {
    const bytes = testBytes(2 * MiB, 14);
    registry.faults.dropPatchAfterBytes = 900_000;
    registry.faults.strictState = true;
    await check(client({ uploadMode: "chunked", chunkSize: MiB }), "drop/strict", bytes);
    assert.equal(registry.requests.filter((r) => r.method === "POST").length, 2);
  });

  it("a commit unanswered while the blob is stored by another upload cancels the session", async () => {
    const bytes = testBytes(100_000, 12);
    await check(client(), "lost-commit/a", bytes); // the same bytes, stored by another upload
    // (A monolithic PUT carries the bytes: it is simply sent again.)
    for (const uploadMode of ["streaming", "chunked"] as const) {
      registry.faults.stallCommitTimes = 1;
      // check: the blob is there, and no session is left open
      await check(client({ uploadMode, commitTimeoutMs: 200 }), "lost-commit/a", bytes);
      assert.equal(
        registry.faults.stallCommitTimes,
        0,
        `${uploadMode}: the commit was not answered`,
      );
    }
  });

  it("the library's own chunks stay intact for a fetch given in the options", async () => {
    const bytes = testBytes(3 * MiB + 7, 13);
    // Like a recording proxy: keeps the chunks of the body, then sends them together.
    let patchesSent = 0;
    const buffering: typeof fetch = async (input, init) => {
      let body = init?.body;
      if (init?.method === "PATCH") patchesSent++;
      if (body instanceof ReadableStream) {
        const chunks: Uint8Array[] = [];
        for await (const chunk of body) chunks.push(chunk);
        body = new Uint8Array(chunks.flatMap((c) => [...c]));
      }
      return await fetch(input, { ...init, body });
    };
    const source = {
      open(offset: number) {
        let at = offset;
        return new ReadableStream<Uint8Array>({
          pull(controller) {
            if (at >= bytes.byteLength) return controller.close();
            const piece = bytes.slice(at, at + 256 * 1024); // as compression makes them
            markDisposable(piece);
            at += piece.byteLength;
            controller.enqueue(piece);
          },
        });
      },
    };
    const c = client({ uploadMode: "streaming", fetch: buffering });
    const stored = await c.uploadBlob("custom-fetch/a", source);
    assert.deepEqual(stored, { digest: digestOf(bytes), size: bytes.byteLength });
    assert.equal(digestOf(registry.blobs.get(stored.digest)!), stored.digest);
    const patches = registry.requests.filter((r) => r.method === "PATCH");
    assert.deepEqual(patches.map((r) => r.bodyBytes), [bytes.byteLength], "sent whole, at once");
    assert.equal(patchesSent, 1, "no attempt failed");
  });

  it("drops on every attempt fail with a clear error after the retry bound", async () => {
    const bytes = testBytes(2 * MiB, 15);
    registry.faults.dropPatchAfterBytes = 100_000;
    registry.faults.dropPatchTimes = 1000;
    registry.faults.noUploadStatus = true;
    const started = registry.requests.length;
    await assert.rejects(
      client({ uploadMode: "streaming" }).uploadBlob("drop/always", bytesSource(bytes)),
      (e) =>
        e instanceof RegistryConnectionError && /drop\/always/.test(e.message) &&
        /connection failed/.test(e.message),
    );
    assert.ok(!registry.blobs.has(digestOf(bytes)));
    assert.equal(registry.openUploads(), 0);
    assert.ok(registry.requests.length - started < 40);
  });

  it("500 and 503 on PATCH and PUT are retried; the data stays intact", async () => {
    const bytes = testBytes(3 * MiB + 1, 16);
    registry.faults.statuses = [
      { method: "PATCH", status: 500 },
      { method: "PATCH", status: 503, retryAfter: "0" },
      { method: "PUT", status: 502 },
      { method: "POST", status: 503 },
    ];
    await check(client({ uploadMode: "chunked", chunkSize: MiB }), "status/chunked", bytes);
    registry.faults.statuses = [{ method: "PATCH", status: 500 }, { method: "PUT", status: 504 }];
    await check(client({ uploadMode: "streaming" }), "status/stream", bytes, true);
  });

  it("429 with Retry-After is honoured", async () => {
    registry.faults.statuses = [{ method: "POST", status: 429, retryAfter: "1" }];
    const started = performance.now();
    await check(client(), "status/429", testBytes(1000, 17));
    assert.ok(performance.now() - started >= 900);
  });

  it("a registry demanding a chunk minimum gets chunks of at least that", async () => {
    const bytes = testBytes(7 * MiB + 3, 18);
    registry.faults.chunkMinLength = 2 * MiB;
    const c = client({ uploadMode: "chunked", chunkSize: 512 * KiB });
    await check(c, "chunk/min", bytes);
    const sizes = registry.requests.filter((r) => r.method === "PATCH").map((r) => r.bodyBytes);
    assert.deepEqual(sizes, [2 * MiB, 2 * MiB, 2 * MiB, MiB + 3]);
  });

  it("a registry capping PATCH at 4 MiB (GHCR) gets smaller chunks from then on", async () => {
    const bytes = testBytes(13 * MiB, 19);
    registry.faults.maxPatchBytes = 4 * MiB;
    const c = client({ uploadMode: "chunked", chunkSize: 6 * MiB });
    await check(c, "chunk/cap", bytes);
    assert.equal(c.uploadPolicy.maxChunkSize, 4 * MiB);
    const sent = registry.requests.filter((r) => r.method === "PATCH" && r.status === 202);
    assert.ok(sent.length >= 3 && sent.every((r) => r.bodyBytes <= 4 * MiB));
    registry.requests.length = 0;
    await check(c, "chunk/cap2", testBytes(9 * MiB, 20));
    assert.ok(
      registry.requests.filter((r) => r.method === "PATCH").every((r) => r.bodyBytes <= 4 * MiB),
    );
  });

  it("a registry silently refusing chunks under 5 MiB (ECR) gets larger chunks", async () => {
    const bytes = testBytes(12 * MiB, 27);
    registry.faults.silentMinChunk = { min: 5 * MiB, total: bytes.byteLength };
    const c = client({ uploadMode: "chunked", chunkSize: MiB });
    await check(c, "chunk/ecr", bytes);
    assert.equal(c.uploadPolicy.minChunkSize, 5 * MiB);
    const sizes = registry.requests.filter((r) => r.method === "PATCH" && r.status === 202)
      .map((r) => r.bodyBytes);
    assert.deepEqual(sizes, [5 * MiB, 5 * MiB, 2 * MiB]);
  });

  it("a registry refusing PATCH gets monolithic uploads (auto), remembered", async () => {
    registry.faults.refusePatch = true;
    const c = client();
    await check(c, "mono/a", testBytes(3 * MiB, 21));
    assert.equal(c.uploadPolicy.learnedMode, "monolithic");
    registry.requests.length = 0;
    await check(c, "mono/b", testBytes(2 * MiB, 22)); // not small: no one-request upload
    assert.deepEqual(registry.requests.map((r) => r.method), ["POST", "PUT"]);
    // an explicit mode the registry refuses is an error, not a silent change
    await assert.rejects(
      client({ uploadMode: "chunked" }).uploadBlob("mono/c", bytesSource(testBytes(10))),
      UnsupportedError,
    );
    assert.equal(registry.openUploads(), 0);
  });

  it("a registry refusing a streamed PATCH gets chunks (auto)", async () => {
    registry.faults.refuseStreamingPatch = true;
    const c = client({ chunkSize: MiB });
    await check(c, "stream/refused", testBytes(2 * MiB + 9, 23));
    assert.equal(c.uploadPolicy.learnedMode, "chunked");
  });

  it("201 answers to PATCH (ECR) are taken as accepted", async () => {
    registry.faults.patch201 = true;
    await check(
      client({ uploadMode: "chunked", chunkSize: MiB }),
      "p201/a",
      testBytes(2 * MiB + 1, 24),
    );
    await check(client({ uploadMode: "streaming" }), "p201/b", testBytes(MiB, 25));
  });

  it("an abort cancels the upload session", async () => {
    const controller = new AbortController();
    const bytes = testBytes(4 * MiB, 26);
    const source = bytesSource(bytes);
    const open = source.open;
    source.open = (offset) => {
      const inner = open(offset).getReader();
      let sent = 0;
      return new ReadableStream<Uint8Array>({
        async pull(c) {
          if (sent > MiB) controller.abort();
          const { done, value } = await inner.read();
          if (done) c.close();
          else {
            sent += value.byteLength;
            c.enqueue(value);
          }
        },
      });
    };
    const cancelled = registry.cancelledUploads;
    await assert.rejects(
      client({ uploadMode: "chunked", chunkSize: 256 * KiB }).uploadBlob("abort/app", source, {
        signal: controller.signal,
      }),
      AbortedError,
    );
    assert.equal(registry.cancelledUploads, cancelled + 1);
    assert.equal(registry.openUploads(), 0);
  });
});

describe("faults during downloads and other requests", () => {
  let registry: TestRegistry;
  let bytes: Uint8Array;
  let digest: string;
  const client = (options: Partial<RegistryClientOptions> = {}) =>
    new RegistryClient({ url: registry.url, ...FAST, ...options });
  before(async () => {
    registry = await startTestRegistry({ auth: "basic", users: { u: "download-pw" } });
    bytes = testBytes(3 * MiB + 7, 30);
    digest = registry.putBlob("dl/app", bytes);
  });
  after(async () => {
    await registry.close();
  });
  beforeEach(() => {
    for (const key of Object.keys(registry.faults)) {
      delete (registry.faults as Record<string, unknown>)[key];
    }
    registry.requests.length = 0;
  });
  const creds = { credentials: { username: "u", password: "download-pw" } };

  it("a dropped download resumes with Range from the last byte received", async () => {
    registry.faults.dropGetAfterBytes = 1_000_001;
    registry.faults.dropGetTimes = 2;
    const progress: number[] = [];
    const back = await readAll(
      await client(creds).getBlob("dl/app", { digest, size: bytes.byteLength }, {
        onProgress: (n) => progress.push(n),
      }),
    );
    assert.equal(digestOf(back), digest);
    const gets = registry.requests.filter((r) => r.method === "GET" && r.status !== 401);
    assert.equal(gets.length, 3);
    assert.equal(progress.at(-1), bytes.byteLength);
  });

  it("a server ignoring Range sends it all again; the bytes received are skipped", async () => {
    registry.faults.dropGetAfterBytes = 2_000_000;
    registry.faults.ignoreRange = true;
    const back = await readAll(await client(creds).getBlob("dl/app", { digest }));
    assert.equal(digestOf(back), digest);
  });

  // The guard turns a hang into a failure: once in about a dozen runs of this file
  // beside busy processes, Deno's download never resumed after its stall.
  it("a stalled download times out and resumes", { timeout: 60_000 }, async () => {
    registry.faults.stallGetAfterBytes = 500_000;
    const back = await readAll(
      await client({ ...creds, stallTimeoutMs: 300 }).getBlob("dl/app", {
        digest,
        size: bytes.byteLength,
      }),
    );
    assert.equal(digestOf(back), digest);
  });

  it("a download dropped every time fails after the retry bound", async () => {
    registry.faults.dropGetAfterBytes = 0; // no progress at all: the bound applies
    registry.faults.dropGetTimes = 1000;
    const stream = await client(creds).getBlob("dl/app", { digest, size: bytes.byteLength });
    await assert.rejects(
      readAll(stream),
      (e) =>
        e instanceof RegistryConnectionError && e.message.includes(digest) &&
        /gave up/.test(e.message),
    );
  });

  it("blob GETs redirected to another origin get no Authorization there", async () => {
    registry.faults.redirectBlobGets = true;
    registry.faults.dropGetAfterBytes = 1_500_000;
    const back = await readAll(
      await client(creds).getBlob("dl/app", { digest, size: bytes.byteLength }),
    );
    assert.equal(digestOf(back), digest);
    const second = registry.requests.filter((r) => r.origin === "second");
    const main = registry.requests.filter((r) =>
      r.origin === "main" && r.method === "GET" && r.status !== 401
    );
    assert.equal(second.length, 2);
    assert.ok(second.every((r) => r.authorization === undefined));
    assert.ok(main.length >= 2 && main.every((r) => r.authorization?.startsWith("Basic ")));
  });

  it("a redirect loop fails at once with a clear error", async () => {
    registry.faults.redirectLoop = true;
    await assert.rejects(
      client(creds).getBlob("dl/app", { digest }),
      (e) => e instanceof RegistryError && /more than 10 redirects/.test(e.message),
    );
    assert.ok(registry.requests.length <= 13, String(registry.requests.length));
  });

  it("5xx and 429 answers are retried with backoff up to the bound", async () => {
    const c = client(creds);
    registry.faults.statuses = [
      { path: /manifests/, status: 503, times: 2 },
      { path: /manifests/, status: 429, retryAfter: "0" },
    ];
    registry.putTag("dl/app", "1");
    assert.ok(await c.getManifest("dl/app", "1"));
    registry.faults.statuses = [{ path: /manifests/, status: 500, times: 100 }];
    const before = registry.requests.length;
    await assert.rejects(
      c.getManifest("dl/app", "1"),
      (e) => e instanceof RegistryError && e.status === 500 && e.message.includes("dl/app:1"),
    );
    assert.equal(registry.requests.length - before, FAST.maxRetries + 1);
    registry.faults.statuses = [{ path: /manifests/, status: 429, retryAfter: "3600" }];
    await assert.rejects(
      c.getManifest("dl/app", "1"),
      (e) => e instanceof TooManyRequestsError && e.retryAfterSeconds === 3600,
    );
  });
});

describe("token expiry mid-upload", () => {
  let registry: TestRegistry;
  before(async () => {
    registry = await startTestRegistry({
      auth: "bearer",
      users: { u: "token-pw-123" },
      tokenExpiresIn: 3600,
    });
  });
  after(async () => {
    await registry.close();
  });

  for (const mode of ["streaming", "chunked"] as const) {
    it(`${mode}: a token revoked mid-upload is replaced and the upload completes`, async () => {
      const c = new RegistryClient({
        url: registry.url,
        credentials: { username: "u", password: "token-pw-123" },
        uploadMode: mode,
        chunkSize: MiB,
        ...FAST,
      });
      const bytes = testBytes(4 * MiB + 11, 40);
      registry.faults.expireTokensAfterPatchBytes = 2 * MiB;
      const before = registry.tokensIssued;
      const stored = await c.uploadBlob(`expire/${mode}`, bytesSource(bytes));
      assert.equal(stored.digest, digestOf(bytes));
      assert.equal(digestOf(registry.blobs.get(stored.digest)!), stored.digest);
      assert.ok(registry.tokensIssued > before + 1);
    });
  }

  it("a token that expires at the registry is refreshed after a 401", async () => {
    const short = await startTestRegistry({
      auth: "bearer",
      users: { u: "token-pw-123" },
      tokenLifetimeMs: 200,
      tokenExpiresIn: 3600,
    });
    try {
      const c = new RegistryClient({
        url: short.url,
        credentials: { username: "u", password: "token-pw-123" },
        uploadMode: "chunked",
        chunkSize: 256 * KiB,
        ...FAST,
      });
      const bytes = testBytes(MiB, 41);
      const source = bytesSource(bytes, { piece: 64 * KiB });
      const open = source.open;
      source.open = (offset) => {
        const inner = open(offset).getReader();
        return new ReadableStream<Uint8Array>({
          async pull(ctl) {
            await new Promise((r) => setTimeout(r, 30)); // slower than the token's life
            const { done, value } = await inner.read();
            if (done) ctl.close();
            else ctl.enqueue(value);
          },
        });
      };
      const stored = await c.uploadBlob("expire/short", source);
      assert.equal(stored.digest, digestOf(bytes));
      assert.ok(short.tokensIssued >= 3, String(short.tokensIssued));
    } finally {
      await short.close();
    }
  });
});

describe("credentials never appear in messages or logs", () => {
  it("checks every error message, stack and log line for passwords and tokens", async () => {
    const password = "Pa55-w0rd-that-must-not-leak";
    const registry = await startTestRegistry({
      auth: "bearer",
      users: { alice: password, reader: password },
      readOnlyUsers: ["reader"],
      identityTokens: { "idtoken-that-must-not-leak": "alice" },
    });
    const basic = await startTestRegistry({ auth: "basic", users: { alice: password } });
    const lines: string[] = [];
    const errors: unknown[] = [];
    const attempt = async (p: Promise<unknown>) => {
      try {
        await p;
      } catch (e) {
        errors.push(e);
      }
    };
    try {
      const make = (url: string, credentials: RegistryClientOptions["credentials"]) =>
        new RegistryClient({ url, credentials, log: (l) => lines.push(l), ...FAST });
      const good = make(registry.url, { username: "alice", password });
      await good.uploadBlob("leak/app", bytesSource(testBytes(100_000, 50)));
      await attempt(good.getManifest("leak/app", "missing"));
      registry.faults.statuses = [{ status: 500, times: 100, path: /manifests/ }];
      await attempt(good.getManifest("leak/app", "1"));
      registry.faults.statuses = [];
      await attempt(make(registry.url, { username: "alice", password: password + "x" }).ping());
      await attempt(
        make(registry.url, { username: "reader", password }).uploadBlob(
          "leak/app",
          bytesSource(testBytes(10)),
        ),
      );
      await attempt(
        make(registry.url, { identityToken: "idtoken-that-must-not-leak" }).listTags("leak/none"),
      );
      await attempt(make(registry.url, { identityToken: "idtoken-that-must-not-leak-2" }).ping());
      await attempt(make(basic.url, { username: "alice", password: password + "y" }).ping());
      const basicGood = make(basic.url, { username: "alice", password });
      basic.faults.dropGetAfterBytes = 0;
      basic.faults.dropGetTimes = 100;
      const digest = basic.putBlob("leak/app", testBytes(100_000, 51));
      await attempt(readAll(await basicGood.getBlob("leak/app", { digest })));
      // a plain-http registry that is not loopback (a fake fetch: nothing leaves the machine)
      await attempt(
        new RegistryClient({
          url: "http://registry.invalid",
          credentials: { username: "alice", password },
          log: (l) => lines.push(l),
          fetch: (() =>
            Promise.resolve(
              new Response("{}", {
                status: 401,
                headers: { "www-authenticate": 'Basic realm="r"' },
              }),
            )) as typeof fetch,
          ...FAST,
        }).ping(),
      );
    } finally {
      await registry.close();
      await basic.close();
    }
    assert.ok(errors.length >= 8, String(errors.length));
    assert.ok(lines.length > 10);
    const secrets = [
      password,
      password + "x",
      password + "y",
      "idtoken-that-must-not-leak",
      btoa(`alice:${password}`),
      ...registry.issuedTokens,
    ];
    const texts = [
      ...lines,
      ...errors.flatMap((e) => {
        const out: string[] = [];
        for (let x: unknown = e; x instanceof Error; x = x.cause) {
          out.push(x.message, x.stack ?? "");
        }
        return out;
      }),
    ];
    for (const text of texts) {
      for (const secret of secrets) {
        assert.ok(!text.includes(secret), `a secret leaked into: ${text.slice(0, 200)}`);
      }
    }
  });
});
