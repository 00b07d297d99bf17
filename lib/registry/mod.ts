/**
 * The registry client: the OCI distribution protocol with authentication, retries,
 * verified and resumable transfers. {@linkcode RegistryClient} is the entry point.
 *
 * @example
 * ```ts ignore
 * import { RegistryClient } from "./mod.ts";
 * const client = new RegistryClient({ url: "registry.example.com" });
 * console.log(await client.listTags("owner/app"));
 * ```
 *
 * @module
 */

export * from "./client.ts";
export * from "./errors.ts";
export type { Credentials, ResolvedCredentials } from "./credentials.ts";
export { resolveCredentials } from "./credentials.ts";
export type { BlobSource } from "./source_cursor.ts";
export type { UploadedBlob } from "./upload.ts";
export type { UploadResume } from "./upload_resume.ts";
export type { ConcreteUploadMode, UploadMode, UploadPolicy } from "./upload_policy.ts";
export { ImagesError, NotFoundError } from "../errors.ts";
export type { Descriptor, Platform } from "../oci/manifest.ts";
export type { FetchedManifest } from "./manifests.ts";
export { parseChallenges } from "./challenge.ts";
export type { Challenge } from "./challenge.ts";
export { parseLinkNext } from "./listings.ts";
