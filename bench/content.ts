/**
 * Deterministic synthetic content for the benchmark image, and layer tars made of it.
 *
 * The bytes come in 4 KiB pieces: 18 % random (incompressible, like packed data), 20 %
 * near copies of a recent piece (long matches, like repeated sections), the rest "text"
 * drawn from a small vocabulary of words (short matches and skewed symbols, like code).
 * gzip -6 makes about 0.40 of it, at about the speed it compresses real binaries
 * (measured against a tar of /usr: 75 MB/s for both with node:zlib). The randomness is
 * AES-128-CTR over zeros, so every runtime produces the same bytes for the same seed.
 *
 * @module
 */

import { createCipheriv, createHash } from "node:crypto";
import { BLOCK_SIZE, encodeTarHeader, paddedSize } from "../lib/archive/tar_header.ts";

/** Bytes per piece of content. */
export const PIECE_SIZE = 4096;
/** Bytes generated at once, and the size of the chunks layer tars are yielded in. */
export const CHUNK_SIZE = 1024 * 1024;

const RANDOM_SHARE = 0.18;
const REPEAT_SHARE = 0.20;
const REPEAT_REACH = 6; // pieces back, well inside gzip's 32 KiB window
const ALPHABET = "etaoinshrdlcumwfgypbvkjxqz_ETAOINSHR0123456789./(){};=,:-";
const ZEROS = new Uint8Array(CHUNK_SIZE);

/** A deterministic stream of random bytes (AES-128-CTR keyed by the seed). */
export class Prng {
  #cipher;

  /** @param seed any text; equal seeds give equal streams */
  constructor(seed: string) {
    const key = createHash("sha256").update(seed).digest().subarray(0, 16);
    this.#cipher = createCipheriv("aes-128-ctr", key, new Uint8Array(16));
  }

  /** The next `n` bytes (at most {@linkcode CHUNK_SIZE}). */
  bytes(n: number): Uint8Array {
    return new Uint8Array(this.#cipher.update(ZEROS.subarray(0, n)));
  }

  /** The next number in [0, 1), from 32 bits. */
  unit(): number {
    const b = this.bytes(4);
    return ((b[0] << 24 >>> 0) + (b[1] << 16) + (b[2] << 8) + b[3]) / 2 ** 32;
  }
}

/**
 * An endless deterministic stream of software-like bytes.
 *
 * @example
 * ```ts
 * import { ContentStream } from "./content.ts";
 * const out = new Uint8Array(10_000);
 * new ContentStream("seed").fill(out);
 * ```
 */
export class ContentStream {
  #rng: Prng;
  #words: Uint8Array[] = [];
  #chunk = new Uint8Array(CHUNK_SIZE);
  #pos = CHUNK_SIZE;

  /** @param seed equal seeds give equal bytes */
  constructor(seed: string) {
    this.#rng = new Prng(`content ${seed}`);
    const r = this.#rng.bytes(256 * 10);
    for (let i = 0; i < 256; i++) {
      const length = 2 + (r[i] % 9);
      const word = new Uint8Array(length + 1);
      for (let j = 0; j < length; j++) {
        word[j] = ALPHABET.charCodeAt(r[256 + i * 9 + j] % ALPHABET.length);
      }
      word[length] = i % 7 === 0 ? 10 : 32;
      this.#words.push(word);
    }
  }

  /** Fills `out` with the next bytes of the stream. */
  fill(out: Uint8Array): void {
    let done = 0;
    while (done < out.length) {
      if (this.#pos === CHUNK_SIZE) this.#refill();
      const n = Math.min(out.length - done, CHUNK_SIZE - this.#pos);
      out.set(this.#chunk.subarray(this.#pos, this.#pos + n), done);
      this.#pos += n;
      done += n;
    }
  }

  #refill(): void {
    const chunk = this.#chunk;
    const pieces = CHUNK_SIZE / PIECE_SIZE;
    const choice = this.#rng.bytes(pieces);
    const reach = this.#rng.bytes(pieces);
    for (let i = 0; i < pieces; i++) {
      const at = i * PIECE_SIZE;
      const c = choice[i] / 256;
      if (c < RANDOM_SHARE) chunk.set(this.#rng.bytes(PIECE_SIZE), at);
      else if (c < RANDOM_SHARE + REPEAT_SHARE && i > REPEAT_REACH) {
        const from = (i - 1 - (reach[i] % REPEAT_REACH)) * PIECE_SIZE;
        chunk.copyWithin(at, from, from + PIECE_SIZE);
        const edits = this.#rng.bytes(8);
        for (let j = 0; j < 8; j++) chunk[at + (edits[j] << 4)] = edits[(j + 1) % 8];
      } else this.#text(chunk, at);
    }
    this.#pos = 0;
  }

  #text(chunk: Uint8Array, at: number): void {
    const r = this.#rng.bytes(PIECE_SIZE / 2); // words are at least 3 bytes long
    const end = at + PIECE_SIZE;
    for (let o = at, k = 0; o < end; k++) {
      const word = this.#words[r[k]];
      const n = Math.min(word.length, end - o);
      for (let j = 0; j < n; j++) chunk[o + j] = word[j];
      o += n;
    }
  }
}

/** One entry of a planned layer tar. */
export interface LayerEntry {
  /** Entry name. */
  name: string;
  /** Data size (0 for directories). */
  size: number;
  /** Whether it is a directory. */
  directory: boolean;
}

/** A layer tar's entries and its exact size in bytes. */
export interface LayerPlan {
  /** The seed of its content. */
  seed: string;
  /** Entries in archive order. */
  entries: LayerEntry[];
  /** Size of the whole tar, end blocks included. */
  size: number;
}

/** Options of {@linkcode planLayer}. */
export interface PlanOptions {
  /** Smallest file, bytes (default 256). */
  minFile?: number;
  /** Largest file, bytes (default 8 MiB); sizes are log-uniform in between. */
  maxFile?: number;
  /** Files per directory (default 24). */
  filesPerDirectory?: number;
}

/**
 * Plans a layer tar of at least `targetBytes`: directories of files with log-uniform
 * sizes, as deterministic as the seed.
 *
 * @example
 * ```ts
 * import { planLayer } from "./content.ts";
 * const plan = planLayer("layer 0", 10 * 1024 * 1024);
 * console.log(plan.entries.length, plan.size);
 * ```
 */
export function planLayer(seed: string, targetBytes: number, options: PlanOptions = {}): LayerPlan {
  const rng = new Prng(`plan ${seed}`);
  const low = Math.log(options.minFile ?? 256);
  const high = Math.log(options.maxFile ?? 8 * 1024 * 1024);
  const perDirectory = options.filesPerDirectory ?? 24;
  const prefix = `opt/${seed.replace(/[^a-z0-9]+/gi, "-")}`;
  const entries: LayerEntry[] = [];
  let size = 2 * BLOCK_SIZE;
  for (let n = 0; size < targetBytes; n++) {
    const directory = `${prefix}/pkg${Math.floor(n / perDirectory)}`;
    if (n % perDirectory === 0) {
      entries.push({ name: `${directory}/`, size: 0, directory: true });
      size += BLOCK_SIZE;
    }
    const drawn = Math.floor(Math.exp(low + rng.unit() * (high - low)));
    const fileSize = Math.max(0, Math.min(drawn, targetBytes - size - BLOCK_SIZE)); // last one fits
    entries.push({ name: `${directory}/file${n}.bin`, size: fileSize, directory: false });
    size += BLOCK_SIZE + paddedSize(fileSize);
  }
  return { seed, entries, size };
}

/**
 * The bytes of a planned layer tar, in chunks of about {@linkcode CHUNK_SIZE} (each a new
 * buffer), generated as they are asked for.
 *
 * @example
 * ```ts
 * import { layerChunks, planLayer } from "./content.ts";
 * let total = 0;
 * for (const chunk of layerChunks(planLayer("x", 1 << 20))) total += chunk.length;
 * ```
 */
export function* layerChunks(plan: LayerPlan): Generator<Uint8Array> {
  const content = new ContentStream(plan.seed);
  let out = new Uint8Array(CHUNK_SIZE);
  let pos = 0;
  // Appends `n` bytes: copied from `bytes`, else generated content, else zeros.
  function* put(n: number, how: Uint8Array | "content" | "zeros"): Generator<Uint8Array> {
    for (let done = 0; done < n;) {
      const k = Math.min(n - done, CHUNK_SIZE - pos);
      const slice = out.subarray(pos, pos + k);
      if (how === "content") content.fill(slice);
      else if (how !== "zeros") slice.set(how.subarray(done, done + k));
      pos += k;
      done += k;
      if (pos === CHUNK_SIZE) {
        yield out;
        out = new Uint8Array(CHUNK_SIZE);
        pos = 0;
      }
    }
  }
  for (const entry of plan.entries) {
    const header = encodeTarHeader({
      name: entry.name,
      size: entry.size,
      typeflag: entry.directory ? "5" : "0",
      mode: entry.directory ? 0o755 : 0o644,
      mtime: 1_700_000_000,
    });
    yield* put(BLOCK_SIZE, header);
    yield* put(entry.size, "content");
    yield* put(paddedSize(entry.size) - entry.size, "zeros");
  }
  yield* put(2 * BLOCK_SIZE, "zeros");
  if (pos > 0) yield out.subarray(0, pos);
}
