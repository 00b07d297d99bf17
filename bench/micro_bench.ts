/**
 * Micro-benchmarks of the work a push or pull is made of, on the benchmark's synthetic
 * content (./content.ts):
 *
 * - indexing a tar with many entries (`TarIndex.open`, headers only);
 * - SHA-256 streaming with `node:crypto`, at two chunk sizes;
 * - compression and decompression through `compressStream`/`decompressStream`
 *   (gzip 1/2/3/4/6/9, zstd 1/3/9), the output ratio in each name;
 * - gzip in independent blocks of `BLOCK_SIZE`, as a push compresses: zlib 1/2/3/6,
 *   libdeflate as WebAssembly 1/2, and the native engines where they load (ISA-L 1/3,
 *   libdeflate 1/2/6).
 *
 * Divide the bytes in a name by the time per iteration for the throughput.
 *
 * ```sh
 * deno bench --allow-all bench/micro_bench.ts
 * ```
 *
 * @module
 */

import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import zlib from "node:zlib";
import { TarIndex } from "../lib/archive/tar_index.ts";
import { compressStream, decompressStream } from "../lib/compression/compress.ts";
import { BLOCK_SIZE, compressBlock } from "../lib/compression/parallel_compress.ts";
import { GzipEngines } from "../lib/compression/gzip_engines.ts";
import { gzipMember } from "../lib/compression/native_gzip.ts";
import type { GzipEngine, LayerCompression } from "../lib/compression/engines.ts";
import { ContentStream, layerChunks, planLayer } from "./content.ts";

const MIB = 1024 * 1024;

/** A stream of `data` in chunks of `chunkSize` bytes. */
function chunked(data: Uint8Array, chunkSize = MIB): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= data.length) return controller.close();
      controller.enqueue(data.subarray(at, at + chunkSize));
      at += chunkSize;
    },
  });
}

/** Reads a stream to its end; returns the bytes it carried. */
async function drain(stream: ReadableStream<Uint8Array>): Promise<number> {
  let total = 0;
  for await (const chunk of stream) total += chunk.length;
  return total;
}

// A tar of many small files, like a layer of a real image (data is skipped by the index).
const tarPath = join(tmpdir(), `bench-index-${Deno.pid}.tar`);
const plan = planLayer("index", 256 * MIB, {
  minFile: 64,
  maxFile: 32 * 1024,
  filesPerDirectory: 100,
});
{
  const file = await open(tarPath, "w");
  for (const chunk of layerChunks(plan)) await file.write(chunk);
  await file.close();
}
globalThis.addEventListener("unload", () => Deno.removeSync(tarPath)); // also after a failure

Deno.bench({
  name: `tar index: ${plan.entries.length} entries, ${(plan.size / MIB).toFixed(0)} MiB`,
  group: "tar",
  n: 10,
  async fn() {
    const index = await TarIndex.open(tarPath);
    await index.close();
  },
});

const content = new Uint8Array(64 * MIB);
new ContentStream("micro").fill(content);

for (const chunkSize of [64 * 1024, MIB]) {
  Deno.bench({
    name: `sha256: 64 MiB in ${chunkSize / 1024} KiB chunks`,
    group: "sha256",
    n: 10,
    fn() {
      const hash = createHash("sha256");
      for (let at = 0; at < content.length; at += chunkSize) {
        hash.update(content.subarray(at, at + chunkSize));
      }
      hash.digest();
    },
  });
}

const sample = content.subarray(0, 16 * MIB);
const cases: [LayerCompression, number][] = [
  ["gzip", 1],
  ["gzip", 2],
  ["gzip", 3],
  ["gzip", 4],
  ["gzip", 6],
  ["gzip", 9],
  ["zstd", 1],
  ["zstd", 3],
  ["zstd", 9],
];
for (const [format, level] of cases) {
  const packed = format === "gzip"
    ? zlib.gzipSync(sample, { level })
    : zlib.zstdCompressSync(sample, {
      params: { [zlib.constants.ZSTD_c_compressionLevel]: level },
    });
  const ratio = (packed.length / sample.length).toFixed(3);
  Deno.bench({
    name: `compress ${format}-${level}: 16 MiB → ratio ${ratio}`,
    group: "compress",
    n: 5,
    warmup: 1,
    async fn() {
      await drain(chunked(sample).pipeThrough(compressStream(format, { level })));
    },
  });
  if (level === (format === "gzip" ? 6 : 3)) {
    Deno.bench({
      name: `decompress ${format}-${level}: 16 MiB`,
      group: "decompress",
      n: 5,
      warmup: 1,
      async fn() {
        await drain(chunked(new Uint8Array(packed)).pipeThrough(decompressStream(format)));
      },
    });
  }
}

// What a push does: every block its own gzip member, on one core (the pool runs one such
// lane per core).
const blockKiB = BLOCK_SIZE / 1024;
const lanes: [GzipEngine, number][] = [
  ["zlib", 1],
  ["zlib", 2],
  ["zlib", 3],
  ["zlib", 6],
  ["libdeflate-wasm", 1],
  ["libdeflate-wasm", 2],
  ["isal", 1],
  ["isal", 3],
  ["libdeflate", 1],
  ["libdeflate", 2],
  ["libdeflate", 6],
];
for (const [engine, level] of lanes) {
  let compress = (block: Uint8Array) => compressBlock(block, "gzip", level);
  if (engine === "libdeflate-wasm") {
    const engines = new GzipEngines(engine);
    await engines.choose(level);
    const wasm = engines.wasm();
    compress = (block) => wasm.compress(block, level).slice();
  } else if (engine !== "zlib") {
    const engines = new GzipEngines(engine);
    const loaded = await engines.choose(level).then(() => true, () => false);
    const native = engines.native(engine);
    if (!loaded || !native) continue; // not installed here, or no FFI permission
    const scratch = {};
    compress = (block) => gzipMember(native, block, level, scratch);
  }
  let packed = 0;
  for (let at = 0; at < sample.length; at += BLOCK_SIZE) {
    packed += compress(sample.subarray(at, at + BLOCK_SIZE)).length;
  }
  Deno.bench({
    name: `compress gzip-${level} on ${engine} in ${blockKiB} KiB blocks: 16 MiB → ratio ${
      (packed / sample.length).toFixed(3)
    }`,
    group: "blocks",
    n: 5,
    warmup: 1,
    fn() {
      for (let at = 0; at < sample.length; at += BLOCK_SIZE) {
        compress(sample.subarray(at, at + BLOCK_SIZE));
      }
    },
  });
}
