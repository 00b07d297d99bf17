/**
 * Image references with digests, against Debian's docker-registry, through the command
 * line and the API: two different manifests and three tags in one repository
 * (`latest` → A; `v1`, `v2` → B), checked with skopeo. Every method finds an image the
 * same way: by digest when given, a tag pinned beside it checked, else by tag.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { stat } from "node:fs/promises";
import {
  ImageNotFoundError,
  Images,
  InvalidReferenceError,
  LocalImage,
  NotFoundError,
  PinnedDigestError,
} from "../../mod.ts";
import { type RunningRegistry, startRegistry } from "../../testing/docker_registry.ts";
import { runCli } from "../../testing/cli.ts";
import { makeTempDir, removeTempDir } from "../../testing/fs.ts";
import { layerTar, legacySaveEntries, run, syntheticImage, writeTar } from "../../testing/tools.ts";
import type { RunResult } from "../../testing/tools.ts";

const json = (bytes: Uint8Array) => JSON.parse(new TextDecoder().decode(bytes));

/** The one file of each test image's one layer. */
const CONTENT = { a: "first image", b: "second, larger image ".repeat(50) };

describe("references with digests (docker-registry, skopeo)", () => {
  let registry: RunningRegistry;
  let dir: string;
  let env: Record<string, string>;
  let api: Images;
  /** The archive of each image, and its config digest (its image ID). */
  const archives: Record<"a" | "b", { path: string; config: string }> = {
    a: { path: "", config: "" },
    b: { path: "", config: "" },
  };
  /** Manifest digests in the registry: A is `latest`, B is `v1` and `v2`. */
  let digestA: string;
  let digestB: string;

  const cli = (...args: string[]): Promise<RunResult> => runCli(args, env);
  const ok = async (...args: string[]): Promise<string> => {
    const result = await cli(...args);
    assert.equal(result.code, 0, `apolo-images ${args.join(" ")} failed:\n${result.stderr}`);
    return result.stdout.trim();
  };
  /** `skopeo inspect` of a reference in the registry (`alice/app:v1`, `alice/app@sha256:…`). */
  const skopeo = async (ref: string, raw = false) =>
    json(
      (await run("skopeo", [
        "inspect",
        ...(raw ? ["--raw"] : []),
        "--tls-verify=false",
        `docker://${registry.host}/${ref}`,
      ])).stdoutBytes,
    );
  const tagsInRegistry = async (repo: string): Promise<string[]> => {
    const res = await fetch(`${registry.url}/v2/${repo}/tags/list`);
    if (res.status === 404) {
      await res.body?.cancel();
      return [];
    }
    return ((await res.json()).tags ?? []).sort();
  };
  const catalog = async (): Promise<string[]> =>
    (await (await fetch(`${registry.url}/v2/_catalog`)).json()).repositories;
  const exists = (path: string) => stat(path).then(() => true, () => false);
  const layerSum = (manifest: { layers: { size: number }[] }) =>
    manifest.layers.reduce((sum, l) => sum + l.size, 0);

  /** Pushes both images as the repository `alice/<repo>` (A: latest; B: v1, v2). */
  const pushBoth = async (repo: string) => {
    await ok("push", "-q", "--input", archives.a.path, "app:a", `image:${repo}:latest`);
    await ok("push", "-q", "--input", archives.b.path, "app:b", `image:${repo}:v1`);
    await ok("push", "-q", "--input", archives.b.path, "app:b", `image:${repo}:v2`);
    return {
      a: (await skopeo(`alice/${repo}:latest`)).Digest as string,
      b: (await skopeo(`alice/${repo}:v1`)).Digest as string,
    };
  };

  before(async () => {
    [registry, dir] = await Promise.all([startRegistry(), makeTempDir("apolo-refs")]);
    env = {
      APOLO_REGISTRY: registry.url,
      APOLO_OWNER: "alice",
      APOLO_CLUSTER: "default",
      XDG_CACHE_HOME: join(dir, "cache"),
    };
    api = new Images({
      registries: { default: registry.url },
      clusterName: "default",
      owner: "alice",
      cacheDir: false,
    });
    for (const key of ["a", "b"] as const) {
      const image = syntheticImage([layerTar({ [`${key}.txt`]: CONTENT[key] })]);
      const path = join(dir, `${key}.tar`);
      await writeTar(path, legacySaveEntries(image, [`app:${key}`]));
      archives[key as "a" | "b"] = { path, config: image.configDigest };
    }
    ({ a: digestA, b: digestB } = await pushBoth("app"));
    assert.notEqual(digestA, digestB);
  });

  after(async () => {
    await registry?.stop();
    if (dir) await removeTempDir(dir);
  });

  it("digest, size and pull by the digest of the non-latest manifest act on it", async () => {
    assert.equal(await ok("digest", `image:app@${digestB}`), digestB);
    assert.equal(await ok("digest", `image:app:v1@${digestB}`), digestB);
    assert.equal(await ok("digest", "image:app"), digestA);

    const manifestB = await skopeo(`alice/app@${digestB}`, true);
    const manifestA = await skopeo("alice/app:latest", true);
    assert.notEqual(layerSum(manifestA), layerSum(manifestB));
    assert.deepEqual(JSON.parse(await ok("size", "--json", `image:app@${digestB}`)), {
      size: layerSum(manifestB),
    });

    const output = join(dir, "by-digest.tar");
    assert.equal(
      await ok("pull", "-q", `image:app@${digestB}`, "pulled:b", "--output", output),
      "pulled:b",
    );
    const config = await run("skopeo", [
      "inspect",
      "--config",
      "--raw",
      `docker-archive:${output}`,
    ]);
    assert.equal(
      `sha256:${(await run("sha256sum", [], { input: config.stdout })).stdout.split(" ")[0]}`,
      archives.b.config,
      "the archive holds B, not latest's A",
    );

    // The API: the same, and tagInfo named by the digest.
    const byDigest = api.parser.parseRemote(`image:app@${digestB}`);
    assert.equal(await api.digest(byDigest), digestB);
    const info = await api.tagInfo(byDigest);
    assert.equal(info.name, digestB);
    assert.equal(info.size, layerSum(manifestB));
    assert.equal(
      (await api.tags(byDigest)).map((t) => t.toString()).sort().join(" "),
      "image://default/alice/app:v1 image://default/alice/app:v2",
    );
  });

  it("pull by digest alone writes, prints and returns the name it gives: NAME:latest", async () => {
    const output = join(dir, "digest-only.tar");
    assert.equal(await ok("pull", "-q", `image:app@${digestB}`, "--output", output), "app:latest");
    const manifest = await run("tar", ["-xOf", output, "manifest.json"]);
    assert.deepEqual(json(manifest.stdoutBytes)[0].RepoTags, ["app:latest"]);
    const viaJson = JSON.parse(
      await ok("pull", "-q", "--json", `image:app@${digestB}`, "--output", output),
    );
    assert.equal(viaJson.image, "app:latest");
    assert.equal(viaJson.digest, digestB);
    const pulled = await api.pull(api.parser.parseRemote(`image:app@${digestB}`), undefined, {
      output,
    });
    assert.equal(pulled.toString(), "app:latest");
  });

  it("a tag pinned to another digest fails and writes nothing", async () => {
    const pinned = `image:app:v1@${digestA}`;
    const output = join(dir, "pinned.tar");
    const pull = await cli("pull", "-q", pinned, "--output", output);
    assert.equal(pull.code, 1);
    assert.equal(
      pull.stderr.trim(),
      `apolo-images: image://default/alice/app:v1@${digestA}: tag v1 is ${digestB} in the ` +
        `registry, not the pinned ${digestA}`,
    );
    assert.equal(await exists(output), false, "nothing written");
    for (const command of ["digest", "size", "rm"]) {
      const refused = await cli(command, pinned);
      assert.equal(refused.code, 1, command);
      assert.match(refused.stderr, /not the pinned/);
    }
    const image = api.parser.parseRemote(pinned);
    await assert.rejects(api.digest(image), PinnedDigestError);
    await assert.rejects(api.tagInfo(image), PinnedDigestError);
    await assert.rejects(api.rm(image, digestA), PinnedDigestError);
    await assert.rejects(api.pull(image, undefined, { output }), PinnedDigestError);
    assert.equal(await exists(output), false, "nothing written by the API either");
    assert.deepEqual(await tagsInRegistry("alice/app"), ["latest", "v1", "v2"]);
  });

  it("rm without a tag exits 2 and deletes nothing", async () => {
    const refused = await cli("rm", "image:app");
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /rm needs a tag or a digest: "image:app" names the whole/);
    // Several names: a bad one stops all of them before anything is deleted.
    const mixed = await cli("rm", "-f", "image:app:v1", "image:app");
    assert.equal(mixed.code, 2);
    assert.deepEqual(await tagsInRegistry("alice/app"), ["latest", "v1", "v2"]);
  });

  it("rm of a tag sharing its manifest is refused without -f", async () => {
    const refused = await cli("rm", "image:app:v2");
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /shares its manifest sha256:[0-9a-f]{64} with tag\(s\) v1; .* -f/);
    assert.deepEqual(await tagsInRegistry("alice/app"), ["latest", "v1", "v2"]);
  });

  it("rm by digest deletes exactly that manifest: the other and its tags stay", async () => {
    const removed = await ok("rm", `image:app@${digestB}`);
    assert.deepEqual(removed.split("\n"), [
      `Deleted image://default/alice/app@${digestB}`,
      `Deleted image://default/alice/app:v1 (${digestB})`,
      `Deleted image://default/alice/app:v2 (${digestB})`,
    ]);
    assert.deepEqual(await tagsInRegistry("alice/app"), ["latest"]);
    assert.equal((await skopeo("alice/app:latest")).Digest, digestA);
    const gone = await cli("digest", `image:app@${digestB}`);
    assert.equal(gone.code, 1);
    assert.equal(
      gone.stderr.trim(),
      `apolo-images: image image://default/alice/app@${digestB} not found`,
    );
  });

  it("the API's rm(image, digest) deletes exactly that manifest", async () => {
    const { a, b } = await pushBoth("api-rm");
    // `image:api-rm` reads as `api-rm:latest`: a tag without a digest is no pin.
    const image = api.parser.parseRemote("image:api-rm");
    await api.rm(image, b);
    assert.deepEqual(await tagsInRegistry("alice/api-rm"), ["latest"]);
    assert.equal((await skopeo("alice/api-rm:latest")).Digest, a);
    await assert.rejects(
      api.rm(api.parser.parseRemote(`image:api-rm@${a}`), b),
      InvalidReferenceError,
    );
    assert.deepEqual(await tagsInRegistry("alice/api-rm"), ["latest"]);
  });

  it("push to a name with a digest exits 2 and pushes nothing", async () => {
    const refused = await cli(
      "push",
      "-q",
      "--input",
      archives.a.path,
      "app:a",
      `image:dg@${digestA}`,
    );
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /cannot push to image:dg@sha256:[0-9a-f]{64}: a push goes to/);
    await assert.rejects(
      api.push(new LocalImage("app", "a"), api.parser.parseRemote(`image:dg:v1@${digestA}`), {
        input: archives.a.path,
      }),
      InvalidReferenceError,
    );
    assert.equal((await catalog()).includes("alice/dg"), false);
  });

  it("a local image with a digest is picked by it; a tag beside it must name it", async () => {
    // One `docker save` of both images, as `docker save app:a app:b` writes it.
    const both = join(dir, "both.tar");
    const a = syntheticImage([layerTar({ "a.txt": CONTENT.a })]);
    const b = syntheticImage([layerTar({ "b.txt": CONTENT.b })]);
    const [entriesA, entriesB] = [legacySaveEntries(a, ["app:a"]), legacySaveEntries(b, ["app:b"])];
    const manifests = [...entriesA, ...entriesB]
      .filter((e) => e.name === "manifest.json")
      .flatMap((e) => JSON.parse(String(e.data)));
    await writeTar(both, [
      ...[...entriesA, ...entriesB].filter((e) => e.name !== "manifest.json"),
      { name: "manifest.json", data: JSON.stringify(manifests) },
    ]);
    const pushed = await ok(
      "push",
      "-q",
      "--input",
      both,
      `app@${b.configDigest}`,
      "image:picked:1",
    );
    assert.equal(pushed, "image://default/alice/picked:1");
    assert.equal((await skopeo("alice/picked:1")).Digest, digestB);
    const mismatch = await cli(
      "push",
      "-q",
      "--input",
      both,
      `app:a@${b.configDigest}`,
      "image:picked:2",
    );
    assert.equal(mismatch.code, 1);
    assert.match(
      mismatch.stderr,
      /app:a@sha256:[0-9a-f]{64}: tag a names another image than the pinned sha256:\w+ in .*both\.tar$/m,
    );
    assert.deepEqual(await tagsInRegistry("alice/picked"), ["1"]);
  });

  it("invalid names, bad options and bare names where an image: URI is needed exit 2", async () => {
    for (
      const args of [
        ["digest", "image:App:v1"],
        ["pull", "image:app:v1:x"],
        ["push", "--input", "x.tar", "Bad"],
        ["push", "--input", "x.tar", "ghcr.io/acme/tool:1"], // no platform name to push to
        ["rm", "image:app@sha256:123"],
        ["tags", "image:app:v1"],
        ["pull", "--platform", "linux", "image:app:v1", "--output", join(dir, "x.tar")],
      ]
    ) {
      const refused = await cli(...args);
      assert.equal(refused.code, 2, `${args.join(" ")}: ${refused.stderr}`);
      assert.doesNotMatch(refused.stderr, /\n\s+at /, "no stack trace");
      assert.match(refused.stderr, /--help" for usage/);
    }
    assert.equal(await exists(join(dir, "x.tar")), false);
    for (const command of ["digest", "rm", "size", "tags"]) {
      const name = command === "tags" ? "app" : "app:latest";
      const refused = await cli(command, name);
      assert.equal(refused.code, 2, command);
      assert.match(
        refused.stderr,
        new RegExp(`${command} needs an image: URI .*"${name}" names an image on docker\\.io`),
      );
    }
  });

  it("a missing image is one NotFoundError with one message, from every command", async () => {
    const missing = "image://default/alice/nope:1";
    const runs: [string[], string][] = [
      [["digest", "image:nope:1"], missing],
      [["size", "image:nope:1"], missing],
      [["pull", "-q", "image:nope:1", "--output", join(dir, "nope.tar")], missing],
      [["tags", "image:nope"], "image://default/alice/nope"],
      [["rm", "image:nope:1"], missing],
      [["rm", `image:app@${digestB}`], `image://default/alice/app@${digestB}`],
      [["digest", `image:app:v9@${digestA}`], `image://default/alice/app:v9@${digestA}`],
    ];
    for (const [args, image] of runs) {
      const result = await cli(...args);
      assert.equal(result.code, 1, args.join(" "));
      assert.equal(result.stderr.trim(), `apolo-images: image ${image} not found`, args.join(" "));
    }
    assert.equal(await exists(join(dir, "nope.tar")), false);
    const image = api.parser.parseRemote("image:nope:1");
    for (
      const call of [
        () => api.digest(image),
        () => api.size(image),
        () => api.tagInfo(image),
        () => api.tags(image),
        () => api.pull(image, undefined, { output: join(dir, "nope.tar") }),
        () => api.rm(image, digestA),
      ]
    ) {
      await assert.rejects(call(), (e) => {
        assert.ok(e instanceof ImageNotFoundError && e instanceof NotFoundError, String(e));
        assert.match(
          e.message,
          /^image image:\/\/default\/alice\/nope(:1)?(@sha256:\w+)? not found$/,
        );
        return true;
      });
    }
  });

  it("--project is --owner, and ls filters by project and org as apolo does", async () => {
    await ok("--project", "bob", "push", "-q", "--input", archives.a.path, "app:a", "image:x:1");
    assert.deepEqual(await tagsInRegistry("bob/x"), ["1"]);
    await ok("--org", "acme", "push", "-q", "--input", archives.a.path, "app:a", "image:y:1");
    assert.deepEqual(await tagsInRegistry("acme/alice/y"), ["1"]);
    const conflict = await cli("--owner", "alice", "--project", "bob", "digest", "image:x:1");
    assert.equal(conflict.code, 2);

    const ls = async (...args: string[]) => (await ok("ls", "--full-uri", ...args)).split("\n");
    const mine = await ls();
    assert.ok(mine.includes("image://default/alice/app"), mine.join(" "));
    assert.ok(!mine.some((i) => i.includes("/bob/") || i.includes("/acme/")), mine.join(" "));
    assert.deepEqual(await ls("--project", "bob"), ["image://default/bob/x"]);
    const two = await ls("--project", "bob", "--project", "alice");
    assert.ok(two.includes("image://default/bob/x") && two.includes("image://default/alice/app"));
    assert.deepEqual(await ls("--org", "acme"), ["image://default/acme/alice/y"]);
    const all = await ls("--all-orgs", "--all-projects");
    assert.deepEqual(all.sort(), (await catalog()).map((r) => `image://default/${r}`).sort());
    const short = await ok("--project", "bob", "ls");
    assert.equal(short, "image:x");
  });
});
