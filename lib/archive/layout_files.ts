/**
 * The small files of OCI layouts and `docker save` archives: blob paths, `oci-layout`,
 * `index.json` entries with their name annotations, and `manifest.json` /
 * `repositories` of `docker save`.
 *
 * @module
 */

import { ArchiveError, ImagesError } from "../errors.ts";
import { digestHex } from "../oci/digest.ts";
import { type Descriptor, MAX_LAYERS, parseJson } from "../oci/manifest.ts";
import { familiarImageName, familiarRepository, fullImageName, imageTag } from "./names.ts";
import { normalizeArchivePath } from "./tar_path.ts";

/** Annotation holding an image's full reference (containerd, Docker 25+). */
export const CONTAINERD_NAME_ANNOTATION = "io.containerd.image.name";
/** Annotation holding an image's reference name in an OCI layout (Docker writes the tag). */
export const REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name";

/** The bytes of an `oci-layout` file. */
export const OCI_LAYOUT_BYTES: Uint8Array = new TextEncoder().encode(
  JSON.stringify({ imageLayoutVersion: "1.0.0" }),
);

/**
 * The path of a blob inside a layout: `blobs/sha256/<hex>`.
 *
 * @example
 * ```ts
 * import { blobPath } from "./layout_files.ts";
 * blobPath("sha256:" + "ab".repeat(32)); // "blobs/sha256/abab…"
 * ```
 */
export function blobPath(digest: string): string {
  return `blobs/sha256/${digestHex(digest)}`;
}

/**
 * The digest a path names when it is `blobs/sha256/<64 hex>`, else undefined.
 *
 * @example
 * ```ts
 * import { digestFromBlobPath } from "./layout_files.ts";
 * digestFromBlobPath("blobs/sha256/" + "0".repeat(64)); // "sha256:000…"
 * ```
 */
export function digestFromBlobPath(path: string): string | undefined {
  const m = /^blobs\/sha256\/([a-f0-9]{64})$/.exec(path);
  return m ? `sha256:${m[1]}` : undefined;
}

/**
 * Serialises a JSON document to bytes (compact, as registries and Docker store them).
 *
 * @example
 * ```ts
 * import { jsonBytes } from "./layout_files.ts";
 * jsonBytes({ a: 1 }); // bytes of '{"a":1}'
 * ```
 */
export function jsonBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

/**
 * The annotations an `index.json` entry gets for an image called `name`: the full
 * reference as `io.containerd.image.name` and the tag as
 * `org.opencontainers.image.ref.name` (as Docker 25+ and containerd write them).
 * A name that is not a docker reference is kept as the ref name only.
 *
 * @example
 * ```ts
 * import { nameAnnotations } from "./layout_files.ts";
 * nameAnnotations("nginx:1.25");
 * // { "io.containerd.image.name": "docker.io/library/nginx:1.25",
 * //   "org.opencontainers.image.ref.name": "1.25" }
 * ```
 */
export function nameAnnotations(name: string): Record<string, string> {
  const full = fullImageName(name);
  if (full === undefined) return { [REF_NAME_ANNOTATION]: name };
  const tag = imageTag(name);
  return tag === undefined
    ? { [CONTAINERD_NAME_ANNOTATION]: full }
    : { [CONTAINERD_NAME_ANNOTATION]: full, [REF_NAME_ANNOTATION]: tag };
}

/**
 * The name an `index.json` entry is known by: its full reference when it has one, else
 * its ref name, else undefined.
 *
 * @example
 * ```ts
 * import { indexEntryName } from "./layout_files.ts";
 * indexEntryName({
 *   mediaType: "application/vnd.oci.image.manifest.v1+json",
 *   digest: "sha256:" + "0".repeat(64),
 *   size: 1,
 *   annotations: { "org.opencontainers.image.ref.name": "v1" },
 * }); // "v1"
 * ```
 */
export function indexEntryName(descriptor: Descriptor): string | undefined {
  return descriptor.annotations?.[CONTAINERD_NAME_ANNOTATION] ??
    descriptor.annotations?.[REF_NAME_ANNOTATION];
}

/** One image of a `docker save` `manifest.json`. */
export interface DockerSaveImage {
  /** Path of the config inside the archive, normalised. */
  config: string;
  /** Names as stored (`nginx:latest`); empty for an untagged image. */
  repoTags: string[];
  /** Paths of the layer tars, base first, normalised. */
  layers: string[];
}

/**
 * Parses and checks a `docker save` `manifest.json`; errors name `file` and the entry.
 *
 * @example
 * ```ts
 * import { parseDockerSaveManifest } from "./layout_files.ts";
 * const images = parseDockerSaveManifest(
 *   new TextEncoder().encode('[{"Config":"c.json","RepoTags":["a:b"],"Layers":["l/layer.tar"]}]'),
 *   "image.tar",
 * );
 * console.log(images[0].layers); // ["l/layer.tar"]
 * ```
 */
export function parseDockerSaveManifest(bytes: Uint8Array, file: string): DockerSaveImage[] {
  const entry = "manifest.json";
  const doc = inEntry(file, entry, () => parseJson(bytes, entry));
  if (!Array.isArray(doc)) throw new ArchiveError(file, entry, "expected a JSON array of images");
  if (doc.length === 0) throw new ArchiveError(file, entry, "lists no image");
  return doc.map((item: unknown, i) => {
    const where = `image ${i}`;
    if (typeof item !== "object" || item === null) {
      throw new ArchiveError(file, entry, `${where}: expected an object`);
    }
    const { Config, RepoTags, Layers } = item as Record<string, unknown>;
    const path = (value: unknown, field: string): string => {
      if (typeof value !== "string" || value === "") {
        throw new ArchiveError(file, entry, `${where}: ${field} must be a path`);
      }
      const normal = normalizeArchivePath(value);
      if (normal === undefined || normal === "") {
        throw new ArchiveError(
          file,
          entry,
          `${where}: ${field} ${JSON.stringify(value)} leaves the archive`,
        );
      }
      return normal;
    };
    if (!Array.isArray(Layers)) {
      throw new ArchiveError(file, entry, `${where}: Layers must be an array`);
    }
    if (Layers.length > MAX_LAYERS) {
      throw new ArchiveError(
        file,
        entry,
        `${where}: ${Layers.length} layers is over the limit of ${MAX_LAYERS}`,
      );
    }
    if (RepoTags !== undefined && RepoTags !== null && !Array.isArray(RepoTags)) {
      throw new ArchiveError(file, entry, `${where}: RepoTags must be an array`);
    }
    const tags = (RepoTags ?? []) as unknown[];
    if (!tags.every((t) => typeof t === "string")) {
      throw new ArchiveError(file, entry, `${where}: RepoTags must hold strings`);
    }
    return {
      config: path(Config, "Config"),
      repoTags: tags as string[],
      layers: Layers.map((l, j) => path(l, `Layers[${j}]`)),
    };
  });
}

/** One image to describe in a written `manifest.json`. */
export interface DockerSaveRecord {
  /** Digest of the config blob. */
  config: string;
  /** Digests of the layer blobs, base first. */
  layers: string[];
  /** Names (any reference form; written in Docker's short form). */
  names: string[];
}

/**
 * Builds `manifest.json` (pointing into `blobs/sha256/`) and `repositories` for a
 * docker-loadable archive.
 *
 * @example
 * ```ts
 * import { dockerSaveFiles } from "./layout_files.ts";
 * const d = "sha256:" + "0".repeat(64);
 * const { manifest, repositories } = dockerSaveFiles([{ config: d, layers: [d], names: ["a:b"] }]);
 * ```
 */
export function dockerSaveFiles(
  images: DockerSaveRecord[],
): { manifest: Uint8Array; repositories: Uint8Array } {
  const repositories: Record<string, Record<string, string>> = {};
  const manifest = images.map((image) => {
    const repoTags: string[] = [];
    for (const name of image.names) {
      const short = familiarImageName(name);
      const tag = imageTag(name);
      const repo = familiarRepository(name);
      if (short === undefined || tag === undefined || repo === undefined) continue;
      if (short.includes("@")) continue; // RepoTags hold tags only
      if (!repoTags.includes(short)) repoTags.push(short);
      const top = image.layers.at(-1);
      if (top) (repositories[repo] ??= {})[tag] = digestHex(top);
    }
    return {
      Config: blobPath(image.config),
      RepoTags: repoTags,
      Layers: image.layers.map(blobPath),
    };
  });
  return { manifest: jsonBytes(manifest), repositories: jsonBytes(repositories) };
}

/**
 * Runs `fn`, turning an {@linkcode ImagesError} it throws (e.g. from JSON or manifest
 * parsing) into an {@linkcode ArchiveError} naming `file` and `entry`.
 *
 * @example
 * ```ts
 * import { inEntry } from "./layout_files.ts";
 * import { parseJson } from "../oci/manifest.ts";
 * const doc = inEntry("image.tar", "index.json", () => parseJson(new TextEncoder().encode("{}"), "index.json"));
 * ```
 */
export function inEntry<T>(file: string, entry: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ImagesError && !(e instanceof ArchiveError)) {
      // The parsers prefix their messages with the name they were given: drop it.
      const message = e.message.startsWith(`${entry}: `)
        ? e.message.slice(entry.length + 2)
        : e.message.startsWith(`${entry} `)
        ? e.message.slice(entry.length + 1)
        : e.message;
      throw new ArchiveError(file, entry, message, { cause: e });
    }
    throw e;
  }
}
