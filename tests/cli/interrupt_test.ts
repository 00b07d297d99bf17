/**
 * Ctrl-C (SIGINT) and SIGTERM in the middle of a push, in each upload mode, through a
 * slow link to the real `docker-registry`: the command cancels every upload session it
 * opened, with the session's latest state (distribution refuses a stale one and keeps
 * the bytes), says what it cancelled, and leaves no `_uploads/*\/data` in the registry's
 * storage.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { type RunningRegistry, startRegistry } from "../../testing/docker_registry.ts";
import { startSlowLink } from "../../testing/slow_link.ts";
import { startCli } from "../../testing/cli.ts";
import { makeTempDir, removeTempDir } from "../../testing/fs.ts";
import { docker25SaveEntries, layerTar, syntheticImage, writeTar } from "../../testing/tools.ts";

/** Layer sizes, MB: all in flight when the signal comes (and the config, alongside them). */
const LAYER_MB = [3, 2, 1];
/** The slow link's bandwidth each way, bytes/s. */
const BANDWIDTH = 1_500_000;

describe("Ctrl-C and SIGTERM during a push cancel its upload sessions (docker-registry)", () => {
  let registry: RunningRegistry;
  let dir: string;
  let runs = 0;

  before(async () => {
    [registry, dir] = await Promise.all([startRegistry(), makeTempDir("apolo-interrupt")]);
  });

  after(async () => {
    await registry?.stop();
    if (dir) await removeTempDir(dir);
  });

  /** Sizes of the `_uploads/*\/data` files the registry holds for `repo`. */
  const uploadData = async (repo: string): Promise<number[]> => {
    const uploads = join(registry.storageDir, "docker/registry/v2/repositories", repo, "_uploads");
    if (!existsSync(uploads)) return [];
    const sizes: number[] = [];
    for (const id of await readdir(uploads)) {
      const data = join(uploads, id, "data");
      if (existsSync(data)) sizes.push((await stat(data)).size);
    }
    return sizes;
  };

  const interrupt = async (mode: string, signal: "SIGINT" | "SIGTERM") => {
    const n = ++runs;
    const layers = LAYER_MB.map((mb) =>
      layerTar({ "data.bin": new Uint8Array(randomBytes(mb * 1_000_000)) })
    );
    const archive = join(dir, `image-${n}.tar`);
    await writeTar(
      archive,
      docker25SaveEntries(syntheticImage(layers, { gzip: true }), "app", "1"),
    );
    const repo = `alice/cancel-${n}`;
    const link = await startSlowLink({ target: registry.host, bytesPerSecond: BANDWIDTH });
    try {
      const cli = startCli(
        ["push", "--upload-mode", mode, "--input", archive, "app:1", `image:cancel-${n}:1`],
        { APOLO_REGISTRY: link.url, APOLO_OWNER: "alice", XDG_CACHE_HOME: join(dir, "cache") },
        undefined,
        [`--allow-net=${link.host}`, `--allow-read=${archive}`, "--allow-env"],
      );
      // Wait until the registry holds bytes of an upload (bounded: 300 × 100 ms).
      let before: number[] = [];
      for (let i = 0; i < 300; i++) {
        before = await uploadData(repo);
        if (before.some((size) => size > 100_000)) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.ok(before.some((size) => size > 100_000), `no upload data seen: ${cli.stderr()}`);
      cli.kill(signal);
      const result = await cli.done;
      return { result, before, after: await uploadData(repo) };
    } finally {
      await link.close();
    }
  };

  for (const mode of ["streaming", "chunked", "monolithic"]) {
    it(`Ctrl-C during a ${mode} upload leaves no upload data`, async () => {
      const { result, before, after } = await interrupt(mode, "SIGINT");
      assert.equal(result.code, 130, result.stderr);
      assert.match(result.stderr, /^apolo-images: interrupted; .*nothing was left half-written$/m);
      assert.doesNotMatch(result.stderr, /could not cancel/);
      if (mode !== "monolithic") {
        // A monolithic PUT in flight finishes and commits its blob: no session is left.
        assert.match(result.stderr, /cancelled [1-4] upload sessions? at the registry/);
      }
      assert.deepEqual(after, [], `upload data left (before the signal: ${before.join(", ")})`);
    });
  }

  it("SIGTERM during a streaming upload leaves no upload data either", async () => {
    const { result, after } = await interrupt("streaming", "SIGTERM");
    assert.equal(result.code, 143, result.stderr);
    assert.match(result.stderr, /cancelled [1-4] upload sessions? at the registry/);
    assert.deepEqual(after, []);
  });
});
