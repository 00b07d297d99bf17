/**
 * Picks the gzip engine of a push ({@linkcode GzipEngines}): a native library loaded
 * through FFI (./native_gzip.ts: ISA-L or libdeflate), or one of the two that always run,
 * libdeflate built as WebAssembly (./wasm_gzip.ts) and zlib; each is checked on a sample
 * before use.
 *
 * @module
 */

import { createHash } from "node:crypto";
import process from "node:process";
import zlib from "node:zlib";
import { ImagesError } from "../errors.ts";
import {
  DEFAULT_LEVEL,
  GZIP_ENGINE_CHOICES,
  type GzipEngine,
  type GzipEngineChoice,
  isNativeEngine,
  type NativeEngine,
} from "./engines.ts";
import { ISAL_NAMES, openIsal } from "./isal.ts";
import { LIBDEFLATE_NAMES, openLibdeflate } from "./libdeflate.ts";
import { gzipMember, type NativeGzip } from "./native_gzip.ts";
import { libdeflateWasmModule, openWasmGzip, type WasmGzip } from "./wasm_gzip.ts";

/**
 * gzip on one engine, on this thread: the four engines behind one call, so choosing and
 * checking an engine, and the calling thread's share of a layer's blocks, need not know
 * which one runs.
 */
export interface BlockGzip {
  /** Which engine. */
  readonly engine: GzipEngine;
  /**
   * Compresses `block` at `level` (the engine's own scale) into one complete gzip member
   * in memory of its own; the block is left as it was. `crc`: the block's CRC-32 when the
   * caller has it (libdeflate as WebAssembly uses it instead of computing it; the bytes
   * are the same).
   */
  member(block: Uint8Array, level: number, crc?: number): Uint8Array;
}

/** gzip on `node:zlib`, which always runs. */
const ZLIB_GZIP: BlockGzip = {
  engine: "zlib",
  member(block, level) {
    const out = zlib.gzipSync(block, { level });
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  },
};

/** An engine settled for a push. */
export interface ChosenGzip {
  engine: GzipEngine;
  level: number;
  /** Names the engine's exact output at `level` (build included), for caches. */
  fingerprint: string;
}

/** Where each native library is looked for. */
const LIBRARY_NAMES: Record<NativeEngine, readonly string[]> = {
  isal: ISAL_NAMES,
  libdeflate: LIBDEFLATE_NAMES,
};

/** How each native library is opened. */
const OPENERS = { isal: openIsal, libdeflate: openLibdeflate };

/**
 * The gzip engines of a process (or of a compressor pool): loads each native library
 * once, checks it, and picks one for a push.
 *
 * @example
 * ```ts
 * import { GzipEngines } from "./gzip_engines.ts";
 * const engines = new GzipEngines("auto");
 * const chosen = await engines.choose();
 * console.log(chosen.engine, chosen.level);
 * engines.close();
 * ```
 */
export class GzipEngines {
  readonly #choice: GzipEngineChoice;
  readonly #loading = new Map<string, Promise<NativeGzip | undefined>>();
  readonly #loaded = new Map<string, NativeGzip>();
  readonly #fingerprints = new Map<string, string>();
  #wasm?: WasmGzip;
  #wasmModule?: WebAssembly.Module;

  /** @param choice the engine to use, or `auto` (default). */
  constructor(choice: GzipEngineChoice = "auto") {
    if (!GZIP_ENGINE_CHOICES.includes(choice)) {
      throw new ImagesError(
        `unknown gzip engine ${JSON.stringify(choice)}: use one of ${
          GZIP_ENGINE_CHOICES.join(", ")
        }`,
        "INVALID_ARGUMENT",
      );
    }
    this.#choice = choice;
  }

  /**
   * Picks the engine: the one chosen, or with `auto` the first of ISA-L (only at its
   * default level: its scale is 0–3), libdeflate, libdeflate as WebAssembly (only at its
   * default level: its higher levels are slower than zlib's), zlib that loads and
   * round-trips a sample. `level` (a whole number 1–9; ISA-L has only 1–3) applies to
   * whichever runs; without it, the engine's own default. A named engine that cannot run,
   * or cannot run at `level`, is an error.
   */
  async choose(level?: number): Promise<ChosenGzip> {
    if (level !== undefined && !(Number.isInteger(level) && level >= 1 && level <= 9)) {
      throw new ImagesError(
        `gzip compression level ${level}: use a whole number 1–9`,
        "INVALID_ARGUMENT",
      );
    }
    const candidates: GzipEngine[] = this.#choice !== "auto"
      ? [this.#choice]
      : level === undefined
      ? ["isal", "libdeflate", "libdeflate-wasm", "zlib"]
      : ["libdeflate", "zlib"];
    const problems: string[] = [];
    for (const engine of candidates) {
      const used = level ?? DEFAULT_LEVEL[engine];
      try {
        const gzip = await this.#open(engine);
        return { engine, level: used, fingerprint: this.#fingerprint(gzip, used) };
      } catch (error) {
        problems.push(`${engine}: ${(error as Error).message}`);
      }
    }
    throw new ImagesError(
      `gzip engine ${this.#choice} cannot run: ${problems.join("; ")}`,
      "COMPRESSION_UNAVAILABLE",
    );
  }

  /**
   * `engine` on this thread, once {@linkcode GzipEngines.choose} picked it (zlib always):
   * undefined while it is not loaded.
   */
  gzip(engine: GzipEngine): BlockGzip | undefined {
    if (engine === "zlib") return ZLIB_GZIP;
    if (engine === "libdeflate-wasm") {
      if (!this.#wasmModule) return undefined;
      const wasm = this.wasm();
      return { engine, member: (block, level, crc) => wasm.compress(block, level, crc).slice() };
    }
    const native = this.#loaded.get(engine);
    if (!native) return undefined;
    return { engine, member: (block, level) => gzipMember(native, block, level, {}) };
  }

  /**
   * libdeflate as WebAssembly on this thread, instantiated on first use, once
   * {@linkcode GzipEngines.choose} picked it (it loads the module).
   */
  wasm(): WasmGzip {
    const module = this.wasmModule();
    if (!module) throw new Error("libdeflate-wasm is not loaded: choose it first");
    this.#wasm ??= openWasmGzip(module);
    return this.#wasm;
  }

  /** libdeflate's compiled WebAssembly module, once {@linkcode GzipEngines.choose} picked it. */
  wasmModule(): WebAssembly.Module | undefined {
    return this.#wasmModule;
  }

  /** The loaded native library of `engine`, once {@linkcode GzipEngines.choose} picked it. */
  native(engine: GzipEngine): NativeGzip | undefined {
    return this.#loaded.get(engine);
  }

  /** Unloads every library loaded here. */
  close(): void {
    for (const native of this.#loaded.values()) native.close();
    this.#loaded.clear();
    this.#loading.clear();
    this.#fingerprints.clear();
  }

  /** Loads `engine` (a library, or the WebAssembly module) on first use; throws why it cannot. */
  async #open(engine: GzipEngine): Promise<BlockGzip> {
    if (engine === "libdeflate-wasm") this.#wasmModule ??= await libdeflateWasmModule();
    else if (isNativeEngine(engine) && !await this.#load(engine)) {
      throw new Error(
        `${LIBRARY_NAMES[engine][0]} did not load (not installed, or Deno lacks --allow-ffi)`,
      );
    }
    return this.gzip(engine)!;
  }

  async #load(engine: NativeEngine): Promise<NativeGzip | undefined> {
    let loading = this.#loading.get(engine);
    if (!loading) {
      loading = OPENERS[engine](LIBRARY_NAMES[engine]);
      this.#loading.set(engine, loading);
    }
    const native = await loading;
    // Closed while it loaded: the library is not wanted any more.
    if (native && this.#loading.get(engine) !== loading) {
      native.close();
      return undefined;
    }
    if (native) this.#loaded.set(engine, native);
    return native;
  }

  /**
   * Compresses a fixed sample with `gzip` and reads it back with zlib: proves the engine
   * sound (an ISA-L of another ABI would fail here) and names what it makes, so versions
   * that compress differently never share a cache entry, whatever file they came from.
   * zlib is named by its version: the runtime's own, never loaded from elsewhere.
   */
  #fingerprint(gzip: BlockGzip, level: number): string {
    const name = gzip.engine;
    if (name === "zlib") return `zlib-${process.versions.zlib}`;
    const key = `${name}-${level}`;
    let known = this.#fingerprints.get(key);
    if (!known) {
      const sample = new TextEncoder().encode(
        Array.from({ length: 3000 }, (_, i) => `${(i * 7919) % 1013} layer ${i % 17}\n`).join(""),
      );
      const packed = gzip.member(sample, level);
      const back = new Uint8Array(zlib.gunzipSync(packed));
      if (back.length !== sample.length || !back.every((byte, i) => byte === sample[i])) {
        throw new Error("its output does not read back as the input");
      }
      known = `${name}-${createHash("sha256").update(packed).digest("hex").slice(0, 16)}`;
      this.#fingerprints.set(key, known);
    }
    return known;
  }
}
