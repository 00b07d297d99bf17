import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { SecretSet } from "../../lib/registry/redact.ts";

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
