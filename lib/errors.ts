/**
 * Error types shared by every part of the library.
 *
 * Every error a user can cause (bad input, a registry refusing, a network
 * failure) is an {@linkcode ImagesError}: its message names what was wrong and
 * where, and the command line prints it without a stack trace.
 *
 * @module
 */

/**
 * The machine-readable code of an {@linkcode ImagesError}: one name per meaning, stable
 * across releases. Every "not found" (an image, tag, manifest, blob or repository) has
 * the code `NOT_FOUND` and is a {@linkcode NotFoundError}.
 *
 * - `ABORTED`: cancelled through an `AbortSignal`, Ctrl-C or SIGTERM.
 * - `ACCESS_DENIED`: the registry's credentials do not allow the operation (403).
 * - `ARCHIVE_INVALID`: a local archive or layout is malformed, truncated or inconsistent.
 * - `AUTHENTICATION_FAILED`: the registry refused the credentials or asked for some (401).
 * - `BLOB_MISSING`: a destination was committed without a blob its manifests name.
 * - `COMPRESSION_FAILED`: compressing or decompressing a layer failed.
 * - `COMPRESSION_UNAVAILABLE`: the gzip engine asked for cannot run here.
 * - `CONFIG_INVALID`: the `Images` options are inconsistent.
 * - `CONNECTION_FAILED`: the registry could not be reached or stalled, after retries.
 * - `CONNECTION_REFUSED`: nothing listens on the registry's port (not retried).
 * - `CREDENTIALS_HELPER`: a Docker credential helper failed or printed no credentials.
 * - `CREDENTIALS_INVALID`: a Docker config or the credentials given do not parse.
 * - `DIGEST_INVALID`: text that should be a `sha256:` digest is not one.
 * - `DIGEST_MISMATCH`: bytes whose SHA-256 is not the digest they were announced with.
 * - `HOST_NOT_FOUND`: the registry's host name does not resolve (not retried).
 * - `INPUT_INVALID`: an input that cannot be read as asked (e.g. a terminal as stdin).
 * - `INSECURE_CREDENTIALS`: credentials would go over plain HTTP or to another host.
 * - `INTERNAL`: a bug of this library (a state it should never reach).
 * - `INVALID_ARGUMENT`: an option or argument out of its range.
 * - `INVALID_REFERENCE`: an image reference, tag or digest that does not parse.
 * - `JSON_INVALID`: a document that is not valid JSON.
 * - `LAYOUT_LOCKED`: another process holds the OCI layout's lock.
 * - `LISTING_TOO_LONG`: a registry lists more names than the library accepts.
 * - `MANIFEST_INVALID`: a manifest, index or config that is not what its schema says.
 * - `MANIFEST_TOO_LARGE`: a manifest, index, config or registry answer over its size limit.
 * - `NO_CACHE_DIR`: no folder for the blob cache can be found.
 * - `NO_SPACE`: what is to be written is more than the free space (found before writing).
 * - `NO_STORE`: no folder for the local image store can be found.
 * - `NOT_FOUND`: an image, tag, manifest, blob or repository that is not there.
 * - `PERMISSION_DENIED`: the runtime (Deno) was not granted a permission the operation needs.
 * - `PINNED_DIGEST_MISMATCH`: a `name:tag@digest` whose tag names another image.
 * - `PLATFORM_INVALID`: a platform that is not `os/arch[/variant]`.
 * - `PORT_BLOCKED`: the runtime's fetch refuses the registry's port.
 * - `REGISTRY_ERROR`: the registry answered with an error not named by another code.
 * - `REGISTRY_PROTOCOL`: the registry's answer breaks the distribution protocol.
 * - `REGISTRY_URL_INVALID`: a registry URL that does not parse or has a path or credentials.
 * - `SIZE_INVALID`: bytes whose count is not the size announced.
 * - `SOURCE_NOT_REOPENABLE`: a transfer to retry whose source cannot be read again.
 * - `STATE`: a destination used after it was committed or aborted.
 * - `SUSPENDED`: a transfer stopped where a later run can resume it.
 * - `TAG_SHARED`: deleting a tag would delete other tags of the same manifest.
 * - `TIMEOUT`: the run took longer than its `--timeout`.
 * - `TLS_CERTIFICATE`: the registry's TLS certificate was refused.
 * - `TLS_MISMATCH`: TLS spoken to a registry port that answers plain HTTP.
 * - `TOO_MANY_REDIRECTS`: the registry redirected more times than followed.
 * - `TOO_MANY_REQUESTS`: the registry kept asking to slow down (429) after the retries.
 * - `UNSUPPORTED`: the registry does not support the operation (e.g. deleting).
 * - `WRITE_FAILED`: writing a local file failed (disk full, read-only, ...).
 */
export type ErrorCode =
  | "ABORTED"
  | "ACCESS_DENIED"
  | "ARCHIVE_INVALID"
  | "AUTHENTICATION_FAILED"
  | "BLOB_MISSING"
  | "COMPRESSION_FAILED"
  | "COMPRESSION_UNAVAILABLE"
  | "CONFIG_INVALID"
  | "CONNECTION_FAILED"
  | "CONNECTION_REFUSED"
  | "CREDENTIALS_HELPER"
  | "CREDENTIALS_INVALID"
  | "DIGEST_INVALID"
  | "DIGEST_MISMATCH"
  | "HOST_NOT_FOUND"
  | "INPUT_INVALID"
  | "INSECURE_CREDENTIALS"
  | "INTERNAL"
  | "INVALID_ARGUMENT"
  | "INVALID_REFERENCE"
  | "JSON_INVALID"
  | "LAYOUT_LOCKED"
  | "LISTING_TOO_LONG"
  | "MANIFEST_INVALID"
  | "MANIFEST_TOO_LARGE"
  | "NO_CACHE_DIR"
  | "NO_SPACE"
  | "NO_STORE"
  | "NOT_FOUND"
  | "PERMISSION_DENIED"
  | "PINNED_DIGEST_MISMATCH"
  | "PLATFORM_INVALID"
  | "PORT_BLOCKED"
  | "REGISTRY_ERROR"
  | "REGISTRY_PROTOCOL"
  | "REGISTRY_URL_INVALID"
  | "SIZE_INVALID"
  | "SOURCE_NOT_REOPENABLE"
  | "STATE"
  | "SUSPENDED"
  | "TAG_SHARED"
  | "TIMEOUT"
  | "TLS_CERTIFICATE"
  | "TLS_MISMATCH"
  | "TOO_MANY_REDIRECTS"
  | "TOO_MANY_REQUESTS"
  | "UNSUPPORTED"
  | "WRITE_FAILED";

/**
 * Base class of every error this library raises on purpose.
 *
 * @example
 * ```ts
 * import { ImagesError } from "./errors.ts";
 * try {
 *   throw new ImagesError("something went wrong", "INTERNAL");
 * } catch (e) {
 *   if (e instanceof ImagesError) console.log(e.code, e.message);
 * }
 * ```
 */
export class ImagesError extends Error {
  /** A stable machine-readable code, e.g. `INVALID_REFERENCE`. */
  readonly code: ErrorCode;

  /**
   * Creates the error.
   *
   * @param message what was wrong and where, never a credential
   * @param code what kind of error it is
   * @param options the underlying cause, if any
   */
  constructor(message: string, code: ErrorCode, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * An image reference (name, tag, digest, `image://` URI) that does not parse.
 *
 * @example
 * ```ts
 * import { InvalidReferenceError } from "./errors.ts";
 * const e = new InvalidReferenceError("tag is longer than 128 characters", "image:a:" + "x".repeat(200));
 * console.log(e.message);
 * ```
 */
export class InvalidReferenceError extends ImagesError {
  /** The text that was being parsed. */
  readonly reference: string;

  /**
   * Creates the error.
   *
   * @param problem which part is wrong and why
   * @param reference the text that was being parsed
   */
  constructor(problem: string, reference: string) {
    super(`invalid image reference ${JSON.stringify(reference)}: ${problem}`, "INVALID_REFERENCE");
    this.reference = reference;
  }
}

/**
 * A local archive or layout that is malformed, truncated or inconsistent.
 *
 * @example
 * ```ts
 * import { ArchiveError } from "./errors.ts";
 * const e = new ArchiveError("image.tar", "manifest.json", "not valid JSON");
 * console.log(e.message); // image.tar: manifest.json: not valid JSON
 * ```
 */
export class ArchiveError extends ImagesError {
  /** The archive file or layout directory. */
  readonly file: string;
  /** The entry inside it, if the problem is in one entry. */
  readonly entry?: string;

  /**
   * Creates the error.
   *
   * @param file the archive file or layout directory
   * @param entry the entry inside it, or undefined for the archive as a whole
   * @param problem what was wrong
   * @param options the underlying cause, if any
   */
  constructor(file: string, entry: string | undefined, problem: string, options?: ErrorOptions) {
    super(
      entry === undefined ? `${file}: ${problem}` : `${file}: ${entry}: ${problem}`,
      "ARCHIVE_INVALID",
      options,
    );
    this.file = file;
    this.entry = entry;
  }
}

/**
 * Bytes whose SHA-256 is not the digest they were announced with.
 *
 * @example
 * ```ts
 * import { DigestMismatchError } from "./errors.ts";
 * const e = new DigestMismatchError("layer 1 of image.tar", "sha256:aa", "sha256:bb");
 * console.log(e.message);
 * ```
 */
export class DigestMismatchError extends ImagesError {
  /** The digest the bytes should have had. */
  readonly expected: string;
  /** The digest the bytes had. */
  readonly actual: string;

  /**
   * Creates the error.
   *
   * @param what names the blob or entry that was being read
   * @param expected the digest announced
   * @param actual the digest computed
   */
  constructor(what: string, expected: string, actual: string) {
    super(`${what}: digest mismatch: expected ${expected}, got ${actual}`, "DIGEST_MISMATCH");
    this.expected = expected;
    this.actual = actual;
  }
}

/**
 * An image, tag, manifest, blob or repository that is not where it was looked for: the
 * one family of "not found", so a caller catches it once (`instanceof NotFoundError`,
 * or `code === "NOT_FOUND"`). {@linkcode ImageNotFoundError} and the registry's
 * `RegistryNotFoundError` (manifest, blob, repository) extend it.
 *
 * @example
 * ```ts
 * import { NotFoundError } from "./errors.ts";
 * console.log(new NotFoundError("image:ubuntu:latest not found in registry.example.com").message);
 * ```
 */
export class NotFoundError extends ImagesError {
  /** Always `NOT_FOUND`, whichever thing was not found. */
  declare readonly code: "NOT_FOUND";

  /**
   * Creates the error.
   *
   * @param message what was not found and where
   * @param options the underlying cause, if any
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, "NOT_FOUND", options);
  }
}

/**
 * An image (a tag or a digest of a repository, or the repository itself) that the
 * registry does not have. Every `Images` method throws this one for a missing
 * image, with the same message: `image <reference> not found`; the registry's own error
 * is its `cause`.
 *
 * @example
 * ```ts
 * import { ImageNotFoundError } from "./errors.ts";
 * const e = new ImageNotFoundError("image://default/alice/app:1.0");
 * console.log(e.message); // image image://default/alice/app:1.0 not found
 * ```
 */
export class ImageNotFoundError extends NotFoundError {
  /** The image as it was asked for, e.g. `image://default/alice/app:1.0`. */
  readonly image: string;

  /**
   * Creates the error.
   *
   * @param image the image as it was asked for
   * @param options the registry's error, if any
   */
  constructor(image: string, options?: ErrorOptions) {
    super(`image ${image} not found`, options);
    this.image = image;
  }
}

/**
 * A reference pinning a tag to a digest (`name:tag@sha256:…`) whose tag, in the
 * registry (or the local archive), is another image: nothing is read or written for it.
 *
 * @example
 * ```ts
 * import { PinnedDigestError } from "./errors.ts";
 * const pinned = "sha256:" + "a".repeat(64);
 * const e = new PinnedDigestError(`app:v1@${pinned}`, "v1", pinned, "sha256:" + "b".repeat(64));
 * console.log(e.code); // PINNED_DIGEST_MISMATCH
 * ```
 */
export class PinnedDigestError extends ImagesError {
  /** The digest the reference pins. */
  readonly pinned: string;
  /** The digest the tag has in the registry; undefined when only "another image" is known. */
  readonly actual?: string;

  /**
   * Creates the error.
   *
   * @param image the reference as given
   * @param tag its tag
   * @param pinned the digest it pins
   * @param actual the digest the tag has in the registry, if that is what differs
   * @param where where the tag was looked up (default: the registry)
   */
  constructor(
    image: string,
    tag: string,
    pinned: string,
    actual?: string,
    where = "the registry",
  ) {
    super(
      actual === undefined
        ? `${image}: tag ${tag} names another image than the pinned ${pinned} in ${where}`
        : `${image}: tag ${tag} is ${actual} in ${where}, not the pinned ${pinned}`,
      "PINNED_DIGEST_MISMATCH",
    );
    this.pinned = pinned;
    this.actual = actual;
  }
}

/**
 * The operation was cancelled through an `AbortSignal` (or Ctrl-C).
 *
 * @example
 * ```ts
 * import { AbortedError } from "./errors.ts";
 * console.log(new AbortedError("push").message); // push aborted
 * ```
 */
export class AbortedError extends ImagesError {
  /**
   * Creates the error.
   *
   * @param operation what was aborted
   */
  constructor(operation: string) {
    super(`${operation} aborted`, "ABORTED");
  }
}
