// Credential lookup: Docker config files, credential helpers, what is allowed to run.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { configHostKey, resolveCredentials } from "../../lib/registry/credentials.ts";

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
