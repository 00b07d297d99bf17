/**
 * Descriptors, manifests, indexes and image configs: types and checked parsing.
 *
 * Parsing refuses documents over {@linkcode MAX_MANIFEST_BYTES}, JSON nested too deep,
 * more than {@linkcode MAX_LAYERS} layers, and descriptors without a valid digest or size,
 * naming the document in every error.
 *
 * @module
 */

import { ImagesError } from "../errors.ts";
import { checkDigest } from "./digest.ts";
import { isIndexMediaType, isManifestMediaType, MediaType } from "./media_types.ts";

/** The largest manifest, index or config accepted (registries must take 4 MiB). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** The most layers an image may have. */
export const MAX_LAYERS = 1000;
/** The deepest JSON nesting accepted. */
export const MAX_JSON_DEPTH = 64;

/** A platform an image runs on. */
export interface Platform {
  /** Operating system, e.g. `linux`. */
  os: string;
  /** CPU architecture, e.g. `amd64`. */
  architecture: string;
  /** CPU variant, e.g. `v8`. */
  variant?: string;
  /** OS version (Windows). */
  "os.version"?: string;
}

/** A reference to a blob or manifest by content: media type, digest and size. */
export interface Descriptor {
  /** Media type of the referenced content. */
  mediaType: string;
  /** `sha256:<hex>` of the content. */
  digest: string;
  /** Size of the content in bytes. */
  size: number;
  /** Free-form annotations, e.g. `org.opencontainers.image.ref.name`. */
  annotations?: Record<string, string>;
  /** The platform of a manifest inside an index. */
  platform?: Platform;
  /** Other places the content may be fetched from. */
  urls?: string[];
}

/** A single-platform image manifest (OCI or Docker schema 2). */
export interface ImageManifest {
  /** Always 2. */
  schemaVersion: 2;
  /** The manifest's media type. */
  mediaType?: string;
  /** The image config blob. */
  config: Descriptor;
  /** The layers, base first. */
  layers: Descriptor[];
  /** Annotations. */
  annotations?: Record<string, string>;
  /** OCI artifact type. */
  artifactType?: string;
  /** OCI subject. */
  subject?: Descriptor;
}

/** A multi-platform index (OCI index or Docker manifest list). */
export interface ImageIndex {
  /** Always 2. */
  schemaVersion: 2;
  /** The index's media type. */
  mediaType?: string;
  /** One descriptor per platform (or nested index). */
  manifests: Descriptor[];
  /** Annotations. */
  annotations?: Record<string, string>;
}

/** The parts of an image config this library reads. */
export interface ImageConfig {
  /** CPU architecture. */
  architecture?: string;
  /** Operating system. */
  os?: string;
  /** CPU variant. */
  variant?: string;
  /** The layers' uncompressed digests. */
  rootfs: { type: string; diff_ids: string[] };
  /** Everything else in the config, untouched. */
  [key: string]: unknown;
}

/**
 * Parses JSON bytes with the size and nesting limits, naming `what` in errors.
 *
 * @example
 * ```ts
 * import { parseJson } from "./manifest.ts";
 * parseJson(new TextEncoder().encode('{"a":1}'), "example.json"); // { a: 1 }
 * ```
 */
export function parseJson(bytes: Uint8Array, what: string): unknown {
  if (bytes.byteLength > MAX_MANIFEST_BYTES) {
    throw new ImagesError(
      `${what}: ${bytes.byteLength} bytes is over the ${MAX_MANIFEST_BYTES}-byte limit`,
      "MANIFEST_TOO_LARGE",
    );
  }
  const text = new TextDecoder().decode(bytes);
  checkNesting(text, what);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ImagesError(`${what}: not valid JSON (${(e as Error).message})`, "JSON_INVALID");
  }
}

/** Refuses absurdly deep JSON before `JSON.parse` can blow the stack on it. */
function checkNesting(text: string, what: string): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash escapes the next character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > MAX_JSON_DEPTH) {
        throw new ImagesError(
          `${what}: JSON nested deeper than ${MAX_JSON_DEPTH} levels`,
          "JSON_INVALID",
        );
      }
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function fail(what: string, problem: string): never {
  throw new ImagesError(`${what}: ${problem}`, "MANIFEST_INVALID");
}

/**
 * Checks that `value` is a descriptor and returns it typed, naming `where` in errors.
 *
 * @example
 * ```ts
 * import { parseDescriptor } from "./manifest.ts";
 * const d = parseDescriptor(
 *   { mediaType: "application/octet-stream", digest: "sha256:" + "0".repeat(64), size: 0 },
 *   "example",
 * );
 * ```
 */
export function parseDescriptor(value: unknown, where: string): Descriptor {
  if (!isObject(value)) fail(where, "expected a descriptor object");
  const { mediaType, size } = value;
  if (typeof mediaType !== "string" || mediaType === "") fail(where, "mediaType is missing");
  checkDigest(value.digest, `${where}.digest`);
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
    fail(where, `size must be a non-negative integer, got ${JSON.stringify(size)}`);
  }
  if (value.annotations !== undefined) checkAnnotations(value.annotations, where);
  if (value.platform !== undefined) {
    const p = value.platform;
    if (!isObject(p) || typeof p.os !== "string" || typeof p.architecture !== "string") {
      fail(where, "platform must have os and architecture");
    }
    checkPlatformStrings(p, `${where}.platform`);
  }
  return value as unknown as Descriptor;
}

/** Annotations are a map of strings to strings (OCI image spec, "Annotations"). */
function checkAnnotations(value: unknown, where: string): void {
  if (!isObject(value)) fail(where, "annotations must be an object");
  for (const [key, text] of Object.entries(value)) {
    if (typeof text !== "string") {
      fail(
        where,
        `annotation ${JSON.stringify(key.slice(0, 100))} must be a string, got ${
          JSON.stringify(text)?.slice(0, 100)
        }`,
      );
    }
  }
}

/** A parsed manifest or index, told apart by `kind`. */
export type ParsedManifest =
  | { kind: "manifest"; mediaType: string; manifest: ImageManifest }
  | { kind: "index"; mediaType: string; index: ImageIndex };

/**
 * Parses a manifest or index. The media type comes from the document, else from
 * `fallbackMediaType` (a registry's `Content-Type` or a parent descriptor), else from its shape.
 *
 * @example
 * ```ts
 * import { parseManifest } from "./manifest.ts";
 * const bytes = new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, manifests: [] }));
 * const parsed = parseManifest(bytes, "index.json");
 * console.log(parsed.kind); // "index"
 * ```
 */
export function parseManifest(
  bytes: Uint8Array,
  what: string,
  fallbackMediaType?: string,
): ParsedManifest {
  const doc = parseJson(bytes, what);
  if (!isObject(doc)) fail(what, "expected a JSON object");
  if (doc.schemaVersion !== 2) {
    fail(what, `schemaVersion must be 2, got ${JSON.stringify(doc.schemaVersion)}`);
  }
  const declared = typeof doc.mediaType === "string" ? doc.mediaType : undefined;
  let mediaType = declared ?? fallbackMediaType;
  if (!isIndexMediaType(mediaType) && !isManifestMediaType(mediaType)) {
    if (Array.isArray(doc.manifests)) mediaType = MediaType.OciIndex;
    else if (isObject(doc.config)) mediaType = MediaType.OciManifest;
    else fail(what, `unsupported media type ${JSON.stringify(mediaType)}`);
  }
  if (doc.annotations !== undefined) checkAnnotations(doc.annotations, what);
  if (isIndexMediaType(mediaType)) {
    if (!Array.isArray(doc.manifests)) fail(what, "manifests must be an array");
    doc.manifests.forEach((d, i) => parseDescriptor(d, `${what} manifests[${i}]`));
    return { kind: "index", mediaType: mediaType!, index: doc as unknown as ImageIndex };
  }
  parseDescriptor(doc.config, `${what} config`);
  if (!Array.isArray(doc.layers)) fail(what, "layers must be an array");
  if (doc.layers.length > MAX_LAYERS) {
    fail(what, `${doc.layers.length} layers is over the limit of ${MAX_LAYERS}`);
  }
  doc.layers.forEach((d, i) => parseDescriptor(d, `${what} layers[${i}]`));
  return { kind: "manifest", mediaType: mediaType!, manifest: doc as unknown as ImageManifest };
}

/**
 * Parses an image config and checks its `rootfs.diff_ids`.
 *
 * @example
 * ```ts
 * import { parseConfig } from "./manifest.ts";
 * const bytes = new TextEncoder().encode(
 *   JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } }),
 * );
 * console.log(parseConfig(bytes, "config").os); // "linux"
 * ```
 */
export function parseConfig(bytes: Uint8Array, what: string): ImageConfig {
  const doc = parseJson(bytes, what);
  if (!isObject(doc)) fail(what, "expected a JSON object");
  const rootfs = doc.rootfs;
  if (!isObject(rootfs) || !Array.isArray(rootfs.diff_ids)) {
    fail(what, "rootfs.diff_ids is missing");
  }
  if (rootfs.diff_ids.length > MAX_LAYERS) {
    fail(what, `${rootfs.diff_ids.length} layers is over the limit of ${MAX_LAYERS}`);
  }
  rootfs.diff_ids.forEach((d, i) => checkDigest(d, `${what} rootfs.diff_ids[${i}]`));
  checkPlatformStrings(doc, what);
  return doc as ImageConfig;
}

/** A platform's words (a config's, an index entry's), where given, are strings. */
function checkPlatformStrings(value: Record<string, unknown>, where: string): void {
  for (const key of ["os", "architecture", "variant"]) {
    if (value[key] !== undefined && typeof value[key] !== "string") {
      fail(where, `${key} must be a string, got ${JSON.stringify(value[key])}`);
    }
  }
}
