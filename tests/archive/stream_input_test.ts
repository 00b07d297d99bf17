import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createReadStream } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { ArchiveError } from "../../lib/errors.ts";
import { sha256Digest } from "../../lib/oci/digest.ts";
import type { Descriptor } from "../../lib/oci/manifest.ts";
import { openLocalSource, readArchiveStream } from "../../lib/archive/mod.ts";
import { cliCommand } from "../../testing/cli.ts";
import { makeTempDir, removeTempDir } from "../../testing/fs.ts";
import { heapUsed } from "../../testing/fuzz.ts";
import {
  registryAvailable,
  type RunningRegistry,
  startRegistry,
} from "../../testing/docker_registry.ts";
import {
  docker25SaveEntries,
  layerTar,
  legacySaveEntries,
  run,
  syntheticImage,
  type TarSpec,
  writeTar,
} from "../../testing/tools.ts";
import { encodeTarHeader } from "../../lib/archive/tar_header.ts";

const base = layerTar({ "etc/os-release": "ID=test\n" });
const app = layerTar({ "app/data.txt": "data\n".repeat(1000) });

/** A stream of `bytes` in chunks of `size`, telling `onEnd` when the last one is read. */
function chunked(bytes: Uint8Array, size: number, onEnd = () => {}): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) {
        onEnd();
        controller.close();
        return;
      }
      controller.enqueue(bytes.slice(at, at + size));
      at += size;
    },
  }, { highWaterMark: 0 }); // read only when asked: "ended" means the reader got there
}

/** Reads an archive from a stream, keeping what each sent layer was and when it was sent. */
async function readStreamed(bytes: Uint8Array, chunk = 4096) {
  let ended = false;
  const sent: { digest: string; size: number; beforeEnd: boolean }[] = [];
  const sendLayer = async (data: ReadableStream<Uint8Array>): Promise<Descriptor> => {
    const beforeEnd = !ended;
    const layer = new Uint8Array(await new Response(data).arrayBuffer());
    const d = { mediaType: "application/octet-stream", digest: sha256Digest(layer), size: 0 };
    sent.push({ digest: d.digest, size: layer.length, beforeEnd });
    return { ...d, size: layer.length };
  };
  const result = await readArchiveStream(chunked(bytes, chunk, () => ended = true), {
    location: "standard input",
    sendLayer,
  });
  return { ...result, sent, ended: () => ended };
}

describe("archives read once from a stream (push --input -, gzip archives)", () => {
  let dir: string;
  let n = 0;
  const tarOf = async (entries: TarSpec[]) => {
    const path = join(dir, `archive-${n++}.tar`);
    await writeTar(path, entries);
    return { path, bytes: new Uint8Array(await readFile(path)) };
  };

  before(async () => {
    dir = await makeTempDir("archive-stream");
  });
  after(async () => {
    await removeTempDir(dir);
  });

  it("a docker save archive: every layer is sent before manifest.json arrives, once each; the image resolves as from the file", async () => {
    const image = syntheticImage([base, app, base]); // the third is a symlink to the first
    const { path, bytes } = await tarOf(legacySaveEntries(image, ["a/b:1"]));
    for (const chunk of [1, 511, 4096, 1 << 20]) {
      const streamed = await readStreamed(bytes, chunk);
      assert.deepEqual(streamed.sent.map((s) => s.digest), [image.diffIds[0], image.diffIds[1]]);
      assert.ok(streamed.sent.every((s) => s.beforeEnd), "sent as the stream passed");
      const file = await openLocalSource(path);
      try {
        assert.deepEqual(await streamed.source.names(), await file.names());
        assert.deepEqual(
          (await streamed.source.resolve("a/b:1")).bytes,
          (await file.resolve()).bytes,
        );
      } finally {
        await file.close();
      }
    }
  });

  it("the padding after the end of the archive is read, so the producer of a pipe never meets a closed pipe", async () => {
    const { bytes } = await tarOf(legacySaveEntries(syntheticImage([base]), ["a/b:1"]));
    const padded = new Uint8Array(bytes.length + 64 * 1024); // GNU tar pads to its record size
    padded.set(bytes);
    const streamed = await readStreamed(padded);
    assert.ok(streamed.ended(), "read to the end");
  });

  it("a gzip-compressed archive reads the same", async () => {
    const image = syntheticImage([base, app]);
    const { path, bytes } = await tarOf(legacySaveEntries(image, ["a/b:1"]));
    const plain = await readStreamed(bytes);
    const gzipped = await readStreamed(new Uint8Array(gzipSync(bytes)));
    assert.deepEqual(gzipped.sent.map((s) => s.digest), plain.sent.map((s) => s.digest));
    assert.deepEqual((await gzipped.source.resolve()).bytes, (await plain.source.resolve()).bytes);
    // And a .tar.gz file given to push is read this way (the file reader refuses gzip).
    await writeFile(`${path}.gz`, gzipSync(bytes));
    const fromFile = await readArchiveStream(
      Readable.toWeb(createReadStream(`${path}.gz`)) as ReadableStream<Uint8Array>,
      {
        location: `${path}.gz`,
        sendLayer: async (data) => {
          await new Response(data).arrayBuffer();
          return { mediaType: "x", digest: image.diffIds[0], size: 1 };
        },
      },
    );
    assert.deepEqual(await fromFile.source.names(), ["a/b:1"]);
  });

  it("an OCI archive (Docker 25+: index.json beside manifest.json) resolves through index.json, the manifest bytes kept", async () => {
    const image = syntheticImage([base, app], { gzip: true });
    const { path, bytes } = await tarOf(docker25SaveEntries(image, "a/b", "1"));
    const streamed = await readStreamed(bytes);
    assert.deepEqual(streamed.sent.map((s) => s.digest), image.layerDigests);
    const file = await openLocalSource(path);
    try {
      const ours = await streamed.source.resolve("a/b:1");
      assert.deepEqual(ours.bytes, (await file.resolve()).bytes);
      assert.equal(ours.descriptor.digest, (await file.resolve()).descriptor.digest);
    } finally {
      await file.close();
    }
  });

  it("a layer whose bytes are not its diffID fails the resolve, naming the entry", async () => {
    const image = syntheticImage([base, app]);
    const entries = legacySaveEntries(image, ["a/b:1"]);
    const layer = entries.filter((e) => e.name.endsWith("/layer.tar"))[1];
    const broken = app.slice();
    broken[600] ^= 0xff;
    const { bytes } = await tarOf(entries.map((e) => e === layer ? { ...e, data: broken } : e));
    const streamed = await readStreamed(bytes);
    await assert.rejects(
      streamed.source.resolve(),
      (e: unknown) =>
        e instanceof ArchiveError && e.entry === layer.name &&
        /named sha256:[a-f0-9]{64}, but its diffID/.test(e.message),
    );
  });

  it("a blob whose SHA-256 is not its name, a truncated stream, and not a tar: clear errors", async () => {
    const image = syntheticImage([base, app], { gzip: true });
    const entries = docker25SaveEntries(image, "a/b", "1");
    const name = `blobs/sha256/${image.layerDigests[1].slice(7)}`;
    const corrupt = image.layers[1].slice();
    corrupt[corrupt.length - 9] ^= 0xff;
    const { bytes } = await tarOf(
      entries.map((e) => e.name === name ? { ...e, data: corrupt } : e),
    );
    await assert.rejects(
      readStreamed(bytes),
      (e: unknown) =>
        e instanceof ArchiveError && e.entry === name &&
        /not the sha256:.* its name says/.test(e.message),
    );
    const whole = (await tarOf(legacySaveEntries(syntheticImage([base, app]), ["a/b:1"]))).bytes;
    const cut = whole.slice(0, 2048 + 700);
    await assert.rejects(
      readStreamed(cut),
      (e: unknown) => e instanceof ArchiveError && /truncated/.test(e.message),
    );
    await assert.rejects(
      readStreamed(new TextEncoder().encode("this is not an archive".repeat(40))),
      (e: unknown) => e instanceof ArchiveError && /not a tar archive/.test(e.message),
    );
  });

  it("a 256 MiB layer passes with bounded memory (never held whole)", async () => {
    const size = 256 * 1024 * 1024;
    const header = encodeTarHeader({ name: "big/layer.tar", size });
    // A tar of one entry whose data is itself a tar (header + zeros), served in pieces.
    const inner = encodeTarHeader({ name: "zeros", size: size - 1024 - 512 });
    let served = 0;
    const total = 512 + size + 1024;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (served >= total) return controller.close();
        let chunk: Uint8Array;
        if (served === 0) chunk = header;
        else if (served === 512) chunk = inner;
        else chunk = new Uint8Array(Math.min(1 << 20, total - served));
        served += chunk.length;
        controller.enqueue(chunk);
      },
    });
    const before = heapUsed();
    let peak = 0;
    let count = 0;
    await assert.rejects(
      readArchiveStream(stream, {
        location: "standard input",
        sendLayer: async (data) => {
          for await (const chunk of data) {
            count += chunk.length;
            peak = Math.max(peak, heapUsed() - before);
          }
          return { mediaType: "x", digest: "sha256:" + "0".repeat(64), size: count };
        },
      }),
      /manifest.json/, // no catalog in this archive: it ends in a clear error
    );
    assert.equal(count, size);
    assert.ok(peak < 64 * 1024 * 1024, `heap grew by ${peak} bytes while a layer streamed`);
  });

  it("the CLI: --input - on a terminal (nothing piped) says so instead of waiting", async () => {
    const push = [...cliCommand(), "push", "-q", "--input", "-", "a/b:1", "image:tty:1"];
    // `script` gives the command a terminal as standard input.
    const result = await run("script", ["-qec", push.map((a) => `'${a}'`).join(" "), "/dev/null"], {
      check: false,
      env: { APOLO_REGISTRY: "http://127.0.0.1:9", APOLO_OWNER: "a", APOLO_CLUSTER: "default" },
      timeoutMs: 60_000,
    });
    assert.equal(result.code, 1);
    assert.match(result.stdout, /standard input is a terminal; pipe an archive into it/);
  });

  it(
    "the CLI: a corrupt archive on standard input fails in one line and tags nothing; intact, it goes up",
    {
      skip: !registryAvailable,
    },
    async () => {
      const registry: RunningRegistry = await startRegistry();
      try {
        const image = syntheticImage([base, app]);
        const entries = legacySaveEntries(image, ["a/b:1"]);
        const layer = entries.filter((e) => e.name.endsWith("/layer.tar"))[0];
        const broken = base.slice();
        broken[100] ^= 0xff;
        const { path } = await tarOf(entries.map((e) => e === layer ? { ...e, data: broken } : e));
        const push = [...cliCommand(), "push", "-q", "--input", "-", "a/b:1", "image:bad:1"];
        const quoted = push.map((a) => `'${a}'`).join(" ");
        const result = await run("bash", ["-c", `cat '${path}' | ${quoted}`], {
          check: false,
          env: {
            APOLO_REGISTRY: registry.url,
            APOLO_OWNER: "alice",
            APOLO_CLUSTER: "default",
            XDG_CACHE_HOME: join(dir, "cache"),
          },
        });
        assert.equal(result.code, 1);
        assert.match(result.stderr, /standard input: .*layer\.tar: .*diffID/);
        assert.doesNotMatch(result.stderr, /\n\s+at /, "no stack trace");
        const tag = await fetch(`${registry.url}/v2/alice/bad/manifests/1`, { method: "HEAD" });
        assert.equal(tag.status, 404);
        // The same archive intact goes up, saying how each layer goes as it passes.
        const { path: good } = await tarOf(entries);
        const plain = push.map((a) => a === "-q" ? "--progress=plain" : a);
        const pushed = await run("bash", [
          "-c",
          `cat '${good}' | ${plain.map((a) => `'${a}'`).join(" ")}`,
        ], {
          env: {
            APOLO_REGISTRY: registry.url,
            APOLO_OWNER: "alice",
            APOLO_CLUSTER: "default",
            XDG_CACHE_HOME: join(dir, "cache"),
          },
        });
        assert.match(pushed.stdout + pushed.stderr, /Pushed/);
        const config = await run("skopeo", [
          "inspect",
          "--config",
          "--raw",
          "--tls-verify=false",
          `docker://${new URL(registry.url).host}/alice/bad:1`,
        ]);
        assert.deepEqual(config.stdoutBytes, image.config);
      } finally {
        await registry.stop();
      }
    },
  );
});
