/**
 * The command line as people watch it: under a real pseudo-terminal (tmux) at 80 and 60
 * columns, resized while it runs, and piped as in CI logs, through a slow link to the
 * real registry, with the permissions README gives (Deno; Bun runs the same commands).
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { type RunningRegistry, startRegistry } from "../../testing/docker_registry.ts";
import { startSlowLink } from "../../testing/slow_link.ts";
import { startTerminal, type Terminal } from "../../testing/tmux.ts";
import { cliCommand, runCli } from "../../testing/cli.ts";
import { makeTempDir, removeTempDir } from "../../testing/fs.ts";
import {
  commandExists,
  docker25SaveEntries,
  layerTar,
  syntheticImage,
  writeTar,
} from "../../testing/tools.ts";

const hasTmux = await commandExists("tmux");

/** Layer sizes, MB: one big enough to be watched moving over the slow link. */
const LAYER_MB = [3, 1, 0.5];
/** The slow link's bandwidth each way, bytes/s. */
const BANDWIDTH = 1_000_000;

describe("the CLI at a terminal and in logs (tmux, slow link, docker-registry)", {
  skip: hasTmux ? false : "tmux is not installed",
}, () => {
  let registry: RunningRegistry;
  let dir: string;
  let images = 0;

  before(async () => {
    [registry, dir] = await Promise.all([startRegistry(), makeTempDir("apolo-terminal")]);
  });

  after(async () => {
    await registry?.stop();
    if (dir) await removeTempDir(dir);
  });

  /** A new image of incompressible layers (nothing the registry has); its archive and ids. */
  const newImage = async () => {
    const layers = LAYER_MB.map((mb) =>
      layerTar({ "data.bin": new Uint8Array(randomBytes(mb * 1_000_000)) })
    );
    const image = syntheticImage(layers, { gzip: true });
    const archive = join(dir, `image-${++images}.tar`);
    await writeTar(archive, docker25SaveEntries(image, "app", "1.0"));
    return { archive, ids: image.layerDigests.map((d) => d.slice(7, 19)) };
  };

  /** Runs `args` in a terminal, reading its screen every 300 ms until it ends. */
  const watch = async (
    columns: number,
    permissions: string[],
    args: string[],
    link: { url: string },
    during?: (term: Terminal, screens: string[][]) => Promise<void>,
  ) => {
    const term = await startTerminal([...cliCommand(permissions), ...args], {
      columns,
      env: { APOLO_REGISTRY: link.url, APOLO_OWNER: "alice", XDG_CACHE_HOME: join(dir, "cache") },
    });
    try {
      const screens: string[][] = [];
      const ended = term.exited();
      let done = false;
      void ended.then(() => done = true, () => done = true);
      for (let i = 0; i < 400 && !done; i++) {
        screens.push(await term.screen());
        await during?.(term, screens);
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
      const code = await ended;
      return { code, screens, last: await term.screen() };
    } finally {
      await term.close();
    }
  };

  /** Every row is a layer line, the activity line or the result, and fits `columns`. */
  const checkRows = (screen: string[], columns: number, ids: string[], result: RegExp) => {
    for (const row of screen) {
      assert.ok([...row].length < columns, `row wider than ${columns - 1}: ${row}`);
      const id = row.match(/^([0-9a-f]{12}): /)?.[1];
      if (id) assert.ok(ids.includes(id), `unknown layer row: ${row}`);
      else assert.match(row, new RegExp(`^(Pushing|Pulling) |${result.source}`), row);
    }
  };

  /** The final screen: one line per layer in its final state, then the result. */
  const checkFinal = (screen: string[], ids: string[], state: string, result: RegExp) => {
    assert.equal(screen.length, ids.length + 1, `final screen:\n${screen.join("\n")}`);
    assert.deepEqual(
      screen.slice(0, -1).map((row) => row.split(": ")[0]).sort(),
      [...ids].sort(),
    );
    for (const row of screen.slice(0, -1)) {
      assert.match(row, new RegExp(`^[0-9a-f]{12}: ${state}$`));
    }
    assert.match(screen.at(-1)!, result);
  };

  it("push at 80 columns: lines fit, redraws in place, final screen = layers + result", async () => {
    const link = await startSlowLink({ target: registry.host, bytesPerSecond: BANDWIDTH });
    try {
      const { archive, ids } = await newImage();
      const result = /^image:\/\/default\/alice\/app:tty80$/;
      const { code, screens, last } = await watch(
        80,
        [
          `--allow-net=${link.host}`,
          `--allow-read=${archive}`,
          "--allow-env",
        ],
        ["push", "--input", archive, "app:1.0", "image:app:tty80"],
        link,
      );
      assert.equal(code, 0, last.join("\n"));
      const moving = screens.filter((s) => s.some((row) => /\[[= >]+\]/.test(row)));
      assert.ok(moving.length > 0, "no progress bar was ever seen");
      for (const screen of screens) checkRows(screen, 80, ids, result);
      checkFinal(last, ids, "Pushed", result);
    } finally {
      await link.close();
    }
  });

  it("pull at 60 columns, resized to 44 while it runs: still one row per layer", async () => {
    const { archive, ids } = await newImage();
    const pushed = await runCli(["push", "-q", "--input", archive, "app:1.0", "image:app:tty60"], {
      APOLO_REGISTRY: registry.url,
      APOLO_OWNER: "alice",
      XDG_CACHE_HOME: join(dir, "cache"),
    });
    assert.equal(pushed.code, 0, pushed.stderr);
    const link = await startSlowLink({ target: registry.host, bytesPerSecond: BANDWIDTH });
    try {
      const out = join(dir, "pulled");
      let resizedAt = -1; // screens read before the resize
      const result = /^app:tty60$/;
      const { code, screens, last } = await watch(
        60,
        [`--allow-net=${link.host}`, `--allow-read=${dir}`, `--allow-write=${dir}`, "--allow-env"],
        ["pull", "image:app:tty60", "--output", out + "/"],
        link,
        async (term, seen) => {
          if (resizedAt < 0 && seen.at(-1)!.some((row) => row.includes("Downloading"))) {
            await term.resize(44);
            resizedAt = seen.length;
          }
        },
      );
      assert.equal(code, 0, last.join("\n"));
      assert.ok(resizedAt >= 0, "the pull ended before it could be resized");
      // Until the CLI redraws for the new width (a busy machine may take longer than the
      // 300 ms between reads), tmux shows the old 60-column lines wrapped: the screens
      // from the resize up to the first that fits 44 columns are tmux's, not the CLI's.
      const redrawn = screens.findIndex((screen, i) =>
        i >= resizedAt && screen.every((row) => [...row].length < 44)
      );
      const drawnByCli = screens.filter((_, i) => i < resizedAt || (redrawn >= 0 && i >= redrawn));
      for (const screen of drawnByCli) checkRows(screen, 60, ids, result);
      checkFinal(last, ids, "Download complete", result);
      for (const row of last) assert.ok([...row].length < 44, row);
    } finally {
      await link.close();
    }
  });

  it("piped: a big layer shows intermediate progress lines", async () => {
    const { archive, ids } = await newImage();
    const env = { APOLO_OWNER: "alice", XDG_CACHE_HOME: join(dir, "cache") };
    const pushed = await runCli(["push", "-q", "--input", archive, "app:1.0", "image:app:piped"], {
      ...env,
      APOLO_REGISTRY: registry.url,
    });
    assert.equal(pushed.code, 0, pushed.stderr);
    const link = await startSlowLink({ target: registry.host, bytesPerSecond: BANDWIDTH });
    try {
      // A pull: the bytes it counts are the ones that came over the link (a push counts
      // what it handed to the socket, which loopback buffers swallow by megabytes).
      const output = join(dir, "piped.tar");
      const run = await runCli(
        ["pull", "image:app:piped", "--output", output],
        { ...env, APOLO_REGISTRY: link.url },
        undefined,
        [`--allow-net=${link.host}`, `--allow-read=${dir}`, `--allow-write=${dir}`, "--allow-env"],
      );
      assert.equal(run.code, 0, run.stderr);
      assert.ok(!run.stderr.includes("\u001b"), "escape sequences in a log");
      const big = ids[0];
      const partial = run.stderr.split("\n").filter((l) =>
        new RegExp(`^${big}: Downloading [0-9.]+[kMG]?B/[0-9.]+MB \\(([1-9]|[1-9][0-9])%\\)$`)
          .test(l)
      );
      assert.ok(partial.length >= 1, `no intermediate line for ${big}:\n${run.stderr}`);
      assert.match(run.stderr, new RegExp(`^${big}: Download complete`, "m"));
    } finally {
      await link.close();
    }
  });
});
