// Small protocol rules of the registry client: ranges, Retry-After, back-off, URLs, scopes, chunk rules.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { rangeEnd } from "../../lib/registry/upload_session.ts";
import { parseRetryAfter } from "../../lib/registry/errors.ts";
import {
  isLoopbackHost,
  isRepositoryName,
  registryBaseUrl,
  withQuery,
} from "../../lib/registry/endpoint.ts";
import { basicValue, mergeScopes, parseScopes } from "../../lib/registry/auth.ts";
import { backoffDelay } from "../../lib/registry/retry.ts";
import { uploadPolicyFor } from "../../lib/registry/upload_policy.ts";

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
