/**
 * The Images API from TypeScript against Debian's docker-registry: progress events,
 * credentials, and the SDK's semantics of digest, tags, size and tagInfo.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { readdir } from "node:fs/promises";
import {
  AbstractDockerImageProgress,
  type ImageProgressPull,
  type ImageProgressPush,
  type ImageProgressStep,
  Images,
  ImagesError,
  LocalImage,
} from "../mod.ts";
import { type RunningRegistry, startRegistry } from "../testing/docker_registry.ts";
import { makeTempDir, removeTempDir } from "../testing/fs.ts";
import { acquireTestImages, releaseTestImages, type TestImages } from "../testing/tools.ts";
import { runCli } from "../testing/cli.ts";

class Recorder extends AbstractDockerImageProgress {
  started: (ImageProgressPush | ImageProgressPull)[] = [];
  steps: ImageProgressStep[] = [];
  override push(data: ImageProgressPush): void {
    this.started.push(data);
  }
  override pull(data: ImageProgressPull): void {
    this.started.push(data);
  }
  override step(data: ImageProgressStep): void {
    this.steps.push(data);
  }
  /** Each layer's distinct statuses in order. */
  statuses(): Map<string, string[]> {
    const byLayer = new Map<string, string[]>();
    for (const s of this.steps) {
      const list = byLayer.get(s.layerId) ?? [];
      if (list.at(-1) !== s.status) list.push(s.status);
      byLayer.set(s.layerId, list);
    }
    return byLayer;
  }
}

describe("Images API against docker-registry with Basic auth", () => {
  let registry: RunningRegistry;
  let images: TestImages;
  let dir: string;
  let api: Images;

  before(async () => {
    [registry, images, dir] = await Promise.all([
      startRegistry({ auth: "htpasswd" }),
      acquireTestImages(),
      makeTempDir("apolo-api"),
    ]);
    api = new Images({
      registries: { default: registry.url },
      clusterName: "default",
      owner: "bob",
      username: registry.username,
      password: registry.password,
      cacheDir: join(dir, "cache"),
    });
  });

  after(async () => {
    await registry?.stop();
    await releaseTestImages();
    if (dir) await removeTempDir(dir);
  });

  it("reports push progress per layer in order, ending at each layer's size", async () => {
    const progress = new Recorder();
    const target = api.parser.parseRemote("image:apolo-test/img:v1");
    const remote = await api.push(new LocalImage("localhost/apolo-test/img", "v1"), target, {
      input: images.dockerArchive,
      progress,
    });
    assert.equal(remote.toString(), "image://default/bob/apolo-test/img:v1");
    assert.equal(progress.started.length, 1);
    assert.equal(progress.started[0].dst.toString(), remote.toString());
    const statuses = progress.statuses();
    assert.equal(statuses.size, images.layerCount);
    for (const [id, list] of statuses) {
      assert.deepEqual(list, ["Waiting", "Preparing", "Pushing", "Pushed"], `layer ${id}`);
      const mine = progress.steps.filter((s) => s.layerId === id);
      const last = mine.at(-1)!;
      assert.equal(last.current, last.total);
      const counts = mine.filter((s) => s.status === "Pushing").map((s) => s.current);
      assert.deepEqual(counts, [...counts].sort((a, b) => a - b), "byte counts only grow");
    }

    const again = new Recorder();
    await api.push(new LocalImage("localhost/apolo-test/img", "v1"), remote.withTag("v1-again"), {
      input: images.dockerArchive,
      progress: again,
    });
    for (const list of again.statuses().values()) {
      assert.deepEqual(list, ["Waiting", "Preparing", "Layer already exists"]);
    }
  });

  it("reports pull progress and agrees on digest, tags, size and tagInfo", async () => {
    const remote = api.parser.parseRemote("image:apolo-test/img:v1");
    const progress = new Recorder();
    const output = join(dir, "pulled.tar");
    const local = await api.pull(remote, undefined, { output, progress });
    assert.equal(local.toString(), "apolo-test/img:v1");
    for (const list of progress.statuses().values()) {
      assert.deepEqual(list, ["Waiting", "Preparing", "Downloading", "Download complete"]);
    }
    const downloaded = progress.steps.filter((s) => s.status === "Download complete")
      .reduce((sum, s) => sum + s.current, 0);
    const size = await api.size(remote);
    assert.equal(downloaded, size, "bytes downloaded = the image's size");
    const info = await api.tagInfo(remote);
    assert.equal(info.name, "v1");
    assert.equal(info.size, size);
    const digest = await api.digest(remote);
    assert.match(digest, /^sha256:[0-9a-f]{64}$/);
    const tags = (await api.tags(remote.withTag("v1"))).map((t) => t.tag).sort();
    assert.deepEqual(tags, ["v1", "v1-again"]);
    const listed = (await api.list()).map((i) => i.toString());
    assert.deepEqual(listed, ["image://default/bob/apolo-test/img"]);
    assert.deepEqual(
      (await readdir(dir)).sort(),
      ["cache", "pulled.tar"],
      "no temporary file left",
    );
  });

  it("refuses wrong credentials with a typed error that never shows the secret", async () => {
    const secret = "s3cret-Token-value-42";
    const wrong = new Images({
      registries: { default: registry.url },
      clusterName: "default",
      owner: "bob",
      username: registry.username,
      password: secret,
    });
    const remote = wrong.parser.parseRemote("image:apolo-test/img:v1");
    await assert.rejects(wrong.digest(remote), (e: unknown) => {
      assert.ok(e instanceof ImagesError, `typed error, got ${e}`);
      assert.doesNotMatch(String(e) + JSON.stringify(e), new RegExp(secret));
      return true;
    });
    const env = {
      APOLO_REGISTRY: registry.url,
      APOLO_OWNER: "bob",
      APOLO_USERNAME: registry.username!,
      APOLO_TOKEN: secret,
    };
    for (
      const args of [["digest", "image:apolo-test/img:v1"], [
        "--debug",
        "pull",
        "image:apolo-test/img:v1",
        "--output",
        join(dir, "x.tar"),
      ]]
    ) {
      const result = await runCli(args, env);
      assert.equal(result.code, 1);
      assert.doesNotMatch(result.stdout + result.stderr, new RegExp(secret));
      assert.match(result.stderr, /auth|401|credential/i);
    }
    const viaStdin = await runCli(
      ["--username", registry.username!, "--password-stdin", "digest", "image:apolo-test/img:v1"],
      { APOLO_REGISTRY: registry.url, APOLO_OWNER: "bob" },
      registry.password + "\n",
    );
    assert.equal(viaStdin.code, 0, viaStdin.stderr);
    assert.match(viaStdin.stdout, /^sha256:/);
  });
});
