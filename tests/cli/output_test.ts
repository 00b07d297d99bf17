/**
 * What the command line tells people and scripts: `--json` results and the final
 * `--progress json` event (parsed and checked against the registry and the files), every
 * command's `--help` listing all its options, `--version`, and clear errors at once (no
 * retries) for a plain-HTTP registry addressed with https, a port nobody listens on and
 * a certificate that is not trusted.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFile, stat } from "node:fs/promises";
import { createServer as createHttpServer } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { connect, createServer as createTcpServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import {
  makeCertificate,
  type RunningRegistry,
  startRegistry,
} from "../../testing/docker_registry.ts";
import { isBun, runCli } from "../../testing/cli.ts";
import { makeTempDir, removeTempDir } from "../../testing/fs.ts";
import { docker25SaveEntries, layerTar, syntheticImage, writeTar } from "../../testing/tools.ts";
import { optionNames } from "../../lib/cli/options.ts";
import { VERSION } from "../../lib/version.ts";

const listen = (server: Server): Promise<number> =>
  new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve((server.address() as { port: number }).port));
  });
/**
 * Closes `server` after destroying `sockets`, waiting at most 5 s: a TLS server whose
 * handshake the client refused may never see that connection end (seen on Deno with the
 * whole suite running), and `close` waits for every connection.
 */
async function close(server: Server, sockets: Iterable<Socket> = []): Promise<void> {
  for (const socket of sockets) socket.destroy();
  (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    new Promise((resolve) => server.close(resolve)),
    new Promise((resolve) => timer = setTimeout(resolve, 5000)),
  ]);
  clearTimeout(timer);
}

/** A TCP front to `port` counting the connections made to it (runtimes differ in the events a TLS server emits). */
async function countingFront(port: number) {
  const front = { connections: 0, port: 0, server: createTcpServer(), sockets: new Set<Socket>() };
  front.server.on("connection", (socket) => {
    front.connections++;
    const back = connect(port, "127.0.0.1");
    front.sockets.add(socket).add(back);
    socket.pipe(back).pipe(socket);
    socket.on("error", () => back.destroy());
    back.on("error", () => socket.destroy());
  });
  front.port = await listen(front.server);
  return front;
}

describe("CLI results, help and connection errors", () => {
  let registry: RunningRegistry;
  let dir: string;
  let env: Record<string, string>;
  let archive: string;
  let layerBytes: number;

  before(async () => {
    [registry, dir] = await Promise.all([startRegistry(), makeTempDir("apolo-output")]);
    env = {
      APOLO_REGISTRY: registry.url,
      APOLO_OWNER: "alice",
      XDG_CACHE_HOME: join(dir, "cache"),
    };
    const image = syntheticImage([
      layerTar({ "a.txt": "a".repeat(50_000) }),
      layerTar({ "b.txt": "b".repeat(20_000) }),
    ], { gzip: true });
    layerBytes = image.layers.reduce((sum, l) => sum + l.byteLength, 0);
    archive = join(dir, "app.tar");
    await writeTar(archive, docker25SaveEntries(image, "app", "1.0"));
  });

  after(async () => {
    await registry?.stop();
    if (dir) await removeTempDir(dir);
  });

  const cli = async (args: string[], extra: Record<string, string> = {}, code = 0) => {
    const result = await runCli(args, { ...env, ...extra });
    assert.equal(result.code, code, `apolo-images ${args.join(" ")}: ${result.stderr}`);
    return result;
  };

  it("push and pull --json: digest, references, paths and bytes a script can use", async () => {
    const pushed = JSON.parse(
      (await cli(["push", "--json", "--input", archive, "app:1.0", "image:app:json"])).stdout,
    );
    const digest = (await cli(["digest", "image:app:json"])).stdout.trim();
    assert.deepEqual(pushed, {
      image: "image://default/alice/app:json",
      digest,
      local: "app:1.0",
      input: archive,
      bytesSent: layerBytes,
    });
    const output = join(dir, "pulled.tar");
    const pulled = JSON.parse(
      (await cli(["pull", "--json", "image:app:json", "--output", output])).stdout,
    );
    assert.deepEqual(pulled, {
      image: "app:json",
      digest,
      remote: "image://default/alice/app:json",
      output,
      bytesReceived: layerBytes,
    });
    assert.ok((await stat(output)).size > layerBytes);
  });

  it("--progress json ends with a done event carrying the digest", async () => {
    const output = join(dir, "events.tar");
    const run = await cli(["pull", "--progress", "json", "image:app:json", "--output", output]);
    const events = run.stderr.trim().split("\n").map((line) => JSON.parse(line));
    assert.equal(events[0].event, "pull");
    const done = events.at(-1);
    assert.equal(done.event, "done");
    assert.equal(done.digest, (await cli(["digest", "image:app:json"])).stdout.trim());
    assert.equal(done.output, output);
    assert.equal(events.filter((e) => e.event === "done").length, 1);
  });

  it("every command's --help lists all its options; --version prints the version", async () => {
    // Every help line fits an 80-column terminal, where it is read.
    const fits = (help: string, command: string) => {
      for (const line of help.split("\n")) {
        assert.ok(line.length <= 80, `${command} --help: ${line.length} columns: ${line}`);
      }
    };
    fits((await cli(["--help"])).stdout, "apolo-images");
    for (const command of ["push", "pull", "digest", "rm", "ls", "tags", "size"] as const) {
      const help = (await cli([command, "--help"])).stdout;
      for (const name of optionNames(command)) {
        assert.match(help, new RegExp(`--${name}\\b`), `${command} --help lacks --${name}`);
      }
      fits(help, command);
    }
    const pushHelp = (await cli(["push", "--help"])).stdout;
    assert.match(pushHelp, /--concurrency N .*\(default 3\)/);
    const config = JSON.parse(await readFile(new URL("../../deno.json", import.meta.url), "utf8"));
    assert.equal(VERSION, config.version);
    assert.equal((await cli(["--version"])).stdout, `apolo-images ${VERSION}\n`);
  });

  it("https to a plain-HTTP registry: named as such, one connection, no retry", async () => {
    let connections = 0;
    const server = createHttpServer((_req, res) => res.end("{}"));
    server.on("connection", () => connections++);
    const port = await listen(server as unknown as Server);
    try {
      const run = await cli(["digest", "image:app:1"], {
        APOLO_REGISTRY: `https://127.0.0.1:${port}`,
      }, 1);
      assert.match(
        run.stderr,
        new RegExp(`127\\.0\\.0\\.1:${port} does not speak TLS .*http://127\\.0\\.0\\.1:${port}`),
      );
      assert.doesNotMatch(run.stderr, /retr|fetch failed|unexpected/);
      assert.equal(connections, 1);
    } finally {
      await close(server as unknown as Server);
    }
  });

  it("a port Deno's fetch blocks (6000): named, not retried", {
    skip: isBun ? "Bun's fetch blocks no port" : false,
  }, async () => {
    const run = await cli(
      ["digest", "image:app:1"],
      { APOLO_REGISTRY: "http://127.0.0.1:6000" },
      1,
    );
    assert.match(
      run.stderr,
      /fetch refuses port 6000 \(a port browsers block\); serve the registry/,
    );
    assert.doesNotMatch(run.stderr, /retr|fetch failed|unexpected/);
    assert.equal(run.stderr.trim().split("\n").length, 1);
  });

  it("a closed port: refused, naming host and port, not retried", async () => {
    const probe = createTcpServer();
    const port = await listen(probe);
    await close(probe);
    const run = await cli(["digest", "image:app:1"], {
      APOLO_REGISTRY: `http://127.0.0.1:${port}`,
    }, 1);
    assert.match(run.stderr, new RegExp(`127\\.0\\.0\\.1:${port} refused the connection`));
    assert.doesNotMatch(run.stderr, /retr|fetch failed|unexpected/);
    assert.equal(run.stderr.trim().split("\n").length, 1);
  });

  it("an untrusted certificate: refused with its reason, one connection", async () => {
    const { keyFile, certFile } = makeCertificate(dir, "/CN=127.0.0.1", [
      "-addext",
      "subjectAltName=IP:127.0.0.1",
    ]);
    const server = createHttpsServer({
      key: await readFile(keyFile),
      cert: await readFile(certFile),
    }, (_req, res) => res.end("{}"));
    const front = await countingFront(await listen(server as unknown as Server));
    try {
      const run = await cli(["digest", "image:app:1"], {
        APOLO_REGISTRY: `https://127.0.0.1:${front.port}`,
      }, 1);
      assert.match(
        run.stderr,
        new RegExp(`the TLS certificate of 127\\.0\\.0\\.1:${front.port} was refused: \\S`),
      );
      assert.match(run.stderr, /unknown authority|self-signed|CaUsedAsEndEntity/);
      assert.equal(front.connections, 1);
    } finally {
      await close(front.server, front.sockets);
      await close(server as unknown as Server);
    }
  });
});
