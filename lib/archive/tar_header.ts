/**
 * Tar header blocks: decoding and encoding the 512-byte ustar header, numeric fields
 * (octal and GNU base-256), checksums and pax extended-header records.
 *
 * @module
 */

/** The size of a tar block; headers are one block, data is padded to whole blocks. */
export const BLOCK_SIZE = 512;

/** The largest size an octal ustar size field holds (8 GiB - 1). */
export const MAX_OCTAL_SIZE = 0o77777777777;

/** The fields of one tar header block, after decoding. */
export interface TarHeader {
  /** `name` field, joined with the ustar `prefix` field when there is one. */
  name: string;
  /** Permission bits. */
  mode: number;
  /** Owner id. */
  uid: number;
  /** Group id. */
  gid: number;
  /** Size of the data that follows, in bytes. */
  size: number;
  /** Modification time, seconds since the epoch. */
  mtime: number;
  /** Type flag: `0` file, `1` hard link, `2` symlink, `5` directory, `x`/`g` pax, `L`/`K` GNU. */
  typeflag: string;
  /** Target of a link. */
  linkname: string;
  /** `ustar` (POSIX), `gnu` (`ustar  `) or `v7` (no magic). */
  format: "ustar" | "gnu" | "v7";
}

/** What {@linkcode encodeTarHeader} writes; fields left out get neutral defaults. */
export interface TarHeaderFields {
  /** Entry name; up to 100 bytes, or 255 when it splits into prefix and name at a `/`. */
  name: string;
  /** Size of the data in bytes (base-256 above {@linkcode MAX_OCTAL_SIZE}). */
  size?: number;
  /** Type flag, default `0` (regular file). */
  typeflag?: string;
  /** Link target, up to 100 bytes. */
  linkname?: string;
  /** Permission bits, default 0o644. */
  mode?: number;
  /** Modification time in seconds, default 0. */
  mtime?: number;
  /** Owner id, default 0. */
  uid?: number;
  /** Group id, default 0. */
  gid?: number;
  /** `ustar` (default) or `gnu` magic. */
  format?: "ustar" | "gnu";
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Why a header block could not be decoded. */
export type HeaderProblem = "zero" | "checksum" | "field";

/**
 * Whether a block is all zero bytes (the end-of-archive marker).
 *
 * @example
 * ```ts
 * import { isZeroBlock } from "./tar_header.ts";
 * isZeroBlock(new Uint8Array(512)); // true
 * ```
 */
export function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}

function cString(block: Uint8Array, start: number, length: number): string {
  let end = start;
  while (end < start + length && block[end] !== 0) end++;
  return decoder.decode(block.subarray(start, end));
}

/**
 * Decodes a numeric header field: octal text, or GNU base-256 when the top bit of the
 * first byte is set. Returns `undefined` for a field that is neither (or negative).
 *
 * @example
 * ```ts
 * import { parseNumericField } from "./tar_header.ts";
 * parseNumericField(new TextEncoder().encode("00000001750\0"), 0, 12); // 1000
 * ```
 */
export function parseNumericField(
  block: Uint8Array,
  start: number,
  length: number,
): number | undefined {
  const first = block[start];
  if (first & 0x80) {
    if (first === 0xff) return undefined; // negative base-256
    let value = first & 0x7f;
    for (let i = start + 1; i < start + length; i++) {
      value = value * 256 + block[i];
      if (!Number.isSafeInteger(value)) return undefined;
    }
    return value;
  }
  const text = cString(block, start, length).trim();
  if (text === "") return 0;
  if (!/^[0-7]+$/.test(text)) return undefined;
  const value = parseInt(text, 8);
  return Number.isSafeInteger(value) ? value : undefined;
}

/**
 * The checksum of a header block: the sum of its bytes with the checksum field read as
 * spaces. Returns the unsigned sum and the signed sum (some old tars wrote that one).
 *
 * @example
 * ```ts
 * import { headerChecksums } from "./tar_header.ts";
 * headerChecksums(new Uint8Array(512)).unsigned; // 256 (8 spaces)
 * ```
 */
export function headerChecksums(block: Uint8Array): { unsigned: number; signed: number } {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i];
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return { unsigned, signed };
}

/**
 * Decodes one header block, checking its checksum. Returns the header, or the reason it
 * is not one: `zero` (end-of-archive block), `checksum` (checksum does not match) or
 * `field` (a numeric field is not a number).
 *
 * @example
 * ```ts
 * import { decodeTarHeader, encodeTarHeader } from "./tar_header.ts";
 * const h = decodeTarHeader(encodeTarHeader({ name: "a.txt", size: 3 }));
 * if (typeof h !== "string") console.log(h.name, h.size); // a.txt 3
 * ```
 */
export function decodeTarHeader(block: Uint8Array): TarHeader | HeaderProblem {
  if (isZeroBlock(block)) return "zero";
  const stored = parseNumericField(block, 148, 8);
  const sums = headerChecksums(block);
  if (stored === undefined || (stored !== sums.unsigned && stored !== sums.signed)) {
    return "checksum";
  }
  const magic = decoder.decode(block.subarray(257, 263));
  const format = magic === "ustar\0" ? "ustar" : magic === "ustar " ? "gnu" : "v7";
  let name = cString(block, 0, 100);
  if (format === "ustar") {
    const prefix = cString(block, 345, 155);
    if (prefix !== "") name = `${prefix}/${name}`;
  }
  const mode = parseNumericField(block, 100, 8);
  const uid = parseNumericField(block, 108, 8);
  const gid = parseNumericField(block, 116, 8);
  const size = parseNumericField(block, 124, 12);
  const mtime = parseNumericField(block, 136, 12);
  if (size === undefined) return "field";
  const flag = block[156];
  return {
    name,
    mode: mode ?? 0,
    uid: uid ?? 0,
    gid: gid ?? 0,
    size,
    mtime: mtime ?? 0,
    typeflag: flag === 0 ? "0" : String.fromCharCode(flag),
    linkname: cString(block, 157, 100),
    format,
  };
}

function putString(block: Uint8Array, start: number, length: number, text: string): boolean {
  const bytes = encoder.encode(text);
  if (bytes.length > length) return false;
  block.set(bytes, start);
  return true;
}

function putOctal(block: Uint8Array, start: number, length: number, value: number): void {
  const text = Math.floor(value).toString(8).padStart(length - 1, "0");
  if (text.length > length - 1) throw new RangeError(`${value} does not fit a tar field`);
  putString(block, start, length, text + "\0");
}

function putBase256(block: Uint8Array, start: number, length: number, value: number): void {
  let v = value;
  for (let i = start + length - 1; i > start; i--) {
    block[i] = v % 256;
    v = Math.floor(v / 256);
  }
  block[start] = 0x80;
}

/**
 * Splits a name into ustar `prefix` and `name` fields, or returns undefined when it
 * does not fit (then a pax `path` record is needed).
 *
 * @example
 * ```ts
 * import { splitUstarName } from "./tar_header.ts";
 * splitUstarName("a/b.txt"); // { prefix: "", name: "a/b.txt" }
 * ```
 */
export function splitUstarName(name: string): { prefix: string; name: string } | undefined {
  const bytes = encoder.encode(name);
  if (bytes.length <= 100) return { prefix: "", name };
  if (bytes.length > 256) return undefined;
  // The prefix must end at a '/', which is dropped; the rest must fit 100 bytes.
  for (let i = name.length - 1; i > 0; i--) {
    if (name[i] !== "/") continue;
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (encoder.encode(prefix).length <= 155 && encoder.encode(rest).length <= 100 && rest) {
      return { prefix, name: rest };
    }
  }
  return undefined;
}

/**
 * Encodes one 512-byte header block with a valid checksum. Throws a `RangeError` when
 * the name or link name does not fit (callers write a pax header first, see
 * {@linkcode needsPax}).
 *
 * @example
 * ```ts
 * import { encodeTarHeader } from "./tar_header.ts";
 * const block = encodeTarHeader({ name: "manifest.json", size: 42 });
 * console.log(block.length); // 512
 * ```
 */
export function encodeTarHeader(fields: TarHeaderFields): Uint8Array {
  const block = new Uint8Array(BLOCK_SIZE);
  const split = fields.format === "gnu"
    ? (encoder.encode(fields.name).length <= 100 ? { prefix: "", name: fields.name } : undefined)
    : splitUstarName(fields.name);
  if (!split) throw new RangeError(`tar name too long for a header: ${fields.name}`);
  putString(block, 0, 100, split.name);
  putOctal(block, 100, 8, fields.mode ?? 0o644);
  putOctal(block, 108, 8, fields.uid ?? 0);
  putOctal(block, 116, 8, fields.gid ?? 0);
  const size = fields.size ?? 0;
  if (size > MAX_OCTAL_SIZE) putBase256(block, 124, 12, size);
  else putOctal(block, 124, 12, size);
  putOctal(block, 136, 12, fields.mtime ?? 0);
  block[156] = (fields.typeflag ?? "0").charCodeAt(0);
  if (!putString(block, 157, 100, fields.linkname ?? "")) {
    throw new RangeError(`tar link name too long for a header: ${fields.linkname}`);
  }
  if (fields.format === "gnu") putString(block, 257, 8, "ustar  \0");
  else {
    putString(block, 257, 6, "ustar\0");
    putString(block, 263, 2, "00");
    putString(block, 345, 155, split.prefix);
  }
  block.fill(0x20, 148, 156);
  const { unsigned } = headerChecksums(block);
  putString(block, 148, 8, unsigned.toString(8).padStart(6, "0") + "\0 ");
  return block;
}

/**
 * The pax records an entry needs because its name, link name or size do not fit the
 * ustar header (an empty object when none is needed).
 *
 * @example
 * ```ts
 * import { needsPax } from "./tar_header.ts";
 * needsPax({ name: "x".repeat(300) }); // { path: "xxx…" }
 * ```
 */
export function needsPax(fields: TarHeaderFields): Record<string, string> {
  const records: Record<string, string> = {};
  if (!splitUstarName(fields.name)) records.path = fields.name;
  if (fields.linkname && encoder.encode(fields.linkname).length > 100) {
    records.linkpath = fields.linkname;
  }
  if ((fields.size ?? 0) > MAX_OCTAL_SIZE) records.size = String(fields.size);
  return records;
}

/**
 * Encodes pax extended-header records (`"<len> key=value\n"`, the length counting itself).
 *
 * @example
 * ```ts
 * import { encodePaxRecords } from "./tar_header.ts";
 * new TextDecoder().decode(encodePaxRecords({ path: "a" })); // "9 path=a\n"
 * ```
 */
export function encodePaxRecords(records: Record<string, string>): Uint8Array {
  let text = "";
  for (const [key, value] of Object.entries(records)) {
    const body = ` ${key}=${value}\n`;
    const bodyLength = encoder.encode(body).length;
    let length = bodyLength + 1;
    while (String(length).length + bodyLength !== length) {
      length = String(length).length + bodyLength;
    }
    text += `${length}${body}`;
  }
  return encoder.encode(text);
}

/**
 * Decodes pax extended-header records; returns undefined when they are malformed.
 *
 * @example
 * ```ts
 * import { decodePaxRecords } from "./tar_header.ts";
 * decodePaxRecords(new TextEncoder().encode("9 path=a\n")); // { path: "a" }
 * ```
 */
export function decodePaxRecords(data: Uint8Array): Record<string, string> | undefined {
  // No prototype: a record called `__proto__` or `constructor` is just a record.
  const records: Record<string, string> = Object.create(null);
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break; // padding some writers leave
    let space = pos;
    while (space < data.length && data[space] !== 0x20) space++;
    const length = Number(decoder.decode(data.subarray(pos, space)));
    if (!Number.isSafeInteger(length) || length <= space - pos || pos + length > data.length) {
      return undefined;
    }
    const record = decoder.decode(data.subarray(space + 1, pos + length));
    if (!record.endsWith("\n")) return undefined;
    const eq = record.indexOf("=");
    if (eq <= 0) return undefined;
    records[record.slice(0, eq)] = record.slice(eq + 1, -1);
    pos += length;
  }
  return { ...records }; // a plain object again, with any `__proto__` record as its own key
}

/**
 * Rounds a data size up to whole blocks.
 *
 * @example
 * ```ts
 * import { paddedSize } from "./tar_header.ts";
 * paddedSize(1); // 512
 * ```
 */
export function paddedSize(size: number): number {
  return Math.ceil(size / BLOCK_SIZE) * BLOCK_SIZE;
}
