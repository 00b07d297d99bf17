/**
 * {@linkcode Tag}: one tag of a remote image and its size, as `Images.tagInfo()`
 * reports it.
 *
 * @example
 * ```ts
 * import { Tag } from "./tag.ts";
 * new Tag("latest", 1024).size; // 1024
 * ```
 *
 * @module
 */

import { checkDigest, checkTag, fail } from "./grammar.ts";

/**
 * Information about one tag of a remote image: its name and size in bytes (the sum of
 * the manifest's layer sizes). For an image asked for by digest alone, the name is
 * that digest.
 *
 * @example
 * ```ts
 * import { Tag } from "./tag.ts";
 * const tag = new Tag("latest", 28_000_000);
 * console.log(tag.name, tag.size);
 * ```
 */
export class Tag {
  /** The tag, e.g. `latest` (or the digest `sha256:…` of an image asked for by digest). */
  readonly name: string;
  /** Size in bytes. */
  readonly size: number;

  /**
   * Validates and freezes the fields.
   *
   * @param name the tag, or a digest `sha256:<64 hex digits>`
   * @param size size in bytes, a non-negative integer
   * @throws {InvalidReferenceError} if the tag or size is invalid
   */
  constructor(name: string, size: number) {
    if (name.startsWith("sha256:")) checkDigest(name, name);
    else checkTag(name, name);
    if (!Number.isSafeInteger(size) || size < 0) {
      fail(`tag size must be a non-negative integer, got ${size}`, name);
    }
    this.name = name;
    this.size = size;
    Object.freeze(this);
  }
}
