/**
 * Media types of manifests, indexes, configs and layers, and what they tell.
 *
 * @module
 */

/**
 * Every media type the library reads or writes.
 *
 * @example
 * ```ts
 * import { MediaType } from "./media_types.ts";
 * console.log(MediaType.OciManifest);
 * ```
 */
export const MediaType = {
  /** Docker image manifest, schema 2. */
  DockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  /** Docker manifest list (multi-platform). */
  DockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  /** OCI image manifest. */
  OciManifest: "application/vnd.oci.image.manifest.v1+json",
  /** OCI image index (multi-platform). */
  OciIndex: "application/vnd.oci.image.index.v1+json",
  /** Docker image config. */
  DockerConfig: "application/vnd.docker.container.image.v1+json",
  /** OCI image config. */
  OciConfig: "application/vnd.oci.image.config.v1+json",
  /** Docker gzip layer. */
  DockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  /** Docker uncompressed layer (used by `docker save` archives, not by registries). */
  DockerLayer: "application/vnd.docker.image.rootfs.diff.tar",
  /** Docker foreign (non-distributable) gzip layer. */
  DockerForeignLayerGzip: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  /** OCI uncompressed layer. */
  OciLayer: "application/vnd.oci.image.layer.v1.tar",
  /** OCI gzip layer. */
  OciLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  /** OCI zstd layer. */
  OciLayerZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
} as const;

/** The manifest types a registry may answer with, for `Accept`. */
export const MANIFEST_MEDIA_TYPES: readonly string[] = [
  MediaType.DockerManifest,
  MediaType.DockerManifestList,
  MediaType.OciManifest,
  MediaType.OciIndex,
];

/**
 * Whether a media type is an index (OCI index or Docker manifest list).
 *
 * @example
 * ```ts
 * import { isIndexMediaType } from "./media_types.ts";
 * isIndexMediaType("application/vnd.oci.image.index.v1+json"); // true
 * ```
 */
export function isIndexMediaType(mediaType: string | undefined): boolean {
  return mediaType === MediaType.OciIndex || mediaType === MediaType.DockerManifestList;
}

/**
 * Whether a media type is a single-image manifest (OCI or Docker schema 2).
 *
 * @example
 * ```ts
 * import { isManifestMediaType } from "./media_types.ts";
 * isManifestMediaType("application/vnd.docker.distribution.manifest.v2+json"); // true
 * ```
 */
export function isManifestMediaType(mediaType: string | undefined): boolean {
  return mediaType === MediaType.OciManifest || mediaType === MediaType.DockerManifest;
}

/** How a layer's bytes are compressed. */
export type Compression = "none" | "gzip" | "zstd" | "xz" | "bzip2";

/**
 * Tells a blob's compression from its first bytes (never from a name or media type).
 * Needs at least 6 bytes to recognise every format; fewer bytes mean "none".
 *
 * @example
 * ```ts
 * import { detectCompression } from "./media_types.ts";
 * detectCompression(new Uint8Array([0x1f, 0x8b, 0x08, 0, 0, 0])); // "gzip"
 * ```
 */
export function detectCompression(head: Uint8Array): Compression {
  const starts = (...magic: number[]) =>
    head.length >= magic.length && magic.every((b, i) => head[i] === b);
  if (starts(0x1f, 0x8b, 0x08)) return "gzip";
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return "zstd";
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return "xz";
  if (starts(0x42, 0x5a, 0x68)) return "bzip2";
  return "none";
}

/**
 * The layer media type for a compression, in the OCI or Docker family.
 *
 * @example
 * ```ts
 * import { layerMediaType } from "./media_types.ts";
 * layerMediaType("gzip", "docker"); // "application/vnd.docker.image.rootfs.diff.tar.gzip"
 * ```
 */
export function layerMediaType(compression: Compression, family: "oci" | "docker"): string {
  if (family === "docker") {
    if (compression === "gzip") return MediaType.DockerLayerGzip;
    if (compression === "none") return MediaType.DockerLayer;
    // Docker schema 2 has no zstd type; registries and loaders accept the OCI one.
    return compression === "zstd" ? MediaType.OciLayerZstd : MediaType.DockerLayer;
  }
  if (compression === "gzip") return MediaType.OciLayerGzip;
  if (compression === "zstd") return MediaType.OciLayerZstd;
  return MediaType.OciLayer;
}
