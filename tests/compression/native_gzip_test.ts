/**
 * gzip engines: ISA-L and libdeflate through FFI (CI installs Debian's libisal2 and
 * libdeflate0), libdeflate as WebAssembly, and zlib. Members are read back by node:zlib
 * and by GNU gzip.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { gunzipSync } from "node:zlib";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CompressorPool, parallelCompressStream } from "../../lib/compression/parallel_compress.ts";
import { BLOCK_SIZE } from "../../lib/compression/parallel_compress.ts";
import { GzipEngines } from "../../lib/compression/gzip_engines.ts";
import type { GzipEngine } from "../../lib/compression/engines.ts";
import { ownedCopy } from "../../lib/chunk_pool.ts";
import { sha256Digest } from "../../lib/oci/digest.ts";
import { readAll, streamOf } from "../../lib/streams.ts";
import { run } from "../../testing/tools.ts";
import { withTempDir } from "../../testing/fs.ts";
import { ContentStream } from "../../bench/content.ts";

/** Software-like bytes: runs that repeat, and noise that does not. */
const data = new Uint8Array(2 * BLOCK_SIZE + 54321).map((_, i) =>
  (i >> 14) % 3 === 0 ? (i * 2654435761) >>> 24 : (i % 97) ^ (i >> 16)
);

/** `data` compressed by `pool` as a push would (plan first, then blocks). */
async function compressWith(pool: CompressorPool, level?: number, input = data) {
  const plan = await pool.plan("gzip", level);
  const stream = streamOf(input).pipeThrough(
    parallelCompressStream(pool, "gzip", plan.level, plan.engine),
  );
  return { plan, bytes: await readAll(stream, 1e8, "compressed layer") };
}

describe("gzip engines", () => {
  const pools: CompressorPool[] = [];
  const poolOf = (gzipEngine: GzipEngine | "auto") => {
    const pool = new CompressorPool(2, { gzipEngine });
    pool.acquire();
    pools.push(pool);
    return pool;
  };
  after(() => pools.forEach((pool) => pool.release()));

  for (const engine of ["isal", "libdeflate", "libdeflate-wasm", "zlib"] as const) {
    it(`${engine}: node:zlib and GNU gzip read the members back; the same bytes every run`, async () => {
      const pool = poolOf(engine);
      const first = await compressWith(pool);
      const second = await compressWith(pool);
      assert.equal(first.plan.engine, engine);
      assert.match(
        first.plan.settings,
        new RegExp(`^gzip-${first.plan.level}-blocks-\\d+-${engine}-`),
      );
      assert.equal(sha256Digest(first.bytes), sha256Digest(second.bytes));
      assert.ok(first.bytes.byteLength < data.byteLength * 0.8, "it compressed");
      const gunzipped = await run("gzip", ["-dc"], { input: first.bytes });
      assert.equal(sha256Digest(gunzipped.stdoutBytes), sha256Digest(data));
      assert.equal(sha256Digest(gunzipSync(first.bytes)), sha256Digest(data));
    });
  }

  for (const engine of ["isal", "libdeflate", "libdeflate-wasm"] as const) {
    it(`${engine}: an empty layer is one valid empty member`, async () => {
      const pool = poolOf(engine);
      const plan = await pool.plan("gzip");
      const stream = streamOf(new Uint8Array(0)).pipeThrough(
        parallelCompressStream(pool, "gzip", plan.level, plan.engine),
      );
      const member = await readAll(stream, 1e6, "empty layer");
      assert.ok(member.byteLength > 0);
      assert.equal((await run("gzip", ["-dc"], { input: member })).stdoutBytes.byteLength, 0);
    });
  }

  it("a pool released while blocks compress finishes or refuses them, and crashes nothing", async () => {
    const pool = new CompressorPool(1, { gzipEngine: "libdeflate" });
    pool.acquire();
    const plan = await pool.plan("gzip");
    const jobs = Array.from(
      { length: 6 },
      () => pool.compress(ownedCopy(data.subarray(0, BLOCK_SIZE)), "gzip", plan.level, plan.engine),
    );
    pool.release(); // the library must stay loaded for calls already running
    for (const outcome of await Promise.allSettled(jobs)) {
      if (outcome.status === "fulfilled") {
        const back = await run("gzip", ["-dc"], { input: outcome.value });
        assert.equal(sha256Digest(back.stdoutBytes), sha256Digest(data.slice(0, BLOCK_SIZE)));
      } else assert.equal((outcome.reason as { code?: string }).code, "COMPRESSION_FAILED");
    }
    const again = await compressWith(poolOf("libdeflate")); // loads afresh after the unload
    assert.equal(again.plan.engine, "libdeflate");
  });

  it("auto takes ISA-L at its own level; a level given on gzip's scale goes to libdeflate", async () => {
    const pool = poolOf("auto");
    const fastest = await pool.plan("gzip");
    assert.deepEqual([fastest.engine, fastest.level], ["isal", 3]);
    const leveled = await pool.plan("gzip", 6);
    assert.deepEqual([leveled.engine, leveled.level], ["libdeflate", 6]);
    const zstd = await pool.plan("zstd");
    assert.deepEqual([zstd.engine, zstd.level], ["zlib", 3]);
  });

  it("engines make different bytes, so their cache settings differ", async () => {
    const isal = await compressWith(poolOf("isal"));
    const libdeflate = await compressWith(poolOf("libdeflate"));
    assert.notEqual(sha256Digest(isal.bytes), sha256Digest(libdeflate.bytes));
    assert.notEqual(isal.plan.settings, libdeflate.plan.settings);
  });

  it("libdeflate-wasm: a block makes the same member in a worker as on the calling thread", async () => {
    const pool = poolOf("libdeflate-wasm"); // 2 workers, and the calling thread every 7th block
    const blocks = Array.from({ length: 10 }, (_, i) => {
      const block = new Uint8Array(BLOCK_SIZE);
      block.set(data.subarray(i * 50_000, i * 50_000 + BLOCK_SIZE));
      return block;
    });
    const here = new GzipEngines("libdeflate-wasm");
    await here.choose();
    const plan = await pool.plan("gzip");
    const expected = blocks.map((block) => sha256Digest(here.wasm().compress(block, plan.level)));
    const members = await Promise.all(
      blocks.map((block) => pool.compress(ownedCopy(block), "gzip", plan.level, plan.engine)),
    );
    assert.deepEqual(members.map(sha256Digest), expected);
  });

  it("libdeflate-wasm: within 2 % of native libdeflate level 1's bytes on software-like content, another cache key", async () => {
    // Its build trades a little ratio for speed (one probe per position: build.sh), which
    // costs more on `data`'s short-period runs than on content like the benchmark's.
    const content = new Uint8Array(4 * BLOCK_SIZE + 54321);
    new ContentStream("gzip engines").fill(content);
    const wasm = await compressWith(poolOf("libdeflate-wasm"), undefined, content);
    const native = await compressWith(poolOf("libdeflate"), undefined, content);
    assert.equal(wasm.plan.level, 1);
    assert.equal(sha256Digest(gunzipSync(wasm.bytes)), sha256Digest(content));
    const ratio = wasm.bytes.byteLength / native.bytes.byteLength;
    assert.ok(ratio > 0.98 && ratio < 1.02, `wasm ÷ native bytes: ${ratio}`);
    assert.notEqual(wasm.plan.settings, native.plan.settings);
  });

  it("refuses an unknown engine and a level that is not a whole number 1–9, clearly", async () => {
    assert.throws(
      () => new GzipEngines("ISAL" as GzipEngine),
      /unknown gzip engine "ISAL": use one of auto, isal, libdeflate, libdeflate-wasm, zlib/,
    );
    for (const level of [2.5, 0, 15]) {
      const engines = new GzipEngines("auto");
      await assert.rejects(engines.choose(level), (error: Error & { code?: string }) => {
        assert.equal(error.code, "INVALID_ARGUMENT");
        assert.match(error.message, new RegExp(`gzip compression level ${level}: use a whole`));
        return true;
      });
      engines.close();
    }
  });

  it("refuses a level an engine does not have, naming both", async () => {
    const engines = new GzipEngines("isal");
    try {
      await assert.rejects(engines.choose(6), (error: Error & { code?: string }) => {
        assert.equal(error.code, "COMPRESSION_UNAVAILABLE");
        assert.match(error.message, /isal: ISA-L has no compression level 6/);
        return true;
      });
    } finally {
      engines.close();
    }
  });

  it("Deno without --allow-ffi: auto takes libdeflate-wasm; a named native engine is a clear error", async () => {
    await withTempDir(async (dir) => {
      const module = fileURLToPath(
        new URL("../../lib/compression/gzip_engines.ts", import.meta.url),
      );
      const script = join(dir, "choose.ts");
      await writeFile(
        script,
        `import { GzipEngines } from ${JSON.stringify(module)};
const auto = await new GzipEngines("auto").choose();
let named = "";
try { await new GzipEngines("libdeflate").choose(); } catch (e) { named = e.message; }
console.log(JSON.stringify({ auto: auto.engine, named }));`,
      );
      const result = await run("deno", ["run", "--allow-read", "--no-prompt", script]);
      const { auto, named } = JSON.parse(result.stdout);
      assert.equal(auto, "libdeflate-wasm");
      assert.match(
        named,
        /gzip engine libdeflate cannot run: libdeflate: libdeflate\.so\.0 did not load \(not installed, or Deno lacks --allow-ffi\)/,
      );
    });
  });
});
