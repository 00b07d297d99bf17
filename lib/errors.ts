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
 * Base class of every error this library raises on purpose.
 *
 * @example
 * ```ts
 * import { ImagesError } from "./errors.ts";
 * try {
 *   throw new ImagesError("something went wrong", "EXAMPLE");
 * } catch (e) {
 *   if (e instanceof ImagesError) console.log(e.code, e.message);
 * }
 * ```
 */
export class ImagesError extends Error {
  /** A stable machine-readable code, e.g. `INVALID_REFERENCE`. */
  readonly code: string;

  /**
   * Creates the error.
   *
   * @param message what was wrong and where, never a credential
   * @param code a stable machine-readable code
   * @param options the underlying cause, if any
   */
  constructor(message: string, code = "IMAGES_ERROR", options?: ErrorOptions) {
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
 * An image, tag or blob that is not where it was looked for.
 *
 * @example
 * ```ts
 * import { NotFoundError } from "./errors.ts";
 * console.log(new NotFoundError("image:ubuntu:latest not found in registry.example.com").message);
 * ```
 */
export class NotFoundError extends ImagesError {
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
