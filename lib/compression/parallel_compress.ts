/**
 * Compression on every core: a layer is cut into fixed-size blocks, each compressed in a
 * worker into an independent gzip member (or zstd frame), and the members are joined in
 * order, as pigz does. Every gzip and zstd reader accepts concatenated members, the
 * output is deterministic for the same input and settings, and one big layer uses every
 * core instead of one.
 *
 * @module
 */

import { availableParallelism } from "node:os";
import process from "node:process";
import zlib from "node:zlib";
import { ImagesError } from "../errors.ts";
import { compressStream } from "./compress.ts";
import {
  defaultLevel,
  type GzipEngine,
  type GzipEngineChoice,
  isNativeEngine,
  type LayerCompression,
} from "./engines.ts";
import { compressWorkerSource } from "./compress_worker.ts";
import { GzipEngines } from "./gzip_engines.ts";
import { gzipMemberAsync, type GzipScratch, type NativeGzip } from "./native_gzip.ts";
import { markDisposable, noteGarbage } from "../gc.ts";
import {
  adoptChunk,
  CHUNK_SIZE,
  giveChunk,
  type OwnedChunk,
  ownedCopy,
  takeChunk,
  transferredChunk,
} from "../chunk_pool.ts";

/** Uncompressed bytes per block: large enough that the ratio loss is negligible. */
export const BLOCK_SIZE: number = CHUNK_SIZE;

/**
 * Blocks each worker gets for every one the calling thread compresses, by engine. The
 * calling thread also reads, hashes and sends everything, so an equal share made it the
 * bottleneck with the workers half idle: with zlib two to one measured 15 % faster end to
 * end without the network and 8 % faster on a push (Deno), the same on Bun's push. With
 * WebAssembly three to one left the two cores idle 1.0 s of a push instead of 1.3 (Deno;
 * the registry takes its share of them too). A native engine is fast enough that the
 * workers alone keep up: the calling thread then takes none (push 9.7 → 8.1 s on Deno,
 * 7.9 → 7.3 s on Bun; bench/README.md).
 */
const WORKER_TURNS: Readonly<Record<"zlib" | "libdeflate-wasm", number>> = {
  zlib: 2,
  "libdeflate-wasm": 3,
};

/** How a pool compresses a layer, settled before its first block. */
export interface CompressionPlan {
  /** The engine: a native library, WebAssembly, or zlib (always zlib for zstd). */
  engine: GzipEngine;
  /** The level used, on the engine's scale. */
  level: number;
  /**
   * Names everything that decides the compressed bytes (format, level, block scheme,
   * engine and its build), for caches that must only match the same bytes.
   */
  settings: string;
}

/** Options of a {@linkcode CompressorPool}. */
export interface CompressorPoolOptions {
  /**
   * What compresses gzip (default `auto`: ISA-L, libdeflate, libdeflate as WebAssembly or
   * zlib, the first that runs).
   */
  gzipEngine?: GzipEngineChoice;
}

interface Pending {
  resolve(bytes: Uint8Array): void;
  reject(error: Error): void;
}

/**
 * A pool of compression workers, shared by every layer of a push. Workers start on
 * first use and stop when the last user releases the pool, so nothing keeps the
 * process alive.
 *
 * @example
 * ```ts
 * import { ownedCopy } from "../chunk_pool.ts";
 * import { CompressorPool } from "./parallel_compress.ts";
 * const pool = new CompressorPool();
 * pool.acquire();
 * const gz = await pool.compress(ownedCopy(new Uint8Array(10)), "gzip", 6);
 * pool.release();
 * ```
 */
export class CompressorPool {
  readonly #size: number;
  #workers: Worker[] = [];
  /** Workers already handed libdeflate's WebAssembly module. */
  readonly #wasmWorkers = new WeakSet<Worker>();
  #next = 0;
  #ids = 0;
  #users = 0;
  #url?: string;
  #failure?: Error;
  readonly #pending = new Map<number, Pending>();
  readonly #engines: GzipEngines;
  /** Output memory of native calls in progress on the runtime's threads, kept for reuse. */
  readonly #scratches: GzipScratch[] = [];
  /** Native calls in progress on the runtime's threads, and those waiting for a turn. */
  #threadCalls = 0;
  readonly #waitingCalls: (() => void)[] = [];
  #closeWhenIdle = false;
  /** Streams compressing on the pool now: they share its lanes (see `depth`). */
  #streams = 0;
  /** Counts releases, so a stream opened before the last one cannot close one after it. */
  #cycle = 0;

  /**
   * @param size workers to run. The calling thread takes a share of the blocks too, so
   * the default is one worker fewer than there are cores (at least one, at most 7): each
   * worker is a whole JavaScript runtime, and memory counts as much as cores here.
   */
  constructor(
    size: number = Math.min(7, Math.max(1, availableParallelism() - 1)),
    options: CompressorPoolOptions = {},
  ) {
    this.#size = size;
    this.#engines = new GzipEngines(options.gzipEngine);
  }

  /**
   * Settles how layers are compressed: gzip on the engine the pool was given (by
   * default the fastest that runs, at its own default level unless `level` is given);
   * zstd on zlib.
   */
  async plan(format: LayerCompression, level?: number): Promise<CompressionPlan> {
    const blocks = `blocks-${BLOCK_SIZE}`;
    if (format === "zstd") {
      const used = level ?? defaultLevel("zstd");
      return {
        engine: "zlib",
        level: used,
        settings: `zstd-${used}-${blocks}-zlib-${process.versions.zlib}`,
      };
    }
    const chosen = await this.#engines.choose(level);
    return {
      engine: chosen.engine,
      level: chosen.level,
      settings: `gzip-${chosen.level}-${blocks}-${chosen.fingerprint}`,
    };
  }

  /** Lanes compressing at once: the workers and the calling thread. */
  get size(): number {
    return this.#size + 1;
  }

  /**
   * Blocks a stream keeps waiting for compression besides the one it just handed over:
   * the lanes, shared among the streams compressing at once. One stream alone keeps every
   * lane busy; three layers of a push at once on two lanes keep one each (each block
   * waiting is 512 KiB, and more of them than lanes only wait longer: a push without FFI
   * peaked at 97–100 MiB on Deno instead of 101–103, at the same speed, bench/README.md).
   */
  get depth(): number {
    return Math.max(1, Math.ceil(this.size / Math.max(1, this.#streams)));
  }

  /** Counts a stream as compressing until the returned function is called (once or more). */
  openStream(): () => void {
    this.#streams++;
    const cycle = this.#cycle;
    let open = true;
    return () => {
      if (open && cycle === this.#cycle) this.#streams--;
      open = false;
    };
  }

  /** A block buffer of {@linkcode BLOCK_SIZE} bytes: a returned one if any, else a new one. */
  takeBlock(): OwnedChunk {
    return takeChunk();
  }

  /** Returns a block buffer for reuse (allocating fewer buffers keeps memory flat). */
  giveBlock(block: OwnedChunk): void {
    giveChunk(block);
  }

  /** Marks a user of the pool; pair with {@linkcode CompressorPool.release}. */
  acquire(): void {
    this.#users++;
    this.#closeWhenIdle = false;
  }

  /** Ends one use; the last one stops the workers. */
  release(): void {
    if (--this.#users > 0) return;
    this.#users = 0;
    this.#streams = 0;
    this.#cycle++;
    for (const worker of this.#workers) worker.terminate();
    this.#workers = [];
    // Native calls still running on the runtime's threads (a failed or cancelled push
    // leaves some) use the libraries: they are unloaded once the last one returns.
    if (this.#threadCalls > 0) this.#closeWhenIdle = true;
    else this.#engines.close();
    if (this.#url) URL.revokeObjectURL(this.#url);
    this.#url = undefined;
    this.#failure = undefined;
    for (const pending of this.#pending.values()) {
      pending.reject(new ImagesError("compression workers stopped", "COMPRESSION_FAILED"));
    }
    this.#pending.clear();
  }

  #start(): void {
    const url = URL.createObjectURL(
      new Blob([compressWorkerSource()], { type: "text/javascript" }),
    );
    for (let i = 0; i < this.#size; i++) {
      const worker = new Worker(url, { type: "module" });
      worker.onmessage = (event: MessageEvent) => {
        const { id, block, length, error } = event.data;
        // A member written back into its block (`length` bytes) gets memory of its own
        // size here, and the block goes back to the pool.
        const bytes = length === undefined ? event.data.bytes : block.slice(0, length);
        if (block) this.giveBlock(transferredChunk(block));
        const pending = this.#pending.get(id);
        this.#pending.delete(id);
        if (error !== undefined) {
          pending?.reject(new ImagesError(`compression failed: ${error}`, "COMPRESSION_FAILED"));
        } else pending?.resolve(bytes);
      };
      worker.onerror = (event: ErrorEvent) => {
        event.preventDefault?.();
        const failure = new ImagesError(
          `compression worker failed: ${event.message}`,
          "COMPRESSION_FAILED",
        );
        // A broken worker answers nothing more: fail what waits and what comes.
        this.#failure = failure;
        for (const pending of this.#pending.values()) pending.reject(failure);
        this.#pending.clear();
      };
      this.#workers.push(worker);
    }
    // Bun reads the Blob URL after the constructor returns: revoke it when stopping.
    this.#url = url;
  }

  /**
   * Compresses one block into a complete gzip member or zstd frame: in a worker, or (with
   * zlib or WebAssembly, one block in `WORKER_TURNS × workers + 1`) right here, so the calling
   * thread's core works too. An `engine` other than zlib must come from a
   * {@linkcode CompressorPool.plan}. The block belongs to the pool afterwards (it is reused
   * or transferred): the caller keeps no view of it.
   */
  compress(
    block: OwnedChunk,
    format: LayerCompression,
    level: number,
    engine: GzipEngine = "zlib",
  ): Promise<Uint8Array> {
    if (this.#failure) return Promise.reject(this.#failure);
    const used: GzipEngine = format === "gzip" ? engine : "zlib";
    const native = isNativeEngine(used);
    const library = native ? this.#engines.native(used) : undefined;
    const wasmModule = used === "libdeflate-wasm" ? this.#engines.wasmModule() : undefined;
    if ((native && !library) || (used === "libdeflate-wasm" && !wasmModule)) {
      return Promise.reject(
        new ImagesError(`compression failed: ${used} is not loaded`, "COMPRESSION_FAILED"),
      );
    }
    if (library?.compressAsync) return this.#onRuntimeThread(library, block, level);
    if (this.#workers.length === 0) this.#start();
    // The block's CRC-32 on zlib, before the block leaves: 5–7 times WebAssembly's speed.
    const crc = used === "libdeflate-wasm" ? zlib.crc32(block) : undefined;
    const turns = isNativeEngine(used) ? this.#size : this.#size * WORKER_TURNS[used] + 1;
    const turn = this.#next++ % turns;
    const lane = turn === turns - 1 && !native ? this.#size : turn % this.#size;
    if (lane === this.#size) {
      try {
        const gzip = format === "gzip" ? this.#engines.gzip(used) : undefined;
        const compressed = gzip
          ? gzip.member(block, level, crc)
          : compressBlock(block, format, level);
        this.giveBlock(block);
        return Promise.resolve(compressed);
      } catch (e) {
        return Promise.reject(
          new ImagesError(`compression failed: ${(e as Error).message}`, "COMPRESSION_FAILED"),
        );
      }
    }
    const id = this.#ids++;
    const worker = this.#workers[lane];
    // A worker's first WebAssembly job brings the compiled module (its code is shared).
    const firstWasm = wasmModule && !this.#wasmWorkers.has(worker);
    if (firstWasm) this.#wasmWorkers.add(worker);
    return new Promise<Uint8Array>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      const job = {
        id,
        data: block,
        format,
        level,
        engine: used,
        wasmModule: firstWasm ? wasmModule : undefined,
        crc,
      };
      worker.postMessage(job, [block.buffer as ArrayBuffer]);
    });
  }

  /**
   * Compresses on a thread of the runtime's own pool (Deno's nonblocking FFI): no worker,
   * so no second JavaScript runtime in memory (about 20 MiB on Deno). Two calls more run
   * at once than there would be workers, so those threads never wait on this busy one to
   * hand them the next block (measured: one per worker made Deno's push 8.9 s, not 8.3).
   */
  async #onRuntimeThread(
    library: NativeGzip,
    block: OwnedChunk,
    level: number,
  ): Promise<Uint8Array> {
    if (this.#threadCalls < this.#size + 2) this.#threadCalls++;
    else await new Promise<void>((resolve) => this.#waitingCalls.push(resolve)); // handed a turn
    const scratch = this.#scratches.pop() ?? {};
    try {
      // The member gets memory of its own size and the block goes back for the next read:
      // garbage, and so collections, shrink to 0.4 of what they would be (Deno's push:
      // 6.4 s instead of 8.0 s, bench/README.md).
      const member = await gzipMemberAsync(library, block, level, scratch);
      this.giveBlock(block);
      return member;
    } catch (e) {
      throw new ImagesError(`compression failed: ${(e as Error).message}`, "COMPRESSION_FAILED");
    } finally {
      this.#scratches.push(scratch);
      const next = this.#waitingCalls.shift();
      if (next) next();
      else if (--this.#threadCalls === 0 && this.#closeWhenIdle) {
        this.#closeWhenIdle = false;
        this.#engines.close();
      }
    }
  }
}

/**
 * Compresses a block on this thread: what a worker does, for the calling thread's share.
 *
 * @example
 * ```ts
 * import { compressBlock } from "./parallel_compress.ts";
 * const gz = compressBlock(new Uint8Array(100), "gzip", 1);
 * ```
 */
export function compressBlock(
  block: Uint8Array,
  format: LayerCompression,
  level: number,
): Uint8Array {
  const out = format === "gzip"
    ? zlib.gzipSync(block, { level })
    : zlib.zstdCompressSync(block, { params: { [zlib.constants.ZSTD_c_compressionLevel]: level } });
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** Whether this runtime can start module workers (Deno and Bun can). */
function workersAvailable(): boolean {
  return typeof Worker === "function";
}

/**
 * A stream that compresses in parallel on `pool`, in blocks of {@linkcode BLOCK_SIZE};
 * without workers it falls back to one-thread streaming compression (same format, other
 * bytes). At most `pool.depth + 1` blocks of a stream are in flight, so memory stays small.
 * Whole chunks from a file stream (lib/chunk_pool.ts) are taken over as blocks instead of
 * copied: they are empty afterwards for anyone still holding them.
 *
 * @example
 * ```ts
 * import { CompressorPool, parallelCompressStream } from "./parallel_compress.ts";
 * const pool = new CompressorPool(2);
 * pool.acquire();
 * const gz = new Blob(["hello"]).stream().pipeThrough(parallelCompressStream(pool, "gzip"));
 * console.log((await new Response(gz).arrayBuffer()).byteLength);
 * pool.release();
 * ```
 */
export function parallelCompressStream(
  pool: CompressorPool,
  format: LayerCompression,
  level: number = defaultLevel(format),
  engine: GzipEngine = "zlib",
): TransformStream<Uint8Array, Uint8Array> {
  if (!workersAvailable()) return compressStream(format, { level });
  const inFlight: Promise<Uint8Array>[] = [];
  let block = pool.takeBlock();
  let filled = 0;
  let blocks = 0;
  // Counted among the pool's streams from its first bytes to its end, failure or cancel.
  let close: (() => void) | undefined;
  const dispatch = (data: OwnedChunk) => {
    blocks++;
    const job = pool.compress(data, format, level, engine);
    // A failed block fails the stream when awaited in order (caught here so the rejection
    // is never unhandled).
    job.catch(() => close?.());
    inFlight.push(job);
  };
  const drain = async (
    controller: TransformStreamDefaultController<Uint8Array>,
    keep: number,
  ) => {
    while (inFlight.length > keep) {
      const bytes = await inFlight.shift()!;
      noteGarbage(bytes.byteLength);
      markDisposable(bytes);
      controller.enqueue(bytes);
    }
  };
  const addChunk = async (
    chunk: Uint8Array,
    controller: TransformStreamDefaultController<Uint8Array>,
  ) => {
    // A whole pooled chunk read from a file becomes the block itself: no copy.
    const owned = filled === 0 ? adoptChunk(chunk) : undefined;
    if (owned) {
      dispatch(owned);
      await drain(controller, pool.depth);
      return;
    }
    let at = 0;
    while (at < chunk.byteLength) {
      const take = Math.min(BLOCK_SIZE - filled, chunk.byteLength - at);
      block.set(chunk.subarray(at, at + take), filled);
      filled += take;
      at += take;
      if (filled === BLOCK_SIZE) {
        dispatch(block);
        block = pool.takeBlock();
        filled = 0;
        await drain(controller, pool.depth);
      }
    }
  };
  return new TransformStream<Uint8Array, Uint8Array>({
    async transform(chunk, controller) {
      close ??= pool.openStream();
      try {
        await addChunk(chunk, controller);
      } catch (error) {
        close();
        throw error;
      }
    },
    async flush(controller) {
      try {
        // An empty layer still becomes one valid (empty) member.
        if (filled > 0 || blocks === 0) dispatch(ownedCopy(block.subarray(0, filled)));
        pool.giveBlock(block);
        await drain(controller, 0);
      } finally {
        close?.();
      }
    },
    cancel() {
      close?.();
    },
  });
}
