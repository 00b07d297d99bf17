// The WWW-Authenticate challenge parser, and header parameters crafted to confuse it.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { parseChallenges, pickChallenge } from "../../lib/registry/challenge.ts";
import { parseLinkNext } from "../../lib/registry/listings.ts";

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
