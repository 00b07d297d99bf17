/**
 * End to end against Debian's docker-registry: images made by buildah, pushed and pulled
 * with the command line, checked with skopeo and podman.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { type RunningRegistry, startRegistry } from "../../testing/docker_registry.ts";
import { runCli } from "../../testing/cli.ts";
import { makeTempDir, removeTempDir } from "../../testing/fs.ts";
import {
  acquireTestImages,
  Buildah,
  Podman,
  releaseTestImages,
  run,
  skopeoConfig,
  skopeoManifest,
  type TestImages,
} from "../../testing/tools.ts";
import { openLocalSource } from "../../lib/archive/mod.ts";

const json = (bytes: Uint8Array) => JSON.parse(new TextDecoder().decode(bytes));

describe("images end to end (docker-registry, buildah, skopeo, podman)", () => {
  let registry: RunningRegistry;
  let images: TestImages;
  let dir: string;
  let env: Record<string, string>;
  let sourceManifest: { config: { digest: string }; layers: unknown[] };
  let sourceDiffIds: string[];

  const cli = async (...args: string[]) => {
    const result = await runCli(args, env);
    assert.equal(result.code, 0, `apolo-images ${args.join(" ")} failed:\n${result.stderr}`);
    return result.stdout.trim();
  };
  const inRegistry = (repo: string) => `docker://${registry.host}/${repo}`;
  const skopeoRemote = async (ref: string) =>
    json((await run("skopeo", ["inspect", "--raw", "--tls-verify=false", ref])).stdoutBytes);
  const registryJson = async (path: string) => await (await fetch(`${registry.url}${path}`)).json();

  before(async () => {
    [registry, images, dir] = await Promise.all([
      startRegistry(),
      acquireTestImages(),
      makeTempDir("apolo-e2e"),
    ]);
    env = {
      APOLO_REGISTRY: registry.url,
      APOLO_OWNER: "alice",
      APOLO_CLUSTER: "default",
      XDG_CACHE_HOME: join(dir, "cache"),
    };
    sourceManifest = json(await skopeoManifest(`docker-archive:${images.dockerArchive}`));
    sourceDiffIds =
      json(await skopeoConfig(`docker-archive:${images.dockerArchive}`)).rootfs.diff_ids;
  });

  after(async () => {
    await registry?.stop();
    await releaseTestImages();
    if (dir) await removeTempDir(dir);
  });

  it("pushes a docker-archive: the registry holds the same config and diffIDs", async () => {
    const out = await cli(
      "push",
      "-q",
      "--input",
      images.dockerArchive,
      images.name,
      "image:app:v1",
    );
    assert.equal(out, "image://default/alice/app:v1");
    const manifest = await skopeoRemote(inRegistry("alice/app:v1"));
    assert.equal(manifest.mediaType, "application/vnd.docker.distribution.manifest.v2+json");
    assert.equal(manifest.config.digest, sourceManifest.config.digest);
    assert.equal(manifest.layers.length, images.layerCount);
    for (const layer of manifest.layers) {
      assert.equal(layer.mediaType, "application/vnd.docker.image.rootfs.diff.tar.gzip");
    }
    const config = json(
      (await run("skopeo", [
        "inspect",
        "--config",
        "--raw",
        "--tls-verify=false",
        inRegistry("alice/app:v1"),
      ]))
        .stdoutBytes,
    );
    assert.deepEqual(config.rootfs.diff_ids, sourceDiffIds);
  });

  /** The diffIDs of an image in the registry, from GNU gzip reading its layers back. */
  const gunzippedDiffIds = async (repo: string, scratch: string) => {
    const copy = join(dir, scratch);
    await run("skopeo", ["copy", "-q", "--src-tls-verify=false", inRegistry(repo), `dir:${copy}`]);
    const manifest = json(await readFile(join(copy, "manifest.json")));
    const diffIds = [];
    for (const layer of manifest.layers) {
      const blob = join(copy, layer.digest.slice("sha256:".length));
      const gunzipped = await run("bash", ["-c", 'gzip -dc < "$1" | sha256sum', "-", blob]);
      diffIds.push(`sha256:${gunzipped.stdout.split(" ")[0]}`);
    }
    return diffIds;
  };

  /** Pushes the test image to `target` with gzip on `engine`. */
  const pushWith = (engine: string, target: string) =>
    cli(
      "push",
      "-q",
      "--gzip-engine",
      engine,
      "--input",
      images.dockerArchive,
      images.name,
      target,
    );

  for (const engine of ["isal", "libdeflate", "libdeflate-wasm", "zlib"]) {
    it(`pushes with gzip engine ${engine}: skopeo copies it back and GNU gzip reads every layer to its diffID`, async () => {
      const name = `app-${engine}:v1`;
      await pushWith(engine, `image:${name}`);
      assert.deepEqual(await gunzippedDiffIds(`alice/${name}`, `copied-${engine}`), sourceDiffIds);
    });
  }

  it("pushes with libdeflate-wasm: skopeo decompresses it into a docker archive that podman loads with the source's image ID", async () => {
    await pushWith("libdeflate-wasm", "image:wasm:v1");
    const archive = join(dir, "wasm-by-skopeo.tar");
    await run("skopeo", [
      "copy",
      "-q",
      "--src-tls-verify=false",
      inRegistry("alice/wasm:v1"),
      `docker-archive:${archive}:wasm:copied`,
    ]);
    const podman = await Podman.create();
    try {
      await podman.load(archive);
      const image = await podman.inspect("wasm:copied");
      assert.equal(`sha256:${image.id}`, sourceManifest.config.digest);
      assert.deepEqual(image.diffIds, sourceDiffIds);
    } finally {
      await podman.cleanup();
    }
  });

  it("under Deno with only the README's permissions (no --allow-sys, no --allow-ffi), pushes and pulls", async () => {
    const home = join(dir, "home");
    const cliPath = fileURLToPath(new URL("../../lib/cli/main.ts", import.meta.url));
    const permissions = ["--allow-net=127.0.0.1", "--allow-read", "--allow-write", "--allow-env"];
    const narrow = (...args: string[]) =>
      run("deno", ["run", ...permissions, "--no-prompt", cliPath, ...args], {
        env: { ...env, XDG_CACHE_HOME: "", XDG_DATA_HOME: "", HOME: home, NO_COLOR: "1" },
      });
    const pushed = await narrow(
      "push",
      "-q",
      "--input",
      images.dockerArchive,
      images.name,
      "image:narrow:v1",
    );
    assert.equal(pushed.stdout.trim(), "image://default/alice/narrow:v1");
    assert.deepEqual(await gunzippedDiffIds("alice/narrow:v1", "copied-narrow"), sourceDiffIds);
    // Without FFI the push compressed on libdeflate-wasm: its bytes, not zlib's.
    await pushWith("libdeflate-wasm", "image:narrow:wasm");
    await pushWith("zlib", "image:narrow:zlib");
    const layers = async (tag: string) =>
      (await skopeoRemote(inRegistry(`alice/narrow:${tag}`))).layers.map((l: { digest: string }) =>
        l.digest
      );
    assert.deepEqual(await layers("v1"), await layers("wasm"));
    assert.notDeepEqual(await layers("v1"), await layers("zlib"));
    const output = join(dir, "narrow.tar");
    await narrow("pull", "-q", "image:narrow:v1", "narrow:pulled", "--output", output);
    const source = await openLocalSource(output);
    await source.close();
  });

  it("digest equals skopeo's; size, tags and ls agree with the registry", async () => {
    const digest = await cli("digest", "image:app:v1");
    const inspected = JSON.parse(
      (await run("skopeo", ["inspect", "--tls-verify=false", inRegistry("alice/app:v1")])).stdout,
    );
    assert.equal(digest, inspected.Digest);

    const manifest = await skopeoRemote(inRegistry("alice/app:v1"));
    const layerSum = manifest.layers.reduce((s: number, l: { size: number }) => s + l.size, 0);
    assert.deepEqual(JSON.parse(await cli("size", "--json", "image:app:v1")), { size: layerSum });
    assert.match(await cli("size", "image:app:v1"), /^\d+(\.\d)? (bytes|kB|MB)$/);

    await cli("push", "-q", "--input", images.dockerArchive, images.name, "image:app:v2");
    const tags = (await registryJson("/v2/alice/app/tags/list")).tags.sort();
    assert.deepEqual(tags, ["v1", "v2"]);
    assert.deepEqual((await cli("tags", "image:app")).split("\n").sort(), [
      "image:app:v1",
      "image:app:v2",
    ]);
    const long = JSON.parse(await cli("tags", "-l", "--json", "image:app"));
    assert.deepEqual(long.map((t: { size: number }) => t.size), [layerSum, layerSum]);

    const catalog = (await registryJson("/v2/_catalog")).repositories;
    const listed = JSON.parse(await cli("ls", "--json")).map((i: { image: string }) => i.image);
    assert.deepEqual(
      listed.sort(),
      catalog.map((r: string) => `image://default/${r}`).sort(),
    );
    assert.ok((await cli("ls")).split("\n").includes("image:app"));
    assert.match(
      await cli("ls", "-l", "--full-uri"),
      new RegExp(`image://default/alice/app +${registry.host}/alice/app`),
    );
  });

  it("pulls into a docker archive that podman load accepts with the same image ID", async () => {
    const output = join(dir, "pulled.tar");
    assert.equal(
      await cli("pull", "-q", "image:app:v1", "app:pulled", "--output", output),
      "app:pulled",
    );
    const podman = await Podman.create();
    try {
      const loaded = await podman.load(output);
      assert.ok(loaded.some((n) => n.endsWith("app:pulled")), `loaded ${loaded}`);
      const image = await podman.inspect("app:pulled");
      assert.equal(`sha256:${image.id}`, sourceManifest.config.digest);
      assert.deepEqual(image.diffIds, sourceDiffIds);
    } finally {
      await podman.cleanup();
    }
  });

  it("pulls into an OCI archive that skopeo reads, and into an OCI layout directory", async () => {
    const archive = join(dir, "pulled.oci.tar");
    await cli("pull", "-q", "--format", "oci", "image:app:v1", "--output", archive);
    const config = json(await skopeoConfig(`oci-archive:${archive}`));
    assert.deepEqual(config.rootfs.diff_ids, sourceDiffIds);
    await run("skopeo", ["copy", "-q", `oci-archive:${archive}`, `dir:${join(dir, "copied")}`]);

    const layout = join(dir, "layout") + "/";
    await cli("pull", "-q", "image:app:v1", "--output", layout);
    await cli("pull", "-q", "image:app:v2", "--output", layout);
    const source = await openLocalSource(layout);
    try {
      // Shown as docker shows them; the full names select them too.
      assert.deepEqual((await source.names()).sort(), ["app:v1", "app:v2"]);
      const top = json((await source.resolve("docker.io/library/app:v1")).bytes);
      assert.equal(top.config.digest, sourceManifest.config.digest);
      assert.equal(top.mediaType, "application/vnd.oci.image.manifest.v1+json");
    } finally {
      await source.close();
    }
  });

  it("pushes OCI archives and layouts as OCI manifests with the same config", async () => {
    await cli("push", "-q", "--input", images.ociArchive, images.name, "image:oci-app:a");
    await cli("push", "-q", "--input", images.ociDir, images.ociDirRef, "image:oci-app:b");
    const a = await skopeoRemote(inRegistry("alice/oci-app:a"));
    const b = await skopeoRemote(inRegistry("alice/oci-app:b"));
    const ociSource = json(await skopeoManifest(`oci-archive:${images.ociArchive}`));
    assert.equal(a.mediaType, "application/vnd.oci.image.manifest.v1+json");
    assert.deepEqual(a, ociSource, "an OCI image with compressed layers goes byte for byte");
    assert.equal(b.config.digest, ociSource.config.digest);
  });

  it("rm refuses a tag sharing its manifest unless -f, then the tags are gone", async () => {
    const refused = await runCli(["rm", "image:app:v1"], env);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /shares its manifest .* with tag\(s\) v2; .* use -f/);
    assert.doesNotMatch(refused.stderr, /\n\s+at /, "no stack trace");
    const removed = await cli("rm", "-f", "image:app:v1");
    assert.match(removed, /Deleted image:\/\/default\/alice\/app:v1/);
    assert.match(removed, /Deleted image:\/\/default\/alice\/app:v2/);
    const gone = await runCli(["digest", "image:app:v1"], env);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /not found/);
    const status = await fetch(`${registry.url}/v2/alice/app/manifests/v2`, { method: "HEAD" });
    assert.equal(status.status, 404);
  });

  it("pushes a multi-platform index whole and pulls the platform asked for", async () => {
    const buildah = await Buildah.create();
    const multi = join(dir, "multi.tar");
    try {
      await buildah.run(["pull", "-q", `oci-archive:${images.ociArchive}`]);
      const c = await buildah.from(images.name);
      await buildah.config(c, ["--arch", "arm64", "--variant", "v8"]);
      await buildah.commit(c, "localhost/multi:arm64");
      await buildah.run(["manifest", "create", "localhost/multi:all"]);
      await buildah.run([
        "manifest",
        "add",
        "localhost/multi:all",
        `containers-storage:${images.name}`,
      ]);
      await buildah.run([
        "manifest",
        "add",
        "localhost/multi:all",
        "containers-storage:localhost/multi:arm64",
      ]);
      await buildah.run([
        "manifest",
        "push",
        "-q",
        "--all",
        "localhost/multi:all",
        `oci-archive:${multi}:multi:all`,
      ]);
    } finally {
      await buildah.cleanup();
    }
    await cli("push", "-q", "--input", multi, "multi:all", "image:multi:all");
    const index = await skopeoRemote(inRegistry("alice/multi:all"));
    assert.equal(index.mediaType, "application/vnd.oci.image.index.v1+json");
    assert.deepEqual(
      index.manifests.map((m: { platform: { architecture: string } }) => m.platform.architecture)
        .sort(),
      ["amd64", "arm64"],
    );
    const output = join(dir, "arm.tar");
    await cli("pull", "-q", "--platform", "linux/arm64/v8", "image:multi:all", "--output", output);
    assert.equal(json(await skopeoConfig(`docker-archive:${output}`)).architecture, "arm64");
    // By the index's digest: the same index, and the platform's image where per-image.
    const indexDigest = await cli("digest", "image:multi:all");
    assert.equal(await cli("digest", `image:multi@${indexDigest}`), indexDigest);
    assert.equal(
      await cli("size", "--json", `image:multi@${indexDigest}`),
      await cli("size", "--json", "image:multi:all"),
    );
    const byDigest = join(dir, "arm-by-digest.tar");
    await cli(
      "pull",
      "-q",
      "--platform",
      "linux/arm64/v8",
      `image:multi@${indexDigest}`,
      "--output",
      byDigest,
    );
    assert.equal(json(await skopeoConfig(`docker-archive:${byDigest}`)).architecture, "arm64");
    const missing = await runCli([
      "pull",
      "-q",
      "--platform",
      "linux/s390x",
      "image:multi:all",
      "--output",
      join(dir, "none.tar"),
    ], env);
    assert.equal(missing.code, 1);
    assert.match(
      missing.stderr,
      /no image for platform linux\/s390x; the index holds linux\/amd64, linux\/arm64\/v8/,
    );
  });

  it("pulls an image of one platform for its own, refuses it for another, writes nothing", async () => {
    // Not handed over as if it were the other platform's: it would fail only at run time.
    await cli("push", "-q", "--input", images.dockerArchive, images.name, "image:single:v1");
    const own = json(await skopeoConfig(`docker-archive:${images.dockerArchive}`)).architecture;
    const mine = join(dir, "own-platform.tar");
    await cli("pull", "-q", "--platform", `linux/${own}`, "image:single:v1", "--output", mine);
    assert.equal(json(await skopeoConfig(`docker-archive:${mine}`)).architecture, own);
    const other = own === "arm64" ? "amd64" : "arm64";
    const refused = join(dir, "other-platform.tar");
    const wrong = await runCli(
      ["pull", "-q", "--platform", `linux/${other}`, "image:single:v1", "--output", refused],
      env,
    );
    assert.equal(wrong.code, 1, wrong.stderr);
    assert.match(
      wrong.stderr,
      new RegExp(`the image is for linux/${own}(/\\w+)?, not the linux/${other} asked for`),
    );
    assert.doesNotMatch(wrong.stderr, /\n\s+at /); // a message, no stack trace
    await assert.rejects(readFile(refused), { code: "ENOENT" });
    assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith("other-platform")), []);
  });

  it("fails clearly on bad input and leaves no output behind", async () => {
    const missing = await runCli(["push", "--input", join(dir, "nope.tar"), "x:1"], env);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /nope\.tar/);
    const notTar = join(dir, "not-a-tar.tar");
    await writeFile(notTar, "hello, this is not a tar archive at all".repeat(20));
    const bad = await runCli(["push", "--input", notTar, "x:1"], env);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /not-a-tar\.tar/);
    assert.doesNotMatch(bad.stderr, /\n\s+at /);
    const output = join(dir, "never.tar");
    const absent = await runCli(["pull", "image:does-not-exist:1", "--output", output], env);
    assert.equal(absent.code, 1);
    assert.match(absent.stderr, /does-not-exist/);
    await assert.rejects(import("node:fs/promises").then((fs) => fs.stat(output)));
    const usage = await runCli(["push"], env);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /missing LOCAL_IMAGE/);
    const badOptions: [string[], RegExp][] = [
      [["--compression-level", "15"], /--compression-level must be a whole number from 1 to 9/],
      [
        ["--gzip-engine", "fast"],
        /--gzip-engine must be one of auto, isal, libdeflate, libdeflate-wasm, zlib/,
      ],
      [["--compression", "zstd", "--gzip-engine", "isal"], /--gzip-engine applies to gzip/],
    ];
    for (const [options, message] of badOptions) {
      const refused = await runCli(
        ["push", ...options, "--input", images.dockerArchive, "x:1"],
        env,
      );
      assert.equal(refused.code, 2, refused.stderr);
      assert.match(refused.stderr, message);
    }
  });
});
