/**
 * Manifests in a registry: HEAD, GET (every manifest type accepted, at most 4 MiB,
 * the digest checked against `Docker-Content-Digest` and the digest asked for), PUT
 * by tag or digest with the manifest's media type, DELETE by digest.
 *
 * @module
 */

import { DigestMismatchError, ImagesError } from "../errors.ts";
import { checkDigest, isDigest, sha256Digest } from "../oci/digest.ts";
import { type Descriptor, MAX_MANIFEST_BYTES } from "../oci/manifest.ts";
import { MANIFEST_MEDIA_TYPES } from "../oci/media_types.ts";
import { checkRepository, isManifestReference } from "./endpoint.ts";
import { errorFromResponse, RegistryError, StalledError, UnsupportedError } from "./errors.ts";
import type { RegistryHttp } from "./request.ts";

/**
 * A manifest as the registry holds it.
 *
 * @example
 * ```ts ignore
 * const manifest: FetchedManifest = await getManifest(http, "app", "latest");
 * console.log(manifest.mediaType, manifest.digest);
 * ```
 */
export interface FetchedManifest {
  /** The bytes exactly as stored (their digest is the manifest's digest). */
  bytes: Uint8Array;
  /** Its media type. */
  mediaType: string;
  /** `sha256:` of `bytes`. */
  digest: string;
}

const ACCEPT = MANIFEST_MEDIA_TYPES.join(", ");

/**
 * How a manifest is named in messages: `host/repo:tag` or `host/repo@sha256:…`.
 *
 * @example
 * ```ts
 * import { manifestName } from "./manifests.ts";
 * manifestName("r.example.com", "app", "1.0"); // "r.example.com/app:1.0"
 * ```
 */
export function manifestName(host: string, repo: string, reference: string): string {
  return `${host}/${repo}${isDigest(reference) ? "@" : ":"}${reference}`;
}

function checkReference(reference: string, what: string): string {
  if (!isManifestReference(reference)) {
    throw new ImagesError(
      `${what}: invalid tag or digest ${JSON.stringify(reference)}`,
      "INVALID_REFERENCE",
    );
  }
  return reference;
}

function contentType(headers: Headers): string | undefined {
  const value = headers.get("content-type");
  return value ? value.split(";")[0].trim() : undefined;
}

/**
 * The descriptor of a manifest (media type, digest, size) from a `HEAD`, or undefined
 * when the repository has no such tag or digest. Falls back to a `GET` when the
 * registry does not send the digest.
 *
 * @example
 * ```ts ignore
 * import { headManifest } from "./manifests.ts";
 * const d = await headManifest(http, "app", "latest");
 * ```
 */
export async function headManifest(
  http: RegistryHttp,
  repo: string,
  reference: string,
  signal?: AbortSignal,
): Promise<Descriptor | undefined> {
  checkRepository(repo);
  const name = manifestName(http.host, repo, reference);
  const operation = `check manifest ${name}`;
  checkReference(reference, operation);
  const res = await http.send({
    method: "HEAD",
    url: `v2/${repo}/manifests/${reference}`,
    headers: { accept: ACCEPT },
    scopes: [`repository:${repo}:pull`],
    operation,
    signal,
  });
  await res.discard();
  if (res.status === 404) return undefined;
  if (!res.ok) throw await errorFromResponse(res.toResponse(), operation, "manifest");
  const digest = res.headers.get("docker-content-digest") ?? "";
  const length = Number(res.headers.get("content-length") ?? NaN);
  const mediaType = contentType(res.headers);
  if (!isDigest(digest) || !Number.isSafeInteger(length) || !mediaType) {
    const got = await getManifest(http, repo, reference, signal);
    return { mediaType: got.mediaType, digest: got.digest, size: got.bytes.byteLength };
  }
  if (isDigest(reference) && digest !== reference) {
    throw new DigestMismatchError(`manifest ${name}`, reference, digest);
  }
  return { mediaType, digest, size: length };
}

/**
 * A manifest's bytes, media type and digest, verified: the digest of the bytes must
 * equal the registry's `Docker-Content-Digest` and, when `reference` is a digest, it.
 * Throws {@linkcode ManifestNotFoundError} when there is no such manifest.
 *
 * @example
 * ```ts ignore
 * import { getManifest } from "./manifests.ts";
 * const { bytes, mediaType, digest } = await getManifest(http, "app", "latest");
 * ```
 */
export async function getManifest(
  http: RegistryHttp,
  repo: string,
  reference: string,
  signal?: AbortSignal,
): Promise<FetchedManifest> {
  checkRepository(repo);
  const name = manifestName(http.host, repo, reference);
  const operation = `get manifest ${name}`;
  checkReference(reference, operation);
  for (let attempt = 0;; attempt++) {
    const res = await http.send({
      method: "GET",
      url: `v2/${repo}/manifests/${reference}`,
      headers: { accept: ACCEPT },
      scopes: [`repository:${repo}:pull`],
      operation,
      signal,
    });
    if (!res.ok) throw await errorFromResponse(res.toResponse(), operation, "manifest");
    let bytes: Uint8Array;
    try {
      bytes = await res.bytes(MAX_MANIFEST_BYTES, `manifest ${name}`);
    } catch (e) {
      // A body cut short: ask again, as for any other dropped connection.
      // A stall is asked again once: each new one costs a stall timeout.
      const limit = e instanceof StalledError ? 1 : http.retry.maxRetries;
      if ((e as { code?: string }).code === "CONNECTION_FAILED" && attempt < limit) continue;
      throw e;
    }
    const digest = sha256Digest(bytes);
    const announced = res.headers.get("docker-content-digest");
    if (announced && announced.startsWith("sha256:") && announced !== digest) {
      throw new DigestMismatchError(`manifest ${name} (Docker-Content-Digest)`, announced, digest);
    }
    if (isDigest(reference) && reference !== digest) {
      throw new DigestMismatchError(`manifest ${name}`, reference, digest);
    }
    return { bytes, mediaType: mediaTypeOf(bytes, contentType(res.headers)), digest };
  }
}

function mediaTypeOf(bytes: Uint8Array, header: string | undefined): string {
  if (header && MANIFEST_MEDIA_TYPES.includes(header)) return header;
  try {
    const doc = JSON.parse(new TextDecoder().decode(bytes)) as { mediaType?: unknown };
    if (typeof doc.mediaType === "string" && doc.mediaType !== "") return doc.mediaType;
  } catch {
    // not JSON: the header is all we have
  }
  return header ?? "application/octet-stream";
}

/**
 * Puts a manifest under a tag or its digest, with `Content-Type` = `mediaType`, and
 * returns its digest (checked against the registry's `Docker-Content-Digest`).
 *
 * @example
 * ```ts ignore
 * import { putManifest } from "./manifests.ts";
 * const digest = await putManifest(http, "app", "1.0", bytes, "application/vnd.oci.image.manifest.v1+json");
 * ```
 */
export async function putManifest(
  http: RegistryHttp,
  repo: string,
  reference: string,
  bytes: Uint8Array,
  mediaType: string,
  signal?: AbortSignal,
): Promise<string> {
  checkRepository(repo);
  const name = manifestName(http.host, repo, reference);
  const operation = `put manifest ${name}`;
  checkReference(reference, operation);
  if (bytes.byteLength > MAX_MANIFEST_BYTES) {
    throw new ImagesError(
      `${operation}: ${bytes.byteLength} bytes is over the ${MAX_MANIFEST_BYTES}-byte limit`,
      "MANIFEST_TOO_LARGE",
    );
  }
  const digest = sha256Digest(bytes);
  if (isDigest(reference) && reference !== digest) {
    throw new DigestMismatchError(`${operation}: the manifest's bytes`, reference, digest);
  }
  const res = await http.send({
    method: "PUT",
    url: `v2/${repo}/manifests/${reference}`,
    headers: { "content-type": mediaType },
    body: bytes,
    scopes: [`repository:${repo}:pull,push`],
    operation,
    retry: true,
    signal,
  });
  if (!res.ok) throw await errorFromResponse(res.toResponse(), operation, "repository");
  await res.discard();
  const announced = res.headers.get("docker-content-digest");
  if (announced && announced.startsWith("sha256:") && announced !== digest) {
    throw new DigestMismatchError(`${operation}: the registry stored`, digest, announced);
  }
  return digest;
}

/**
 * Deletes a manifest by digest. Throws {@linkcode ManifestNotFoundError} when it is
 * not there, {@linkcode UnsupportedError} when the registry does not allow deleting.
 *
 * @example
 * ```ts ignore
 * import { deleteManifest } from "./manifests.ts";
 * await deleteManifest(http, "app", "sha256:…");
 * ```
 */
export async function deleteManifest(
  http: RegistryHttp,
  repo: string,
  digest: string,
  signal?: AbortSignal,
): Promise<void> {
  checkRepository(repo);
  const name = manifestName(http.host, repo, digest);
  const operation = `delete manifest ${name}`;
  checkDigest(digest, `${operation}: manifests are deleted by digest`);
  const res = await http.send({
    method: "DELETE",
    url: `v2/${repo}/manifests/${digest}`,
    scopes: [`repository:${repo}:delete`],
    operation,
    retry: true,
    signal,
  });
  if (res.ok) {
    await res.discard();
    return;
  }
  const error = await errorFromResponse(res.toResponse(), operation, "manifest");
  if (error instanceof RegistryError && res.status === 400) {
    const invalid = error.errors.some((e) =>
      e.code === "DIGEST_INVALID" || e.code === "NAME_INVALID"
    );
    if (!invalid && !(error instanceof UnsupportedError)) {
      throw new UnsupportedError(`${error.message} (deleting may be disabled)`, {
        status: 400,
        errors: error.errors,
      });
    }
  }
  throw error;
}
