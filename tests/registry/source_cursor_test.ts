// Unit tests of the registry client's parsers, rules and credential lookup.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { parseChallenges, pickChallenge } from "../../lib/registry/challenge.ts";
import { parseLinkNext } from "../../lib/registry/listings.ts";
import { rangeEnd } from "../../lib/registry/upload_session.ts";
import {
  AuthenticationError,
  AuthorizationError,
  BlobNotFoundError,
  errorFromStatus,
  ManifestNotFoundError,
  parseRetryAfter,
  RegistryError,
  RepositoryNotFoundError,
  TooManyRequestsError,
  UnsupportedError,
} from "../../lib/registry/errors.ts";
import { NotFoundError } from "../../lib/errors.ts";
import {
  isLoopbackHost,
  isRepositoryName,
  registryBaseUrl,
  withQuery,
} from "../../lib/registry/endpoint.ts";
import { basicValue, mergeScopes, parseScopes } from "../../lib/registry/auth.ts";
import { backoffDelay } from "../../lib/registry/retry.ts";
import { SecretSet } from "../../lib/registry/redact.ts";
import { configHostKey, resolveCredentials } from "../../lib/registry/credentials.ts";
import { uploadPolicyFor } from "../../lib/registry/upload.ts";
import { SourceCursor } from "../../lib/registry/source_cursor.ts";
import { markDisposable } from "../../lib/gc.ts";
import { vouch } from "../../lib/oci/digest.ts";
import { streamOf } from "../../lib/streams.ts";
import { bytesSource, digestOf, testBytes } from "../../testing/fake_registry.ts";

describe("WWW-Authenticate parser", () => {
  it("reads a Bearer challenge with quoted parameters", () => {
    const [c] = parseChallenges(
      'Bearer realm="https://auth.example.com/token",service="registry.example.com",' +
        'scope="repository:a/b:pull,push",error="insufficient_scope"',
    );
    assert.equal(c.scheme, "bearer");
    assert.deepEqual({ ...c.params }, {
      realm: "https://auth.example.com/token",
      service: "registry.example.com",
      scope: "repository:a/b:pull,push",
      error: "insufficient_scope",
    });
  });

  it("splits several challenges and prefers Bearer", () => {
    const all = parseChallenges('Basic realm="x", Bearer realm="https://a/t", service=reg');
    assert.deepEqual(all.map((c) => c.scheme), ["basic", "bearer"]);
    assert.equal(all[1].params.service, "reg");
    assert.equal(pickChallenge(all)?.scheme, "bearer");
  });

  it("handles escapes, spaces, token68 and garbage without throwing", () => {
    assert.equal(parseChallenges('Basic realm = "a \\"q\\" b"')[0].params.realm, 'a "q" b');
    assert.equal(parseChallenges("Negotiate abc==")[0].params.token68, "abc==");
    for (
      const s of ["", ",,,", '"', "Bearer realm=", "=====", "Bearer ,realm", "x".repeat(70000)]
    ) {
      assert.ok(Array.isArray(parseChallenges(s)));
    }
  });
});

describe("Link header", () => {
  it("finds rel=next among several links", () => {
    assert.equal(parseLinkNext('</v2/_catalog?last=b&n=2>; rel="next"'), "/v2/_catalog?last=b&n=2");
    assert.equal(
      parseLinkNext('<https://x/a>; rel="prev", <https://x/b>; rel=next'),
      "https://x/b",
    );
    assert.equal(parseLinkNext('<https://x/a>; rel="prev"'), undefined);
    assert.equal(parseLinkNext(null), undefined);
    assert.equal(parseLinkNext("<<<>>>;;;"), undefined);
  });
});

describe("small protocol rules", () => {
  it("reads Range headers", () => {
    assert.equal(rangeEnd("0-1023"), 1024);
    assert.equal(rangeEnd("bytes=0-9"), 10);
    assert.equal(rangeEnd("0-0"), 0);
    assert.equal(rangeEnd(null), undefined);
    assert.equal(rangeEnd("junk"), undefined);
  });

  it("reads Retry-After as seconds or a date", () => {
    assert.equal(parseRetryAfter("3"), 3000);
    const now = Date.parse("2024-01-01T00:00:00Z");
    assert.equal(parseRetryAfter("Mon, 01 Jan 2024 00:00:05 GMT", now), 5000);
    assert.equal(parseRetryAfter("soon"), undefined);
  });

  it("backs off exponentially with jitter, honouring Retry-After up to a bound", () => {
    const policy = { maxRetries: 5, baseDelayMs: 100, maxDelayMs: 1000, maxRetryAfterMs: 5000 };
    for (let i = 0; i < 20; i++) {
      const d = backoffDelay(policy, 3)!;
      assert.ok(d >= 200 && d <= 400, String(d));
      assert.ok(backoffDelay(policy, 30)! <= 1000);
    }
    assert.equal(backoffDelay(policy, 1, "2"), 2000);
    assert.equal(backoffDelay(policy, 1, "60"), undefined);
  });

  it("normalises registry URLs: https by default, http for loopback", () => {
    assert.equal(registryBaseUrl("registry.example.com").href, "https://registry.example.com/");
    assert.equal(registryBaseUrl("127.0.0.1:5000").href, "http://127.0.0.1:5000/");
    assert.equal(registryBaseUrl("localhost:5000").href, "http://localhost:5000/");
    assert.equal(registryBaseUrl("r.example.com:5000", true).href, "http://r.example.com:5000/");
    assert.equal(registryBaseUrl("https://r.example.com/v2/").href, "https://r.example.com/");
    assert.throws(() => registryBaseUrl("https://user:pw@r.example.com"), /credentials in the URL/);
    assert.throws(() => registryBaseUrl("ftp://r.example.com"), /https or http/);
    assert.throws(() => registryBaseUrl("https://r.example.com/some/path"), /no path/);
  });

  it("knows loopback hosts and repository names", () => {
    assert.ok(
      isLoopbackHost("127.0.0.1") && isLoopbackHost("127.5.5.5") && isLoopbackHost("[::1]"),
    );
    assert.ok(!isLoopbackHost("10.0.0.1") && !isLoopbackHost("example.com"));
    assert.ok(isRepositoryName("org/owner/my-app_1.2"));
    for (const bad of ["", "UPPER", "a//b", "../x", "a/", "-a", "a b"]) {
      assert.ok(!isRepositoryName(bad), bad);
    }
  });

  it("appends the digest to a Location without touching its query", () => {
    const u = withQuery(new URL("https://r/u/1?_state=a%2Bb%3D%3D&x=1"), "digest", "sha256:ab");
    assert.equal(u.search, "?_state=a%2Bb%3D%3D&x=1&digest=sha256%3Aab");
    assert.equal(withQuery(new URL("https://r/u/1"), "digest", "d").search, "?digest=d");
  });

  it("merges scopes and encodes Basic credentials as UTF-8", () => {
    assert.deepEqual(mergeScopes(["repository:a:push", "repository:a:pull", "repository:b:pull"]), [
      "repository:a:pull,push",
      "repository:b:pull",
    ]);
    assert.deepEqual([...parseScopes(["registry:catalog:*"]).get("registry:catalog")!], ["*"]);
    assert.equal(basicValue("user", "pass"), "Basic dXNlcjpwYXNz");
    assert.equal(basicValue("ü", "p"), "Basic w7w6cA==");
  });

  it("applies GHCR and ECR chunk rules by host", () => {
    assert.equal(uploadPolicyFor("ghcr.io", {}).maxChunkSize, 4 * 1024 * 1024);
    assert.equal(
      uploadPolicyFor("123456789012.dkr.ecr.eu-west-1.amazonaws.com", {}).minChunkSize,
      5 * 1024 * 1024,
    );
    const plain = uploadPolicyFor("registry.example.com", { chunkSize: 1024 });
    assert.equal(plain.minChunkSize, undefined);
    assert.equal(plain.maxChunkSize, undefined);
    assert.equal(plain.chunkSize, 1024);
    assert.equal(plain.mode, "auto");
  });
});

describe("typed errors from registry answers", () => {
  it("maps statuses and OCI codes to error types", () => {
    const op = "get manifest r.example.com/app:1";
    assert.ok(errorFromStatus(401, [], op, "manifest") instanceof AuthenticationError);
    assert.ok(errorFromStatus(403, [], op, "manifest") instanceof AuthorizationError);
    const scoped = errorFromStatus(
      401,
      [],
      op,
      "manifest",
      new Headers({ "www-authenticate": 'Bearer realm="x",error="insufficient_scope"' }),
    );
    assert.ok(scoped instanceof AuthorizationError);
    const m = errorFromStatus(404, [{ code: "MANIFEST_UNKNOWN" }], op, "manifest");
    assert.ok(m instanceof ManifestNotFoundError && m instanceof NotFoundError);
    assert.match(m.message, /r\.example\.com\/app:1/);
    assert.ok(errorFromStatus(404, [], op, "blob") instanceof BlobNotFoundError);
    assert.ok(
      errorFromStatus(404, [{ code: "NAME_UNKNOWN" }], op, "manifest") instanceof
        RepositoryNotFoundError,
    );
    const tooMany = errorFromStatus(429, [], op, "manifest", new Headers({ "retry-after": "7" }));
    assert.ok(tooMany instanceof TooManyRequestsError);
    assert.equal((tooMany as TooManyRequestsError).retryAfterSeconds, 7);
    assert.ok(errorFromStatus(405, [], op, "manifest") instanceof UnsupportedError);
    const general = errorFromStatus(500, [{ code: "UNKNOWN", message: "boom" }], op, "manifest");
    assert.ok(general instanceof RegistryError);
    assert.equal((general as RegistryError).status, 500);
    assert.deepEqual((general as RegistryError).errors, [{ code: "UNKNOWN", message: "boom" }]);
    assert.match(general.message, /^get manifest r\.example\.com\/app:1: 500 UNKNOWN: boom$/);
  });
});

describe("secret scrubbing", () => {
  it("replaces secrets and any Authorization value", () => {
    const s = new SecretSet();
    s.add("hunter2-long");
    s.add("ab"); // too short to scrub safely: ignored
    assert.equal(s.redact("pw hunter2-long!"), "pw ***!");
    assert.equal(s.redact("Authorization: Bearer abcdefghijklmnop"), "Authorization: Bearer ***");
    const e = new Error("failed with hunter2-long", { cause: new Error("inner hunter2-long") });
    s.redactError(e);
    assert.ok(!e.message.includes("hunter2") && !(e.cause as Error).message.includes("hunter2"));
  });
});

describe("source cursor", () => {
  /** A source whose every stream yields these very chunks, one by one. */
  const chunksSource = (chunks: Uint8Array[]) => ({
    open: () => {
      const queue = [...chunks];
      return new ReadableStream<Uint8Array>({
        pull: (c) => queue.length ? c.enqueue(queue.shift()!) : c.close(),
      });
    },
  });

  it("re-opens at a checkpoint and restores the hash", async () => {
    const bytes = testBytes(1_000_000, 3);
    const source = bytesSource(bytes, { piece: 70_000 });
    const cursor = new SourceCursor(source, "blob");
    await cursor.seek(0);
    await cursor.fill(300_000);
    cursor.checkpoint();
    await cursor.fill(400_000);
    await cursor.seek(450_000); // back: re-open at the checkpoint, skip to 450000
    assert.deepEqual(source.opens, [0, 300_000]);
    while (await cursor.read() !== null) { /* to the end */ }
    assert.equal(cursor.position, bytes.byteLength);
    assert.equal(cursor.digest(), digestOf(bytes));
    await cursor.seek(10); // before every checkpoint: from 0
    assert.deepEqual(source.opens, [0, 300_000, 0]);
    await cursor.close();
  });

  it("lets go of the library's own chunks once the body's reader asks for the next", async () => {
    const own = [testBytes(300_000, 1), testBytes(300_000, 2), testBytes(200_000, 3)];
    own.forEach((c) => markDisposable(c));
    const foreign = testBytes(100_000, 4); // not marked: a caller's bytes stay untouched
    const expected = new Uint8Array([...own.flatMap((c) => [...c]), ...foreign]);
    const cursor = new SourceCursor(chunksSource([...own, foreign]), "blob");
    await cursor.seek(0);
    const reader = cursor.stream(1 << 30, undefined, true).getReader();
    const received: Uint8Array[] = [];
    const seen: Uint8Array[] = [];
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      seen.push(value);
      received.push(value.slice()); // what a sender holds on to while sending
      // Asking for this chunk let go of the one before (all but the last are the library's).
      if (seen.length > 1) assert.equal(seen.at(-2)!.byteLength, 0);
    }
    assert.deepEqual(seen.map((c) => c.byteLength), [0, 0, 0, 100_000]);
    assert.deepEqual(new Uint8Array(received.flatMap((c) => [...c])), expected);
    assert.equal(cursor.digest(), digestOf(expected));
  });

  it("keeps sent chunks for a taker that may hold on to them, and ends a superseded stream", async () => {
    const own = [testBytes(1000, 1), testBytes(1000, 2), testBytes(1000, 3)];
    own.forEach((c) => markDisposable(c));
    const cursor = new SourceCursor(chunksSource(own), "blob");
    await cursor.seek(0);
    const first = cursor.stream(1 << 30).getReader(); // a fetch given by the caller
    assert.equal((await first.read()).value!.byteLength, 1000);
    assert.equal((await first.read()).value!.byteLength, 1000);
    assert.deepEqual(own.map((c) => c.byteLength), [1000, 1000, 1000], "nothing let go");
    await cursor.seek(1000); // a new attempt, from what the registry holds
    await assert.rejects(first.read(), /this upload attempt is over/);
    assert.equal(cursor.position, 1000, "the old stream took nothing more");
  });

  it("fills chunks of an upload from the library's own buffers, then lets go of them", async () => {
    const pieces = Array.from({ length: 40 }, (_, i) => testBytes(50_000 + (i * 7919) % 60_000, i));
    const expected = new Uint8Array(pieces.flatMap((p) => [...p]));
    const own = pieces.map((p) => p.slice());
    own.forEach((c) => markDisposable(c));
    const cursor = new SourceCursor(chunksSource(own), "blob");
    await cursor.seek(0);
    const filled: Uint8Array[] = [];
    for (;;) {
      const chunk = await cursor.fill(300_000);
      if (chunk.byteLength === 0) break;
      filled.push(chunk);
      await cursor.atEnd();
    }
    assert.deepEqual(new Uint8Array(filled.flatMap((c) => [...c])), expected);
    assert.equal(cursor.digest(), digestOf(expected));
    // Copied whole into a chunk: let go; split between two chunks: left to the collector.
    assert.ok(own.filter((p) => p.byteLength === 0).length > own.length / 2);
  });

  it("takes the digest a source's maker vouched for instead of hashing again", async () => {
    const bytes = testBytes(100_000, 5);
    const claimed = digestOf(testBytes(10, 6)); // what the maker checks (here: nothing)
    const read = async (vouched: boolean) => {
      const cursor = new SourceCursor({
        open: () => vouched ? vouch(streamOf(bytes), claimed) : streamOf(bytes),
        digest: claimed,
      }, "blob");
      await cursor.seek(0);
      while (await cursor.read() !== null) { /* to the end */ }
      return cursor.digest();
    };
    assert.equal(await read(true), claimed, "not hashed again");
    assert.equal(await read(false), digestOf(bytes), "hashed");
  });

  it("fails when the source has more or fewer bytes than announced", async () => {
    const bytes = testBytes(1000);
    const more = new SourceCursor(bytesSource(bytes, { size: 999 }), "blob x");
    await more.seek(0);
    await assert.rejects(async () => {
      while (await more.read() !== null) { /* */ }
    }, /blob x: the source has more than the expected 999 bytes/);
    const fewer = new SourceCursor(bytesSource(bytes, { size: 1001 }), "blob y");
    await fewer.seek(0);
    await assert.rejects(async () => {
      while (await fewer.read() !== null) { /* */ }
    }, /blob y: the source ended after 1000 of 1001 bytes/);
  });
});

describe("credentials", () => {
  const withDir = async (fn: (dir: string) => Promise<void>) => {
    const dir = await mkdtemp(join(tmpdir(), "creds-test-"));
    try {
      await fn(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };

  it("takes explicit options first", async () => {
    const found = await resolveCredentials("r.example.com", {
      credentials: { username: "a", password: "b" },
      env: { APOLO_REGISTRY: "r.example.com", APOLO_USERNAME: "x", APOLO_TOKEN: "y" },
    });
    assert.deepEqual(found, { credentials: { username: "a", password: "b" }, source: "options" });
  });

  it("takes APOLO_USERNAME/APOLO_TOKEN only for the host APOLO_REGISTRY names", async () => {
    await withDir(async (dir) => {
      const env = {
        APOLO_REGISTRY: "https://registry.apolo.example/",
        APOLO_USERNAME: "alice",
        APOLO_TOKEN: "tok",
        DOCKER_CONFIG: dir,
      };
      const found = await resolveCredentials("registry.apolo.example", { env });
      assert.deepEqual(found?.credentials, { username: "alice", password: "tok" });
      assert.equal(await resolveCredentials("ghcr.io", { env }), undefined);
    });
  });

  it("reads Docker's config.json auths: base64 auth and identitytoken", async () => {
    await withDir(async (dir) => {
      await writeFile(
        join(dir, "config.json"),
        JSON.stringify({
          auths: {
            "https://r1.example.com": { auth: btoa("bob:pa:ss") },
            "r2.example.com:5000": { auth: btoa("bob:x"), identitytoken: "idtok" },
            "https://index.docker.io/v1/": { auth: btoa("hubuser:hubpw") },
            "broken.example.com": { auth: "%%%" },
          },
        }),
      );
      const env = { DOCKER_CONFIG: dir };
      const r1 = await resolveCredentials("r1.example.com", { env });
      assert.deepEqual(r1?.credentials, { username: "bob", password: "pa:ss" });
      assert.equal(r1?.source, join(dir, "config.json"));
      const r2 = await resolveCredentials("r2.example.com:5000", { env });
      assert.deepEqual(r2?.credentials, { identityToken: "idtok", username: "bob" });
      const hub = await resolveCredentials("registry-1.docker.io", { env });
      assert.deepEqual(hub?.credentials, { username: "hubuser", password: "hubpw" });
      assert.equal(await resolveCredentials("other.example.com", { env }), undefined);
      await assert.rejects(
        resolveCredentials("broken.example.com", { env }),
        /the "auth" of broken\.example\.com is not valid base64/,
      );
    });
  });

  it("runs credential helpers only when allowed", async () => {
    await withDir(async (dir) => {
      const helper = join(dir, "docker-credential-fake");
      await writeFile(
        helper,
        [
          "#!/bin/sh",
          "read server",
          'case "$server" in',
          '  r.example.com) echo \'{"ServerURL":"r.example.com","Username":"carol","Secret":"helper-pw"}\' ;;',
          '  t.example.com) echo \'{"ServerURL":"t.example.com","Username":"<token>","Secret":"helper-idtok"}\' ;;',
          '  *) echo "credentials not found in native keychain"; exit 1 ;;',
          "esac",
        ].join("\n") + "\n",
      );
      await chmod(helper, 0o755);
      await writeFile(
        join(dir, "config.json"),
        JSON.stringify({ credsStore: "fake", credHelpers: { "t.example.com": "fake" } }),
      );
      const env = { DOCKER_CONFIG: dir, PATH: `${dir}:${process.env.PATH ?? ""}` };
      assert.equal(await resolveCredentials("r.example.com", { env }), undefined);
      const found = await resolveCredentials("r.example.com", {
        env,
        allowCredentialHelpers: true,
      });
      assert.deepEqual(found, {
        credentials: { username: "carol", password: "helper-pw" },
        source: "docker-credential-fake",
      });
      const token = await resolveCredentials("t.example.com", {
        env,
        allowCredentialHelpers: true,
      });
      assert.deepEqual(token?.credentials, { identityToken: "helper-idtok" });
      assert.equal(
        await resolveCredentials("none.example.com", { env, allowCredentialHelpers: true }),
        undefined,
      );
    });
  });

  it("folds Docker Hub's names into one config key", () => {
    assert.equal(configHostKey("docker.io"), "index.docker.io");
    assert.equal(configHostKey("https://index.docker.io/v1/"), "index.docker.io");
    assert.equal(configHostKey("HTTP://R.example.com:5000/v2/"), "r.example.com:5000");
  });
});

describe("hostile header parameters", () => {
  it("keeps challenge parameters named like Object members", () => {
    const [c] = parseChallenges('Bearer realm="https://a/token",constructor="x",service="r"');
    assert.equal(c.params.constructor, "x");
    assert.equal(c.params.service, "r");
  });

  it("does not read rel out of another parameter's quotes", () => {
    assert.equal(
      parseLinkNext('</v2/_catalog?last=a>; title="; rel=next "; rel="prev"'),
      undefined,
    );
    assert.equal(parseLinkNext('</a>; foo; rel="prev next"'), "/a");
  });
});
