/**
 * {@linkcode LocalImage}: an image as a local image store or an archive names it,
 * validated against the reference grammar.
 *
 * @example
 * ```ts
 * import { LocalImage } from "./local_image.ts";
 * new LocalImage("ubuntu", "22.04").toString(); // "ubuntu:22.04"
 * ```
 *
 * @module
 */

import { checkDigest, checkTag, parseDockerName, referenceSuffix } from "./grammar.ts";

/**
 * An image as a local image store (`docker images`, an archive's `RepoTags`, an OCI
 * layout's `index.json`) names it: `name[:tag][@digest]`, where the name may start with
 * a registry host. A digest picks the image by its ID (a `docker save` archive: the
 * config digest) or its manifest digest (an OCI archive or layout); a tag beside it must
 * name that same image.
 *
 * @example
 * ```ts
 * import { LocalImage } from "./local_image.ts";
 * const image = new LocalImage("ubuntu", "22.04");
 * image.toString(); // "ubuntu:22.04"
 * new LocalImage("localhost:5000/team/app").toString(); // "localhost:5000/team/app"
 * new LocalImage("app", undefined, "sha256:" + "a".repeat(64)).toString(); // "app@sha256:aaaa…"
 * ```
 */
export class LocalImage {
  /** Image name, e.g. `ubuntu` or `registry.example.com/alice/ubuntu`. */
  readonly name: string;
  /** Tag, or undefined when omitted (which means `latest`, unless a digest is given). */
  readonly tag?: string;
  /** Digest `sha256:<64 hex digits>` picking the image, or undefined for none. */
  readonly digest?: string;

  /**
   * Validates and freezes the fields.
   *
   * @param name image name, Docker's grammar with an optional registry host
   * @param tag tag, or undefined
   * @param digest digest `sha256:<64 hex digits>`, or undefined
   * @throws {InvalidReferenceError} if the name, tag or digest is invalid
   */
  constructor(name: string, tag?: string, digest?: string) {
    const ref = name + referenceSuffix(tag, digest);
    parseDockerName(name, ref);
    if (tag !== undefined) checkTag(tag, ref);
    if (digest !== undefined) checkDigest(digest, ref);
    this.name = name;
    this.tag = tag;
    this.digest = digest;
    Object.freeze(this);
  }

  /**
   * `name[:tag][@digest]`.
   *
   * @returns the text form, which {@linkcode parseLocalImage} reads back
   *
   * @example
   * ```ts
   * import { LocalImage } from "./local_image.ts";
   * new LocalImage("ubuntu").toString(); // "ubuntu"
   * ```
   */
  toString(): string {
    return this.name + referenceSuffix(this.tag, this.digest);
  }
}
