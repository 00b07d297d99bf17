// A disk that fills up while a pull writes its output (a 2 MiB tmpfs, mounted as root):
// a clear error naming the output, the temporary file removed, the previous output as
// it was — from the API and from the command line, for every output format.
// Skipped where tmpfs cannot be mounted (not root, or a sandbox without mount).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, rmdir } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { Images, ImagesError, LocalImage } from "../../mod.ts";
import {
  registryAvailable,
  type RunningRegistry,
  startRegistry,
} from "../../testing/docker_registry.ts";
import { runCli } from "../../testing/cli.ts";
import { makeTempDir, removeTempDir } from "../../testing/fs.ts";
import {
  buildSoakImage,
  checkArchiveImage,
  checkLayoutImage,
  listFiles,
} from "../../testing/soak.ts";
import {
  docker25SaveEntries,
  layerTar,
  run,
  syntheticImage,
  writeTar,
} from "../../testing/tools.ts";

/** Mounts a tmpfs of `size` on `dir`; false when this sandbox does not allow it. */
async function mountTmpfs(dir: string, size: string): Promise<boolean> {
  if (process.getuid?.() !== 0) return false;
  await mkdir(dir, { recursive: true });
  const result = await run("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], {
    check: false,
  });
  return result.code === 0;
}

const probeDir = await makeTempDir("apolo-tmpfs-probe");
const tmpfsWorks = await mountTmpfs(probeDir, "64k");
if (tmpfsWorks) await run("umount", [probeDir], { check: false });
await rmdir(probeDir).catch(() => {});

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

describe("disk full while writing an output", {
  skip: !registryAvailable || !tmpfsWorks ? "needs docker-registry and root to mount tmpfs" : false,
}, () => {
  let registry: RunningRegistry;
  let dir: string;
  let small: string;
  let images: Images;
  let env: Record<string, string>;

  before(async () => {
    [registry, dir] = await Promise.all([startRegistry(), makeTempDir("apolo-disk")]);
    images = new Images({
      registries: { default: registry.url },
      clusterName: "default",
      owner: "disk",
      cacheDir: false,
    });
    // a tiny image (fits), and one of about 4.5 MiB (does not fit in 2 MiB)
    const tiny = syntheticImage([layerTar({ "hello.txt": "hello\n" })], { gzip: true });
    await writeTar(join(dir, "tiny.tar"), docker25SaveEntries(tiny, "tiny", "1"));
    await images.push(new LocalImage("tiny", "1"), images.parser.parseRemote("image:tiny:1"), {
      input: join(dir, "tiny.tar"),
    });
    const big = await buildSoakImage(dir, 0.1);
    await images.push(
      new LocalImage("localhost/soak/image", "source"),
      images.parser.parseRemote("image:big:1"),
      { input: big.path },
    );
    small = join(dir, "small");
    assert.ok(await mountTmpfs(small, "2m"), "mount the 2 MiB tmpfs");
    env = { APOLO_REGISTRY: registry.url, APOLO_OWNER: "disk", XDG_CACHE_HOME: join(dir, "cache") };
  });

  after(async () => {
    if (small) await run("umount", [small], { check: false });
    await registry?.stop();
    if (dir) await removeTempDir(dir);
  });

  for (const format of ["docker", "oci", "layout"] as const) {
    it(`${format}: a clear error, no temporary file, the previous output intact (API and CLI)`, async () => {
      const output = format === "layout"
        ? join(small, "layout") + "/"
        : join(small, `image-${format}.tar`);
      const pullFormat = format === "oci" ? "oci" : "docker";
      await images.pull(images.parser.parseRemote("image:tiny:1"), new LocalImage("tiny", "1"), {
        output,
        format: pullFormat,
      });
      const fingerprint = async () =>
        sha256(
          new Uint8Array(await readFile(format === "layout" ? join(output, "index.json") : output)),
        );
      const before = await fingerprint();
      const filesBefore = await listFiles(small);

      await assert.rejects(
        images.pull(images.parser.parseRemote("image:big:1"), new LocalImage("big", "1"), {
          output,
          format: pullFormat,
        }),
        (e: unknown) => {
          assert.ok(e instanceof ImagesError, `a typed error, got ${e}`);
          assert.equal(e.code, "WRITE_FAILED");
          assert.match(e.message, /no space left on device/);
          assert.ok(e.message.includes(output), e.message);
          return true;
        },
      );
      assert.equal(await fingerprint(), before, "the previous output is intact");
      assert.deepEqual(await listFiles(small), filesBefore, "nothing left behind");

      const cli = await runCli(
        [
          "pull",
          "-q",
          ...(format === "oci" ? ["--format", "oci"] : []),
          "image:big:1",
          "--output",
          output,
        ],
        env,
      );
      assert.equal(cli.code, 1, cli.stderr);
      assert.match(cli.stderr, /^apolo-images: writing .*: no space left on device\n$/);
      assert.equal(await fingerprint(), before, "the previous output is intact");
      assert.deepEqual(await listFiles(small), filesBefore, "nothing left behind");

      // and the output still holds a good image
      if (format === "layout") await checkLayoutImage(output, "tiny:1", false);
      else await checkArchiveImage(output, join(dir, "scratch"), "tiny:1", format === "docker");
    });
  }

  it("the space is given back: after the failures, the small disk is as empty as before", async () => {
    const names = await readdir(small);
    const { stdout } = await run("df", ["-k", "--output=used", small]);
    const usedKiB = Number(stdout.trim().split("\n").at(-1));
    assert.ok(usedKiB < 1024, `${usedKiB} KiB used by ${names.join(", ")}`);
  });
});
