// Resuming a push after the process stopped: SIGTERM stops a CLI push between chunks,
// keeping the upload session and its record in the cache folder (exit 143); the same
// push run again continues the layer from the offset the registry acknowledged,
// recomputing (compressing and hashing) the bytes before it without sending them. A
// record whose session the registry no longer knows starts fresh.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  registryAvailable,
  type RunningRegistry,
  startRegistry,
} from "../../testing/docker_registry.ts";
import { startCli } from "../../testing/cli.ts";
import { makeTempDir, removeTempDir } from "../../testing/fs.ts";
import {
  layerTar,
  legacySaveEntries,
  run,
  type RunResult,
  type SyntheticImage,
  syntheticImage,
  writeTar,
} from "../../testing/tools.ts";

const MiB = 1024 * 1024;

interface Record {
  file: string;
  location: string;
  offset: number;
  host: string;
  repository: string;
}

/** The upload records in a cache folder (XDG_CACHE_HOME). */
async function records(cache: string): Promise<Record[]> {
  const folder = join(cache, "apolo-images", "uploads");
  const names = await readdir(folder).catch(() => [] as string[]);
  const found: Record[] = [];
  for (const name of names.filter((n) => n.endsWith(".json"))) {
    try {
      found.push({ file: name, ...JSON.parse(await readFile(join(folder, name), "utf8")) });
    } catch {
      // renamed away meanwhile
    }
  }
  return found;
}

/** Bytes sent in chunks (`content-range` of the PATCHes), from a `--debug` log. */
function chunkBytes(log: string): number {
  let sum = 0;
  for (const m of log.matchAll(/^debug:\s+content-range: (\d+)-(\d+)$/gim)) {
    sum += Number(m[2]) - Number(m[1]) + 1;
  }
  return sum;
}

describe("resuming a push after the process stopped", { skip: !registryAvailable }, () => {
  let registry: RunningRegistry;
  let dir: string;
  let archive: string;
  let image: SyntheticImage;

  before(async () => {
    registry = await startRegistry();
    dir = await makeTempDir("apolo-resume-test");
    // ~40 MiB that gzip cannot shrink (5 chunks of 8 MiB), and a small layer.
    const big = layerTar({ "data/big.bin": new Uint8Array(randomBytes(40 * MiB)) });
    const small = layerTar({ "etc/hello.txt": "hello\n" });
    image = syntheticImage([big, small]);
    archive = join(dir, "app.tar");
    await writeTar(archive, legacySaveEntries(image, ["app:v1"]));
  });

  after(async () => {
    await registry?.stop();
    if (dir) await removeTempDir(dir);
  });

  const envFor = (cache: string) => ({
    APOLO_REGISTRY: registry.url,
    APOLO_OWNER: "alice",
    APOLO_CLUSTER: "default",
    XDG_CACHE_HOME: cache,
  });
  const pushArgs = (repo: string) => [
    "push",
    "--resumable",
    "--debug",
    "--progress",
    "plain",
    "--input",
    archive,
    "app:v1",
    `image:${repo}:v1`,
  ];

  /** Starts a push and sends SIGTERM once a chunk of the big layer was acknowledged. */
  async function pushAndTerminate(cache: string, repo: string): Promise<RunResult> {
    const running = startCli(pushArgs(repo), envFor(cache));
    let exited = false;
    running.done.then(() => exited = true, () => exited = true);
    const deadline = Date.now() + 120_000;
    while (!exited && Date.now() < deadline) {
      if ((await records(cache)).some((r) => r.offset > 0)) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    running.kill("SIGTERM");
    return await running.done;
  }

  /**
   * Checks the pushed image against the archive's (config digest and diffIDs); returns
   * the size of the big layer as stored.
   */
  async function checkPushed(repo: string): Promise<number> {
    const ref = `docker://${registry.host}/alice/${repo}:v1`;
    const manifest = JSON.parse(
      (await run("skopeo", ["inspect", "--raw", "--tls-verify=false", ref])).stdout,
    );
    assert.equal(manifest.config.digest, image.configDigest);
    assert.equal(manifest.layers.length, 2);
    const config = JSON.parse(
      (await run("skopeo", ["inspect", "--config", "--raw", "--tls-verify=false", ref])).stdout,
    );
    assert.deepEqual(config.rootfs.diff_ids, image.diffIds);
    // The layers as stored decompress to the diffIDs: skopeo copies them, verifying.
    await run("skopeo", [
      "copy",
      "--quiet",
      "--src-tls-verify=false",
      ref,
      `oci:${join(dir, `check-${repo.replace(/\W/g, "-")}`)}:v1`,
    ]);
    return manifest.layers[0].size;
  }

  it("SIGTERM keeps the session (exit 143); the next push resumes it", async () => {
    const cache = join(dir, "cache-resume");
    const stopped = await pushAndTerminate(cache, "app");
    assert.equal(stopped.code, 143, `expected exit 143:\n${stopped.stderr.slice(-3000)}`);
    assert.match(stopped.stderr, /terminated; unfinished uploads were kept/);
    const kept = await records(cache);
    assert.equal(kept.length, 1, "one record: the big layer's");
    const [record] = kept;
    assert.ok(record.offset >= 8 * MiB, `acknowledged ${record.offset} bytes`);
    assert.equal(record.host, registry.host);
    assert.equal(record.repository, "alice/app");
    assert.doesNotMatch(JSON.stringify(record), /authorization|password/i);
    // The session is still open at the registry: it was not cancelled.
    const status = await fetch(record.location);
    await status.body?.cancel();
    assert.equal(status.status, 204);
    assert.equal(status.headers.get("range"), `0-${record.offset - 1}`);
    const firstSent = chunkBytes(stopped.stderr);
    assert.ok(firstSent >= record.offset);

    const resumed = await pushAndWait(cache, "app");
    assert.equal(resumed.code, 0, resumed.stderr.slice(-3000));
    const at = /: Resuming at (\d+) bytes$/m.exec(resumed.stderr);
    assert.ok(at, `no "Resuming at" line:\n${resumed.stderr.slice(-3000)}`);
    const offset = Number(at[1]);
    assert.equal(offset, record.offset);
    assert.match(resumed.stderr, new RegExp(`resuming at ${offset} bytes`));
    assert.deepEqual(await records(cache), [], "the record goes once the blob is committed");
    const size = await checkPushed("app");
    // Only the rest was sent, once.
    const sent = chunkBytes(resumed.stderr);
    assert.equal(offset + sent, size, `sent ${sent} after ${offset} of ${size}`);
  });

  it("a record whose session the registry no longer knows starts fresh", async () => {
    const cache = join(dir, "cache-stale");
    const stopped = await pushAndTerminate(cache, "stale");
    assert.equal(stopped.code, 143, stopped.stderr.slice(-3000));
    const [record] = await records(cache);
    assert.ok(record && record.offset > 0);
    const cancelled = await fetch(record.location, { method: "DELETE" });
    await cancelled.body?.cancel();
    assert.equal(cancelled.status, 204);

    const fresh = await pushAndWait(cache, "stale");
    assert.equal(fresh.code, 0, fresh.stderr.slice(-3000));
    assert.doesNotMatch(fresh.stderr, /Resuming at/);
    assert.match(
      fresh.stderr,
      /the saved session \(\d+ bytes\) is no longer usable; starting fresh/,
    );
    assert.deepEqual(await records(cache), []);
    const size = await checkPushed("stale");
    assert.equal(chunkBytes(fresh.stderr), size, "everything was sent again");
  });

  async function pushAndWait(cache: string, repo: string): Promise<RunResult> {
    return await startCli(pushArgs(repo), envFor(cache)).done;
  }
});
