// The `Link` header of paginated listings.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { parseLinkNext } from "../../lib/registry/listings.ts";

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
