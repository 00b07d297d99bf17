/**
 * Pushing an archive read from a stream (`--input -`, or a gzip-compressed archive):
 * its layers are compressed and uploaded as they pass (see
 * ../archive/stream_input.ts); what comes back is a source and a blob cache that tell
 * the copy engine every layer is already there, so the copy only puts the config and
 * the manifest — the commit.
 *
 * @module
 */

import { createReadStream } from "node:fs";
import { open } from "node:fs/promises";
import process from "node:process";
import { Readable } from "node:stream";
import { type LocalSource, readArchiveStream } from "../archive/mod.ts";
import { ImagesError } from "../errors.ts";
import type { Descriptor } from "../oci/manifest.ts";
import { detectCompression, layerMediaType } from "../oci/media_types.ts";
import type { BlobCache } from "../blobcache/blob_cache.ts";
import type { LayerCompression } from "../compression/engines.ts";
import type { ImageDestination } from "../ends.ts";
import type { ImageProgressStep, StepStatus } from "../progress.ts";
import { type CompressorPool, parallelCompressStream } from "../compression/parallel_compress.ts";

/** Options of {@linkcode openStreamedInput}. */
export interface StreamedInputOptions {
  /** Compression of uncompressed layers. */
  compression: { format: LayerCompression; level?: number };
  /** The workers that compress (the copy engine uses the same, so settings agree). */
  compressors: CompressorPool;
  /** A cache on disk to record what layers became, if any. */
  blobCache?: Pick<BlobCache, "lookup" | "store">;
  /** Cancels reading and uploading. */
  signal?: AbortSignal;
  /** Told how each layer's upload goes (named by the hex in its entry's name). */
  onStep?: (step: ImageProgressStep) => void;
}

/**
 * Whether `--input` names a stream to read once: `-` (standard input) or a file starting
 * with gzip's magic bytes (`docker save | gzip > app.tar.gz`).
 *
 * @example
 * ```ts
 * import { isStreamedInput } from "./streamed_input.ts";
 * console.log(await isStreamedInput("-")); // true
 * ```
 */
export async function isStreamedInput(input: string | undefined): Promise<boolean> {
  if (input === "-") return true;
  if (input === undefined) return false;
  const handle = await open(input, "r").catch(() => undefined);
  if (!handle) return false; // the usual path reports what is wrong with it
  try {
    if (!(await handle.stat()).isFile()) return false;
    const head = new Uint8Array(2);
    await handle.read(head, 0, 2, 0);
    return head[0] === 0x1f && head[1] === 0x8b;
  } finally {
    await handle.close();
  }
}

/**
 * Reads the archive `input` names (`-` for standard input), uploading its layers into
 * `destination` as they pass; returns the source to copy from and the blob cache that
 * knows where each uncompressed layer went.
 *
 * @example
 * ```ts ignore
 * import { openStreamedInput } from "./streamed_input.ts";
 * const { source, blobCache } = await openStreamedInput("-", destination, options);
 * await copyImage(source, destination, { blobCache, compression, compressors });
 * ```
 */
export async function openStreamedInput(
  input: string,
  destination: ImageDestination,
  options: StreamedInputOptions,
): Promise<{ source: LocalSource; blobCache: Pick<BlobCache, "lookup" | "store"> }> {
  if (input === "-" && process.stdin.isTTY) {
    // Nothing is piped in: waiting for a terminal to type an archive helps no one.
    throw new ImagesError(
      "--input -: standard input is a terminal; pipe an archive into it (docker save IMAGE | ...)",
      "INPUT_INVALID",
    );
  }
  const { format, level } = options.compression;
  const pool = options.compressors;
  const plan = await pool.plan(format, level);
  const bytes = input === "-"
    ? Readable.toWeb(process.stdin)
    : Readable.toWeb(createReadStream(input));
  // Compressed layers go as they are; a tar is compressed as a file push would.
  const upload = async (
    data: ReadableStream<Uint8Array>,
    compression: ReturnType<typeof detectCompression>,
    signal?: AbortSignal,
  ) => {
    if (compression !== "none") {
      return await destination.putBlob(data, { mediaType: layerMediaType(compression, "oci") }, {
        signal,
      });
    }
    const compressed = data.pipeThrough(
      parallelCompressStream(pool, format, plan.level, plan.engine),
    );
    return await destination.putBlob(compressed, { mediaType: layerMediaType(format, "oci") }, {
      signal,
    });
  };
  const sendLayer = async (
    stream: ReadableStream<Uint8Array>,
    head: Uint8Array,
    entry: { name: string; size: number },
  ) => {
    const compression = detectCompression(head);
    const signal = options.signal;
    const layerId = /[a-f0-9]{12}/.exec(entry.name)?.[0] ?? entry.name;
    const step = (status: StepStatus, current: number) =>
      options.onStep?.({
        layerId,
        status,
        current,
        total: entry.size,
        message: `${status} ${current}/${entry.size}`,
      });
    let passed = 0;
    const data = stream.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          passed += chunk.length;
          step("Pushing", passed);
          controller.enqueue(chunk);
        },
      }),
    );
    step("Pushing", 0);
    const stored = await upload(data, compression, signal);
    step("Pushed", entry.size);
    return stored;
  };
  const { source, sent } = await readArchiveStream(bytes as ReadableStream<Uint8Array>, {
    location: input === "-" ? "standard input" : input,
    sendLayer,
    signal: options.signal,
  });
  const disk = options.blobCache;
  const blobCache = {
    lookup: async (uncompressed: string, settings: string): Promise<Descriptor | undefined> =>
      (settings === plan.settings ? sent.get(uncompressed) : undefined) ??
        await disk?.lookup(uncompressed, settings),
    store: async (uncompressed: string, settings: string, blob: Descriptor) =>
      await disk?.store(uncompressed, settings, blob),
  };
  // Record what the streamed layers became, so a push of the same layers from a file
  // finds them too.
  for (const [digest, stored] of sent) {
    if (stored.digest !== digest) await disk?.store(digest, plan.settings, stored);
  }
  return { source, blobCache };
}
