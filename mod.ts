/**
 * `@apolo/images`: the Apolo SDK's Images API (push, pull, digest, rm, list, tags, size,
 * tagInfo) for Deno and Bun, with no Docker daemon. Push reads an image straight from a
 * `docker save` archive or an OCI layout and streams its blobs to any OCI distribution
 * registry; pull writes an archive that `docker load` and `podman load` accept, or an
 * OCI layout.
 *
 * @example
 * ```ts ignore
 * import { Images, LocalImage } from "@apolo/images";
 *
 * const images = new Images({
 *   registries: { default: "https://registry.example.com" },
 *   clusterName: "default",
 *   owner: "alice",
 *   username: "alice",
 *   password: Deno.env.get("APOLO_TOKEN"),
 * });
 * const remote = await images.push(new LocalImage("app", "1.0"), undefined, { input: "app.tar" });
 * console.log(await images.digest(remote));
 * await images.pull(remote, undefined, { output: "app-copy.tar" });
 * ```
 *
 * @module
 */

export { Images, type ImagesOptions, type PullOptions, type PushOptions } from "./lib/images.ts";
export {
  ImageNameParser,
  type ImageNameParserConfig,
  LocalImage,
  type ParseOptions,
  RemoteImage,
  type RemoteImageInit,
  Tag,
  type TagOption,
} from "./lib/reference.ts";
export {
  AbstractDockerImageProgress,
  type ImageProgressPull,
  type ImageProgressPush,
  type ImageProgressStep,
  type StepStatus,
} from "./lib/progress.ts";
export {
  AbortedError,
  ArchiveError,
  DigestMismatchError,
  type ErrorCode,
  ImageNotFoundError,
  ImagesError,
  InvalidReferenceError,
  NotFoundError,
  PinnedDigestError,
} from "./lib/errors.ts";
export {
  AuthenticationError,
  AuthorizationError,
  BlobNotFoundError,
  ManifestNotFoundError,
  RegistryConnectionError,
  RegistryError,
  RegistryNotFoundError,
  RepositoryNotFoundError,
  StalledError,
  TooManyRequestsError,
  UnsupportedError,
} from "./lib/registry/errors.ts";
export type { OciErrorEntry, RegistryErrorInfo } from "./lib/registry/errors.ts";
export { defaultStorePath, type OutputFormat } from "./lib/store.ts";
export { defaultCacheDir } from "./lib/copy/blob_cache.ts";
export type { Platform } from "./lib/oci/manifest.ts";
export type { UploadMode } from "./lib/registry/mod.ts";
export type { GzipEngine, GzipEngineChoice } from "./lib/copy/native_gzip.ts";
export type { LayerCompression } from "./lib/copy/compress.ts";
