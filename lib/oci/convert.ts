/**
 * Docker → OCI conversion of manifests and indexes, as containers/image (skopeo) does it
 * when it writes an `oci:` layout: every Docker media type gets its OCI counterpart, the
 * digests and sizes stay, so the config bytes (and the image ID) are unchanged while
 * the manifest's own digest changes.
 *
 * OCI layouts and archives must hold OCI types (umoci refuses Docker ones, skopeo and
 * podman find no image by tag behind them), and zstd layers exist only in OCI manifests.
 *
 * @module
 */

import type { Descriptor, ImageIndex, ImageManifest } from "./manifest.ts";
import { MediaType } from "./media_types.ts";

/** The OCI type of a non-distributable gzip layer (Docker's "foreign" layer). */
const OCI_NONDISTRIBUTABLE_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";

const DOCKER_TO_OCI: Readonly<Record<string, string>> = {
  [MediaType.DockerManifest]: MediaType.OciManifest,
  [MediaType.DockerManifestList]: MediaType.OciIndex,
  [MediaType.DockerConfig]: MediaType.OciConfig,
  [MediaType.DockerLayerGzip]: MediaType.OciLayerGzip,
  [MediaType.DockerLayer]: MediaType.OciLayer,
  [MediaType.DockerForeignLayerGzip]: OCI_NONDISTRIBUTABLE_GZIP,
};

/**
 * The OCI media type standing for a Docker one; any other type is returned as it is.
 *
 * @example
 * ```ts
 * import { ociMediaType } from "./convert.ts";
 * ociMediaType("application/vnd.docker.container.image.v1+json");
 * // "application/vnd.oci.image.config.v1+json"
 * ```
 */
export function ociMediaType(mediaType: string): string {
  return DOCKER_TO_OCI[mediaType] ?? mediaType;
}

/**
 * Whether a manifest, index or any descriptor in it has a Docker media type.
 *
 * @example
 * ```ts
 * import { hasDockerMediaTypes } from "./convert.ts";
 * hasDockerMediaTypes({ schemaVersion: 2, manifests: [] }); // false
 * ```
 */
export function hasDockerMediaTypes(doc: ImageManifest | ImageIndex): boolean {
  const types = "manifests" in doc
    ? [doc.mediaType, ...doc.manifests.map((d) => d.mediaType)]
    : [doc.mediaType, doc.config.mediaType, ...doc.layers.map((d) => d.mediaType)];
  return types.some((t) => t !== undefined && t in DOCKER_TO_OCI);
}

/** A descriptor with its media type converted; field order as OCI writes it. */
function ociDescriptor(d: Descriptor): Descriptor {
  const { mediaType, digest, size, ...rest } = d;
  return { mediaType: ociMediaType(mediaType), digest, size, ...rest };
}

/**
 * The bytes of an OCI image manifest standing for `manifest` (Docker schema 2 or OCI):
 * the config and layers keep their digests, their media types become OCI ones.
 *
 * @example
 * ```ts
 * import { ociManifestBytes } from "./convert.ts";
 * const bytes = ociManifestBytes({
 *   schemaVersion: 2,
 *   mediaType: "application/vnd.docker.distribution.manifest.v2+json",
 *   config: {
 *     mediaType: "application/vnd.docker.container.image.v1+json",
 *     digest: "sha256:" + "0".repeat(64),
 *     size: 2,
 *   },
 *   layers: [],
 * });
 * console.log(new TextDecoder().decode(bytes).includes("vnd.oci.image.manifest")); // true
 * ```
 */
export function ociManifestBytes(manifest: ImageManifest): Uint8Array {
  const { schemaVersion: _s, mediaType: _m, config, layers, ...rest } = manifest;
  return new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: ociDescriptor(config),
    layers: layers.map(ociDescriptor),
    ...rest,
  }));
}

/**
 * The bytes of an OCI image index listing `manifests` (already converted children, with
 * their platforms), keeping the other fields of `index`.
 *
 * @example
 * ```ts
 * import { ociIndexBytes } from "./convert.ts";
 * const bytes = ociIndexBytes({ schemaVersion: 2, manifests: [] }, []);
 * console.log(new TextDecoder().decode(bytes));
 * ```
 */
export function ociIndexBytes(index: ImageIndex, manifests: Descriptor[]): Uint8Array {
  const { schemaVersion: _s, mediaType: _m, manifests: _old, ...rest } = index;
  return new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: manifests.map(ociDescriptor),
    ...rest,
  }));
}
