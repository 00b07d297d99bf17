/**
 * Shared pieces of the fuzz and hostile-input tests: how many cases to run, checking a
 * property and counting its cases, the "only our typed errors" rule, a raw tar builder
 * that can write what our writer refuses to (bad checksums, absurd sizes, names leaving
 * the archive), and byte-level mutations of a valid archive. How much work a parser may
 * do on an input is counted by `work.ts`, never timed.
 *
 * `FUZZ_RUNS` sets the cases per property (default 200; the soak run uses thousands),
 * `FUZZ_SEED` replays a failure (fast-check prints the seed and path of a failing case).
 *
 * @module
 */

import process from "node:process";
import fc from "fast-check";
import { ImagesError } from "../lib/errors.ts";
import { BLOCK_SIZE, headerChecksums, paddedSize } from "../lib/archive/tar_header.ts";
import { TarIndex } from "../lib/archive/tar_index.ts";
import { type LocalSource, openLocalSource } from "../lib/archive/local_source.ts";
import { type Descriptor, parseManifest } from "../lib/oci/manifest.ts";

/** Cases per property: `FUZZ_RUNS`, default 200. */
export const FUZZ_RUNS: number = readRuns();

/** The seed of every property when `FUZZ_SEED` is set (to replay a failure). */
export const FUZZ_SEED: number | undefined = readSeed();

function readRuns(): number {
  const text = process.env.FUZZ_RUNS;
  if (text === undefined || text === "") return 200;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`FUZZ_RUNS must be a positive integer`);
  return n;
}

function readSeed(): number | undefined {
  const text = process.env.FUZZ_SEED;
  if (text === undefined || text === "") return undefined;
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new Error(`FUZZ_SEED must be an integer`);
  return n;
}

/** Cases run so far in this file, by property (for the closing log line). */
const counts = new Map<string, number>();

/** Runs a property `FUZZ_RUNS * scale` times (at least 10) and throws fast-check's report on failure. */
export async function check<T>(
  name: string,
  property: fc.IProperty<T> | fc.IAsyncProperty<T>,
  options: { scale?: number } = {},
): Promise<void> {
  const numRuns = Math.max(10, Math.round(FUZZ_RUNS * (options.scale ?? 1)));
  const params: fc.Parameters<T> = {
    numRuns,
    ...(FUZZ_SEED === undefined ? {} : { seed: FUZZ_SEED }),
  };
  const details = await fc.check(property as fc.IAsyncProperty<T>, params);
  counts.set(name, (counts.get(name) ?? 0) + details.numRuns);
  if (details.failed) {
    const error = details.errorInstance;
    const why = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    throw new Error(`${name}: ${why}\n${fc.defaultReportMessage(details) ?? "failed"}`, {
      cause: error,
    });
  }
}

/**
 * The number of cases run since the last call (in this file: Bun runs every file in one
 * process, one after the other), and one line saying so.
 */
export function casesRun(file: string): { total: number; line: string } {
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  const line = `fuzz: ${file}: ${total} cases in ${counts.size} properties`;
  counts.clear();
  return { total, line };
}

/**
 * How long a test may run before it is taken for hung: a guard against a hang, not a
 * speed limit, so generous (minutes, for tests that take a second or two on an idle
 * machine) and per case, so a soak with thousands of cases still fits.
 */
export function testTimeout(perCaseMs: number, scale = 1): number {
  return 120_000 + Math.ceil(FUZZ_RUNS * scale * perCaseMs);
}

/**
 * Rethrows `error` unless it is one of our typed errors: anything else (a `TypeError`,
 * a `RangeError`, a raw file system error) is a bug the fuzzer found.
 */
export function onlyTyped(error: unknown, context = ""): ImagesError {
  if (error instanceof ImagesError) return error;
  const what = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  throw new Error(`not an ImagesError${context ? ` (${context})` : ""}: ${what}`, {
    cause: error,
  });
}

/** Runs `fn`; returns its value, or the typed error it threw (anything else is rethrown). */
export function typed<T>(fn: () => T, context = ""): T | ImagesError {
  try {
    return fn();
  } catch (e) {
    return onlyTyped(e, context);
  }
}

/** Like {@linkcode typed} for async work. */
export async function typedAsync<T>(
  fn: () => Promise<T>,
  context = "",
): Promise<T | ImagesError> {
  try {
    return await fn();
  } catch (e) {
    return onlyTyped(e, context);
  }
}

/** Heap in use now, in bytes (both runtimes implement `process.memoryUsage`). */
export function heapUsed(): number {
  return process.memoryUsage().heapUsed;
}

/** Fails when the heap grew more than `limitBytes` since `before` (garbage included, so generous). */
export function assertHeapBounded(before: number, limitBytes: number, what: string): void {
  const grown = heapUsed() - before;
  if (grown > limitBytes) {
    throw new Error(
      `${what}: heap grew by ${(grown / 2 ** 20).toFixed(0)} MiB (limit ${
        limitBytes / 2 ** 20
      } MiB)`,
    );
  }
}

// ---------------------------------------------------------------------------------
// Raw tar building: anything goes, including what a correct writer never writes.

const encoder = new TextEncoder();

/** Bytes of a string or bytes. */
export function bytes(data: string | Uint8Array): Uint8Array {
  return typeof data === "string" ? encoder.encode(data) : data;
}

/** Concatenates byte arrays. */
export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Fields of a raw header; each may be given as raw bytes to write anything at all. */
export interface RawHeader {
  /** Name field (100 bytes; longer text is cut). */
  name: string | Uint8Array;
  /** Size: a number is written in octal (or base-256 above 8 GiB), bytes as they are. */
  size?: number | Uint8Array;
  /** Type flag character, default `0`. */
  typeflag?: string;
  /** Link name field (100 bytes). */
  linkname?: string | Uint8Array;
  /** ustar prefix field (155 bytes). */
  prefix?: string;
  /** `ustar` (default), `gnu` or `v7` (no magic). */
  format?: "ustar" | "gnu" | "v7";
  /** Checksum: `"valid"` (default), `"bad"`, or raw bytes for the 8-byte field. */
  checksum?: "valid" | "bad" | Uint8Array;
}

function put(block: Uint8Array, at: number, length: number, value: string | Uint8Array): void {
  block.set(bytes(value).subarray(0, length), at);
}

function octal(value: number, length: number): string {
  return value.toString(8).padStart(length - 1, "0").slice(-(length - 1)) + "\0";
}

/** A base-256 (GNU) numeric field of `length` bytes holding `value`. */
export function base256(value: number | bigint, length = 12): Uint8Array {
  const out = new Uint8Array(length);
  let v = BigInt(value);
  for (let i = length - 1; i > 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  out[0] = 0x80 | Number(v & 0x7fn);
  return out;
}

/** Writes a valid checksum into a header block (after it was changed). */
export function fixChecksum(block: Uint8Array): void {
  block.fill(0x20, 148, 156);
  put(block, 148, 8, headerChecksums(block).unsigned.toString(8).padStart(6, "0") + "\0 ");
}

/** One 512-byte header block. */
export function rawHeader(h: RawHeader): Uint8Array {
  const block = new Uint8Array(BLOCK_SIZE);
  put(block, 0, 100, h.name);
  put(block, 100, 8, octal(0o644, 8));
  put(block, 108, 8, octal(0, 8));
  put(block, 116, 8, octal(0, 8));
  const size = h.size ?? 0;
  if (typeof size !== "number") put(block, 124, 12, size);
  else if (size > 0o77777777777) block.set(base256(size), 124);
  else put(block, 124, 12, octal(size, 12));
  put(block, 136, 12, octal(0, 12));
  block[156] = (h.typeflag ?? "0").charCodeAt(0);
  put(block, 157, 100, h.linkname ?? "");
  const format = h.format ?? "ustar";
  if (format === "ustar") {
    put(block, 257, 8, "ustar\x0000");
    put(block, 345, 155, h.prefix ?? "");
  } else if (format === "gnu") put(block, 257, 8, "ustar  \0");
  const checksum = h.checksum ?? "valid";
  if (checksum === "valid" || checksum === "bad") {
    fixChecksum(block);
    if (checksum === "bad") block[150] = block[150] === 0x30 ? 0x31 : 0x30;
  } else put(block, 148, 8, checksum);
  return block;
}

/** Data padded to whole blocks. */
export function padded(data: string | Uint8Array): Uint8Array {
  const b = bytes(data);
  const out = new Uint8Array(paddedSize(b.length));
  out.set(b);
  return out;
}

/** A file entry: header and padded data (`size` may claim something else than the data). */
export function fileEntry(
  name: string,
  data: string | Uint8Array = "",
  extra: Partial<RawHeader> = {},
): Uint8Array {
  const b = bytes(data);
  return concat([rawHeader({ name, size: b.length, ...extra }), padded(b)]);
}

/** A symlink or hard link entry. */
export function linkEntry(name: string, target: string, hard = false): Uint8Array {
  return rawHeader({ name, typeflag: hard ? "1" : "2", linkname: target });
}

/** A pax extended header (`x`, or `g` for global) with records as raw text. */
export function paxEntry(text: string | Uint8Array, global = false): Uint8Array {
  return fileEntry(global ? "pax_global_header" : "PaxHeaders/x", text, {
    typeflag: global ? "g" : "x",
  });
}

/** One pax record `"<len> key=value\n"` with a correct length. */
export function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const n = encoder.encode(body).length;
  let len = n + 1;
  while (String(len).length + n !== len) len = String(len).length + n;
  return `${len}${body}`;
}

/** A GNU long name (`L`) or long link (`K`) entry. */
export function gnuLongEntry(text: string | Uint8Array, link = false): Uint8Array {
  return fileEntry("././@LongLink", text, { typeflag: link ? "K" : "L", format: "gnu" });
}

/** A whole archive: the entries and the two zero blocks. */
export function tarOf(...entries: Uint8Array[]): Uint8Array {
  return concat([...entries, new Uint8Array(2 * BLOCK_SIZE)]);
}

/** The offsets of the header blocks of a valid archive (walking sizes, pax/GNU included). */
export function headerOffsets(tar: Uint8Array): number[] {
  const out: number[] = [];
  let pos = 0;
  while (pos + BLOCK_SIZE <= tar.length) {
    const block = tar.subarray(pos, pos + BLOCK_SIZE);
    if (block.every((b) => b === 0)) break;
    out.push(pos);
    const text = new TextDecoder().decode(block.subarray(124, 136)).replace(/\0.*$/s, "").trim();
    const size = block[124] & 0x80 ? 0 : parseInt(text || "0", 8);
    pos += BLOCK_SIZE + paddedSize(Number.isNaN(size) ? 0 : size);
  }
  return out;
}

// ---------------------------------------------------------------------------------
// Mutations of valid bytes.

/** One change to an archive's bytes. */
export type Mutation =
  | { kind: "flip"; at: number; bit: number }
  | { kind: "set"; at: number; value: number }
  | { kind: "truncate"; at: number }
  | { kind: "insert"; at: number; data: Uint8Array }
  | { kind: "delete"; at: number; length: number }
  | {
    kind: "field";
    header: number;
    field: keyof typeof FIELDS;
    value: Uint8Array;
    fix: boolean;
  };

/** Header fields (offset, length) a mutation may overwrite. */
export const FIELDS = {
  name: [0, 100],
  mode: [100, 8],
  size: [124, 12],
  checksum: [148, 8],
  typeflag: [156, 1],
  linkname: [157, 100],
  magic: [257, 8],
  prefix: [345, 155],
} as const;

const TEXT_OF = (s: string) => encoder.encode(s);

/** Values worth writing into a header field: edge sizes, base-256, links leaving, junk. */
export function fieldValue(): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    fc.uint8Array({ minLength: 1, maxLength: 12 }),
    fc.constantFrom(
      TEXT_OF("77777777777\0"),
      TEXT_OF("00000000000\0"),
      TEXT_OF("-1\0"),
      TEXT_OF("        "),
      TEXT_OF("9999\0"),
      base256(2 ** 40),
      base256(2 ** 53 - 1),
      base256(2n ** 90n),
      new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
      TEXT_OF("../../../etc/passwd\0"),
      TEXT_OF("/etc/passwd\0"),
      TEXT_OF("..\0"),
      TEXT_OF("manifest.json\0"),
      TEXT_OF("index.json\0"),
      TEXT_OF("1"),
      TEXT_OF("2"),
      TEXT_OF("5"),
      TEXT_OF("x"),
      TEXT_OF("g"),
      TEXT_OF("L"),
      TEXT_OF("K"),
      TEXT_OF("ustar  \0"),
      TEXT_OF("ustar\x0000"),
    ),
  );
}

/** Arbitrary mutations of a buffer of `length` bytes whose headers are at `headers`. */
export function mutationArb(length: number, headers: number[]): fc.Arbitrary<Mutation> {
  const at = fc.nat({ max: Math.max(0, length - 1) });
  const arbs: fc.Arbitrary<Mutation>[] = [
    fc.record({ kind: fc.constant("flip" as const), at, bit: fc.nat({ max: 7 }) }),
    fc.record({ kind: fc.constant("set" as const), at, value: fc.nat({ max: 255 }) }),
    fc.record({ kind: fc.constant("truncate" as const), at }),
    fc.record({
      kind: fc.constant("insert" as const),
      at,
      data: fc.oneof(
        fc.uint8Array({ minLength: 1, maxLength: 600 }),
        fc.constant(new Uint8Array(BLOCK_SIZE)),
      ),
    }),
    fc.record({
      kind: fc.constant("delete" as const),
      at,
      length: fc.integer({ min: 1, max: 600 }),
    }),
  ];
  if (headers.length > 0) {
    arbs.push(
      fc.record({
        kind: fc.constant("field" as const),
        header: fc.constantFrom(...headers),
        field: fc.constantFrom(...(Object.keys(FIELDS) as (keyof typeof FIELDS)[])),
        value: fieldValue(),
        fix: fc.boolean(),
      }),
    );
    // Header fields are where the reader decides things: weigh them more.
    arbs.push(arbs[arbs.length - 1], arbs[arbs.length - 1]);
  }
  return fc.oneof(...arbs);
}

/** Applies mutations in order to a copy of `input`. */
export function applyMutations(input: Uint8Array, mutations: Mutation[]): Uint8Array {
  let out: Uint8Array = input.slice();
  for (const m of mutations) {
    const at = Math.min(m.kind === "field" ? 0 : m.at, Math.max(0, out.length - 1));
    switch (m.kind) {
      case "flip":
        if (out.length > 0) out[at] ^= 1 << m.bit;
        break;
      case "set":
        if (out.length > 0) out[at] = m.value;
        break;
      case "truncate":
        out = out.slice(0, at);
        break;
      case "insert":
        out = concat([out.subarray(0, at), m.data, out.subarray(at)]);
        break;
      case "delete":
        out = concat([out.subarray(0, at), out.subarray(at + m.length)]);
        break;
      case "field": {
        if (m.header + BLOCK_SIZE > out.length) break;
        const [offset, length] = FIELDS[m.field];
        const block = out.subarray(m.header, m.header + BLOCK_SIZE);
        block.fill(0, offset, offset + length);
        block.set(m.value.subarray(0, length), offset);
        if (m.fix && m.field !== "checksum") fixChecksum(block);
        break;
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------
// JSON mutations (manifest.json, index.json, manifests and configs).

/** One change to a JSON document: a path of child choices and what to do there. */
export interface JsonMutation {
  /** Child picks, each taken modulo the number of children (the walk stops at a leaf). */
  path: number[];
  /** Replace the value there, delete it, or put a copy of it next to itself. */
  action: "replace" | "delete" | "duplicate";
  /** The new value for `replace`. */
  value: unknown;
}

/** Values worth putting into an image's JSON: wrong types, edge numbers, paths leaving. */
export function hostileJsonValue(digests: string[] = []): fc.Arbitrary<unknown> {
  const sha = "sha256:" + "0".repeat(64);
  return fc.oneof(
    { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
    {
      weight: 3,
      arbitrary: fc.constantFrom<unknown>(
        null,
        -1,
        0,
        1.5,
        2 ** 53,
        1e308,
        "",
        "../../../etc/passwd",
        "/etc/passwd",
        "blobs/sha256/../../x",
        "manifest.json",
        "index.json",
        sha,
        "sha256:" + "Z".repeat(64),
        "sha512:" + "0".repeat(128),
        [],
        {},
        [sha],
        { "io.containerd.image.name": 5 },
        { os: "linux" },
        Array.from({ length: 1001 }, () => "l.tar"),
        "a/".repeat(3000) + "b",
        ...digests,
      ),
    },
  );
}

/** Arbitrary mutations of a JSON document. */
export function jsonMutationArb(digests: string[] = []): fc.Arbitrary<JsonMutation> {
  return fc.record({
    path: fc.array(fc.nat({ max: 20 }), { maxLength: 6 }),
    action: fc.constantFrom(
      "replace" as const,
      "replace" as const,
      "delete" as const,
      "duplicate" as const,
    ),
    value: hostileJsonValue(digests),
  });
}

/** Applies a mutation to a deep copy of `doc`. */
export function applyJsonMutation(doc: unknown, m: JsonMutation): unknown {
  const root = structuredClone(doc);
  const holder = { root } as Record<string, unknown>;
  let parent: Record<string, unknown> | unknown[] = holder;
  let key: string | number = "root";
  for (const pick of m.path) {
    const here = (parent as Record<string | number, unknown>)[key];
    if (typeof here !== "object" || here === null) break;
    const keys: (string | number)[] = Array.isArray(here)
      ? here.map((_, i) => i)
      : Object.keys(here);
    if (keys.length === 0) break;
    parent = here as Record<string, unknown> | unknown[];
    key = keys[pick % keys.length];
  }
  const p = parent as Record<string | number, unknown>;
  if (m.action === "replace") p[key] = structuredClone(m.value);
  else if (m.action === "delete") {
    if (Array.isArray(parent) && typeof key === "number") parent.splice(key, 1);
    else delete p[key];
  } else if (Array.isArray(parent) && typeof key === "number") {
    parent.splice(key, 0, structuredClone(parent[key]));
  } else if (parent !== holder) p[`${key}_copy`] = structuredClone(p[key]);
  return holder.root;
}

// ---------------------------------------------------------------------------------
// Driving the readers over everything an archive offers.

/** What reading an archive came to: entries seen, or the typed error that stopped it. */
export interface Outcome {
  /** Entries or images read without error. */
  read: number;
  /** Typed errors met (each stops one path of reading, not the whole walk). */
  errors: ImagesError[];
}

async function drain(
  stream: ReadableStream<Uint8Array>,
  limit = 64 * 1024 * 1024,
): Promise<number> {
  const reader = stream.getReader();
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return total;
      total += value.byteLength;
      if (total > limit) throw new Error(`stream gave more than ${limit} bytes`);
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * Opens a tar with {@linkcode TarIndex} and reads every entry every way (resolve, read,
 * head, stream), plus `extraNames`; any error but an {@linkcode ImagesError} is thrown.
 */
export async function exerciseTar(path: string, extraNames: string[] = []): Promise<Outcome> {
  const outcome: Outcome = { read: 0, errors: [] };
  const note = (e: unknown, what: string) => outcome.errors.push(onlyTyped(e, what));
  let index: TarIndex;
  try {
    index = await TarIndex.open(path);
  } catch (e) {
    note(e, "TarIndex.open");
    return outcome;
  }
  try {
    const names = [...index.names()].slice(0, 64);
    for (const name of [...names, ...extraNames]) {
      index.entry(name);
      try {
        const entry = index.resolve(name);
        if (entry === undefined) continue;
        await index.readHead(name, 8);
        if (entry.size <= 1024 * 1024) await index.readEntry(name, 1024 * 1024);
        else {
          await assertRejectsTyped(() => index.readEntry(name, 1024 * 1024));
        }
        const got = await drain(index.openEntry(name, { chunkSize: 4096 }));
        if (got !== entry.size) throw new Error(`${name}: streamed ${got} of ${entry.size} bytes`);
        outcome.read++;
      } catch (e) {
        note(e, `entry ${JSON.stringify(name).slice(0, 80)}`);
      }
    }
  } finally {
    await index.close();
  }
  return outcome;
}

async function assertRejectsTyped(fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    onlyTyped(e, "expected refusal");
    return;
  }
  throw new Error("expected a typed refusal, got success");
}

/**
 * Opens an archive or layout with {@linkcode openLocalSource} and walks it as a copy
 * would: names, resolve (each name and none), every platform manifest of an index,
 * every config and layer streamed to the end. Any error but an
 * {@linkcode ImagesError} is thrown, also one raised inside a stream.
 */
export async function exerciseSource(path: string): Promise<Outcome> {
  const outcome: Outcome = { read: 0, errors: [] };
  const note = (e: unknown, what: string) => outcome.errors.push(onlyTyped(e, what));
  let source: LocalSource;
  try {
    source = await openLocalSource(path);
  } catch (e) {
    note(e, "openLocalSource");
    return outcome;
  }
  try {
    const names = (await source.names()).slice(0, 8);
    for (const name of [undefined, ...names, "nope:latest", "sha256:" + "0".repeat(64)]) {
      try {
        const image = await source.resolve(name);
        await walkManifest(source, image.bytes, image.descriptor, 0);
        outcome.read++;
      } catch (e) {
        note(e, `image ${name}`);
      }
    }
  } finally {
    await source.close();
  }
  return outcome;
}

async function walkManifest(
  source: LocalSource,
  bytes: Uint8Array,
  descriptor: Descriptor,
  depth: number,
): Promise<void> {
  const parsed = parseManifest(bytes, descriptor.digest, descriptor.mediaType);
  if (parsed.kind === "index") {
    if (depth > 3) return;
    for (const child of parsed.index.manifests.slice(0, 4)) {
      const childBytes = await source.fetchManifest(child);
      await walkManifest(source, childBytes, child, depth + 1);
    }
    return;
  }
  for (const blob of [parsed.manifest.config, ...parsed.manifest.layers.slice(0, 8)]) {
    const got = await drain(await source.fetchBlob(blob));
    if (got !== blob.size) throw new Error(`${blob.digest}: streamed ${got} of ${blob.size} bytes`);
  }
}
