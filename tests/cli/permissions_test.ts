/**
 * The command line with exactly the permissions README tells people to grant (not -A):
 * push = net to the registry + read of the input + env; pull = net + read/write of the
 * folder the output goes in + env; --help/--version = nothing. On Bun (no permissions)
 * the same command lines run. A run missing a permission stops before any work with the
 * flag to add, and leaves nothing behind.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { type RunningRegistry, startRegistry } from "../../testing/docker_registry.ts";
import { isBun, runCli } from "../../testing/cli.ts";
import { listDir, makeTempDir, removeTempDir } from "../../testing/fs.ts";
import {
  acquireTestImages,
  releaseTestImages,
  run,
  skopeoManifest,
  type TestImages,
} from "../../testing/tools.ts";
import { VERSION } from "../../lib/version.ts";

describe("least-privilege matrix (docker-registry)", () => {
  let registry: RunningRegistry;
  let images: TestImages;
  let dir: string;
  let env: Record<string, string>;
  let net: string;

  /** Runs the CLI granted only `permissions` (Deno), checks the exit code. */
  const cli = async (permissions: string[], args: string[], code = 0) => {
    const result = await runCli(args, env, undefined, permissions);
    assert.equal(
      result.code,
      code,
      `apolo-images ${args.join(" ")} with ${permissions.join(" ") || "nothing"}: ${result.stderr}`,
    );
    return result;
  };

  before(async () => {
    [registry, images, dir] = await Promise.all([
      startRegistry(),
      acquireTestImages(),
      makeTempDir("apolo-perms"),
    ]);
    net = `--allow-net=${registry.host}`;
    env = {
      APOLO_REGISTRY: registry.url,
      APOLO_OWNER: "alice",
      // Neither granted: the cache is skipped, the store lives where the test grants it.
      XDG_CACHE_HOME: join(dir, "cache"),
      XDG_DATA_HOME: join(dir, "data"),
      HOME: join(dir, "home"),
    };
    await cli([net, `--allow-read=${images.dockerArchive}`, "--allow-env"], [
      "push",
      "-q",
      "--input",
      images.dockerArchive,
      images.name,
      "image:app:v1",
    ]);
  });

  after(async () => {
    await registry?.stop();
    await releaseTestImages();
    if (dir) await removeTempDir(dir);
  });

  it("--help, every command's --help and --version need no permission", async () => {
    assert.match((await cli([], ["--help"])).stdout, /^Usage: apolo-images/);
    for (const command of ["push", "pull", "digest", "rm", "ls", "tags", "size"]) {
      assert.match((await cli([], [command, "--help"])).stdout, /^Usage: apolo-images /);
    }
    assert.equal((await cli([], ["--version"])).stdout.trim(), `apolo-images ${VERSION}`);
  });

  it("push: net + read of the input (archive or layout) + env", async () => {
    const pushed = await cli([net, `--allow-read=${images.ociDir}`, "--allow-env"], [
      "push",
      "-q",
      "--input",
      images.ociDir,
      images.ociDirRef,
      "image:app:from-layout",
    ]);
    assert.equal(pushed.stdout.trim(), "image://default/alice/app:from-layout");
    const digest = await cli([net, "--allow-env"], ["digest", "image:app:from-layout"]);
    assert.match(digest.stdout.trim(), /^sha256:[0-9a-f]{64}$/);
  });

  it("digest, tags, size, ls: net + env", async () => {
    const granted = [net, "--allow-env"];
    assert.match((await cli(granted, ["digest", "image:app:v1"])).stdout, /^sha256:/);
    assert.match((await cli(granted, ["tags", "image:app"])).stdout, /^image:app:v1$/m);
    assert.match((await cli(granted, ["size", "image:app:v1"])).stdout, /\d/);
    assert.match((await cli(granted, ["ls"])).stdout, /^image:app$/m);
  });

  it("pull: net + read/write of the output's folder + env, for every kind of output", async () => {
    const out = join(dir, "out");
    await mkdir(out);
    const folder = [net, `--allow-read=${out}`, `--allow-write=${out}`, "--allow-env"];
    await cli(folder, ["pull", "-q", "image:app:v1", "--output", join(out, "app.tar")]);
    await cli(folder, [
      "pull",
      "-q",
      "--format",
      "oci",
      "image:app:v1",
      "--output",
      join(out, "app.oci.tar"),
    ]);
    await cli(folder, ["pull", "-q", "image:app:v1", "--output", join(out, "layout") + "/"]);
    // An existing layout: its own directory is enough.
    const layout = join(out, "layout");
    await cli(
      [net, `--allow-read=${layout}`, `--allow-write=${layout}`, "--allow-env"],
      ["pull", "-q", "image:app:from-layout", "other:second", "--output", layout],
    );
    assert.deepEqual((await readdir(out)).sort(), ["app.oci.tar", "app.tar", "layout"]);
    const manifests = await Promise.all([
      skopeoManifest(`docker-archive:${join(out, "app.tar")}`),
      skopeoManifest(`oci-archive:${join(out, "app.oci.tar")}`),
      skopeoManifest(`oci:${layout}:second`), // skopeo finds only OCI media types in a layout
    ]);
    for (const m of manifests) assert.ok(m.length > 0);
    const index = JSON.parse(await readFile(join(layout, "index.json"), "utf8"));
    assert.deepEqual(
      index.manifests.map((m: { annotations: Record<string, string> }) =>
        m.annotations["org.opencontainers.image.ref.name"]
      ),
      ["v1", "second"],
    );
  });

  it("the default store: pull with its folder, push back with read of the store", async () => {
    const data = join(dir, "data", "apolo-images");
    await cli(
      [net, `--allow-read=${data}`, `--allow-write=${data}`, "--allow-env"],
      ["pull", "-q", "image:app:v1"],
    );
    const store = join(data, "store");
    assert.deepEqual((await readdir(store)).sort(), ["blobs", "index.json", "oci-layout"]);
    await cli([net, `--allow-read=${store}`, "--allow-env"], [
      "push",
      "-q",
      "app:v1",
      "image:app:from-store",
    ]);
    const from = await run("skopeo", [
      "inspect",
      "--raw",
      "--tls-verify=false",
      `docker://${registry.host}/alice/app:from-store`,
    ]);
    assert.ok(from.stdout.includes("layers"));
  });

  it("a writer allowed to write but not to read still removes its temporary file", {
    skip: isBun ? "Bun has no permissions" : false,
  }, async () => {
    const out = join(dir, "write-only");
    await mkdir(out);
    const script = join(dir, "abort-writer.ts");
    const writer = new URL("../../lib/archive/tar_writer.ts", import.meta.url).href;
    await writeFile(
      script,
      `import { TarWriter } from ${JSON.stringify(writer)};\n` +
        `const w = await TarWriter.create(${JSON.stringify(join(out, "x.tar"))});\n` +
        `await w.addFile("a.txt", new Uint8Array(100_000));\nawait w.abort();\n`,
    );
    const lib = fileURLToPath(new URL("../../lib", import.meta.url));
    const result = await run(process.execPath, [
      "run",
      "--quiet",
      `--allow-read=${lib},${script}`,
      `--allow-write=${out}`,
      script,
    ], { check: false });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(await listDir(out), []);
  });

  it("a missing permission stops before any work, names the flag, leaves nothing", {
    skip: isBun ? "Bun has no permissions" : false,
  }, async () => {
    const out = join(dir, "denied");
    await mkdir(out);
    const cases: [string[], string[], RegExp][] = [
      [[net], ["ls"], /run it with --allow-env$/m],
      [["--allow-env"], ["ls"], new RegExp(`run it with --allow-net=${registry.host}$`, "m")],
      [
        [net, "--allow-env"],
        ["push", "--input", images.dockerArchive, images.name, "image:app:denied"],
        /--allow-read=/,
      ],
      [[net, "--allow-env", `--allow-write=${out}`], [
        "pull",
        "image:app:v1",
        "--output",
        join(out, "app.tar"),
      ], new RegExp(`run it with --allow-read=${out}$`, "m")],
      [[net, "--allow-env", `--allow-read=${out}`], [
        "pull",
        "image:app:v1",
        "--output",
        join(out, "layout/"),
      ], new RegExp(`run it with --allow-write=${out}$`, "m")],
    ];
    for (const [permissions, args, message] of cases) {
      const result = await cli(permissions, args, 1);
      assert.match(result.stderr, /^apolo-images: Deno was not granted access to /);
      assert.match(result.stderr, message);
      assert.doesNotMatch(result.stderr, /unexpected error|\n\s+at /);
    }
    assert.deepEqual(await listDir(out), []);
  });
});
