// Registry answers (status, OCI error code) mapped to typed errors.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  AuthenticationError,
  AuthorizationError,
  BlobNotFoundError,
  errorFromStatus,
  ManifestNotFoundError,
  RegistryError,
  RepositoryNotFoundError,
  TooManyRequestsError,
  UnsupportedError,
} from "../../lib/registry/errors.ts";
import { NotFoundError } from "../../lib/errors.ts";

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
