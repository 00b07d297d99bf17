/**
 * {@linkcode RemoteImage}: an image in a registry (a platform image of an Apolo cluster,
 * or an external one), validated against the reference grammar; immutable.
 *
 * @example
 * ```ts
 * import { RemoteImage } from "./remote_image.ts";
 * RemoteImage.newExternalImage("ubuntu", undefined, { tag: "22.04" }).repository; // "library/ubuntu"
 * ```
 *
 * @module
 */

import {
  checkCluster,
  checkComponent,
  checkDigest,
  checkDomain,
  checkLength,
  checkPath,
  checkTag,
  DOCKER_HUB,
  DOCKER_HUB_ALIASES,
  fail,
  parseDockerName,
  referenceSuffix,
} from "./grammar.ts";

/**
 * The fields of a {@linkcode RemoteImage}, as its constructor takes them: picked from
 * the class, so the two cannot drift apart (see the class for what each means).
 *
 * @example
 * ```ts
 * import { RemoteImage, type RemoteImageInit } from "./remote_image.ts";
 * const init: RemoteImageInit = { name: "ubuntu", tag: "22.04" };
 * new RemoteImage(init).toString(); // "ubuntu:22.04"
 * ```
 */
export type RemoteImageInit = Pick<
  RemoteImage,
  "name" | "tag" | "digest" | "owner" | "orgName" | "registry" | "clusterName"
>;

/**
 * An image in a registry: either a platform image (hosted by an Apolo cluster, with
 * `registry`, `clusterName` and `owner` all set) or an external one (Docker Hub or any
 * other registry; no cluster, owner or org).
 *
 * Immutable; the constructor validates every field and throws
 * {@linkcode InvalidReferenceError} naming the bad one. For an external image given
 * without `registry`, a leading registry host in `name` (`ghcr.io/a/b`) is moved to
 * `registry`, as Docker reads it.
 *
 * @example
 * ```ts
 * import { RemoteImage } from "./remote_image.ts";
 * const image = RemoteImage.newPlatformImage("ubuntu", "registry.example.com", {
 *   owner: "alice",
 *   clusterName: "default",
 *   orgName: "acme",
 *   tag: "22.04",
 * });
 * image.toString(); // "image://default/acme/alice/ubuntu:22.04"
 * image.asDockerUrl(); // "registry.example.com/acme/alice/ubuntu:22.04"
 * image.repository; // "acme/alice/ubuntu"
 * ```
 */
export class RemoteImage {
  /** Repository name below the owner (platform) or the registry host (external). */
  readonly name: string;
  /** Tag, or undefined if none was given. */
  readonly tag?: string;
  /** Digest `sha256:<64 hex digits>`, or undefined if none was given. */
  readonly digest?: string;
  /** Owner (user or project) of a platform image; undefined for an external one. */
  readonly owner?: string;
  /** Organization of a platform image; undefined when there is none. */
  readonly orgName?: string;
  /** Registry host `host[:port]`; undefined for an external image on Docker Hub. */
  readonly registry?: string;
  /** Cluster of a platform image; undefined for an external one. */
  readonly clusterName?: string;

  /**
   * Validates and freezes the fields.
   *
   * @param init the fields; a platform image needs `registry`, `clusterName` and
   *   `owner` together
   * @throws {InvalidReferenceError} if a field is invalid or a platform field is missing
   */
  constructor(init: RemoteImageInit) {
    const { tag, digest, owner, orgName, clusterName } = init;
    let { name, registry } = init;
    const ref = [
      clusterName === undefined ? registry : `image://${clusterName}`,
      orgName,
      owner,
      name + referenceSuffix(tag, digest),
    ].filter((part) => part !== undefined).join("/");
    if (clusterName !== undefined || owner !== undefined || orgName !== undefined) {
      const missing = [
        registry === undefined ? "registry" : undefined,
        clusterName === undefined ? "cluster" : undefined,
        owner === undefined ? "owner" : undefined,
      ].filter((part) => part !== undefined);
      if (missing.length > 0) {
        fail(
          `a platform image needs registry, cluster and owner together; missing: ${
            missing.join(", ")
          }`,
          ref,
        );
      }
      checkDomain(registry!, ref);
      checkCluster(clusterName!, ref);
      if (orgName !== undefined) checkComponent("org name", orgName, ref);
      checkComponent("owner", owner!, ref);
      checkPath(name, ref);
      checkLength([registry, orgName, owner, name].filter((p) => p !== undefined).join("/"), ref);
    } else {
      if (registry === undefined) {
        const parts = parseDockerName(name, ref);
        registry = parts.domain;
        name = parts.path;
      } else {
        checkDomain(registry, ref);
        checkPath(name, ref);
        checkLength(`${registry}/${name}`, ref);
      }
    }
    if (tag !== undefined) checkTag(tag, ref);
    if (digest !== undefined) checkDigest(digest, ref);
    this.name = name;
    this.tag = tag;
    this.digest = digest;
    this.owner = owner;
    this.orgName = orgName;
    this.registry = registry;
    this.clusterName = clusterName;
    Object.freeze(this);
  }

  /**
   * A reference to an image hosted by an Apolo cluster's registry.
   *
   * @param name repository name below the owner, e.g. `ubuntu` or `library/ubuntu`
   * @param registry registry host `host[:port]` of the cluster
   * @param options owner, cluster, and optionally org, tag and digest
   * @returns the image
   * @throws {InvalidReferenceError} if a part is invalid
   *
   * @example
   * ```ts
   * import { RemoteImage } from "./remote_image.ts";
   * const image = RemoteImage.newPlatformImage("ubuntu", "registry.example.com", {
   *   owner: "alice",
   *   clusterName: "default",
   * });
   * image.toString(); // "image://default/alice/ubuntu"
   * ```
   */
  static newPlatformImage(
    name: string,
    registry: string,
    options: {
      owner: string;
      clusterName: string;
      orgName?: string;
      tag?: string;
      digest?: string;
    },
  ): RemoteImage {
    return new RemoteImage({
      name,
      registry,
      owner: options.owner,
      clusterName: options.clusterName,
      orgName: options.orgName,
      tag: options.tag,
      digest: options.digest,
    });
  }

  /**
   * A reference to an image in a registry outside the platform (Docker Hub by default).
   *
   * @param name repository name, e.g. `ubuntu` or `library/ubuntu`; without
   *   `registry`, a leading registry host (`ghcr.io/a/b`) becomes the registry
   * @param registry registry host `host[:port]`, undefined for Docker Hub
   * @param options optional tag and digest
   * @returns the image
   * @throws {InvalidReferenceError} if a part is invalid
   *
   * @example
   * ```ts
   * import { RemoteImage } from "./remote_image.ts";
   * RemoteImage.newExternalImage("ubuntu", undefined, { tag: "22.04" }).toString(); // "ubuntu:22.04"
   * RemoteImage.newExternalImage("a/b", "localhost:5000").asDockerUrl(); // "localhost:5000/a/b"
   * ```
   */
  static newExternalImage(
    name: string,
    registry?: string,
    options: { tag?: string; digest?: string } = {},
  ): RemoteImage {
    return new RemoteImage({ name, registry, tag: options.tag, digest: options.digest });
  }

  /**
   * Whether this image is hosted by an Apolo cluster (it has a cluster and owner).
   *
   * @example
   * ```ts
   * import { RemoteImage } from "./remote_image.ts";
   * RemoteImage.newExternalImage("ubuntu").isPlatformImage; // false
   * ```
   */
  get isPlatformImage(): boolean {
    return this.clusterName !== undefined;
  }

  /**
   * The registry host to talk to: `registry` of a platform image; for an external one
   * its registry, with Docker Hub (no registry, `index.docker.io`, …) as `docker.io`.
   *
   * @example
   * ```ts
   * import { RemoteImage } from "./remote_image.ts";
   * RemoteImage.newExternalImage("ubuntu").domain; // "docker.io"
   * RemoteImage.newExternalImage("a/b", "ghcr.io").domain; // "ghcr.io"
   * ```
   */
  get domain(): string {
    if (this.registry === undefined || DOCKER_HUB_ALIASES.has(this.registry)) return DOCKER_HUB;
    return this.registry;
  }

  /**
   * The repository path inside the registry, as used in `/v2/<repository>/…`:
   * `[<org>/]<owner>/<name>` for a platform image, the name for an external one
   * (with `library/` added to a one-component name on Docker Hub).
   *
   * @example
   * ```ts
   * import { RemoteImage } from "./remote_image.ts";
   * RemoteImage.newExternalImage("ubuntu").repository; // "library/ubuntu"
   * RemoteImage.newExternalImage("a/b", "ghcr.io").repository; // "a/b"
   * ```
   */
  get repository(): string {
    if (this.isPlatformImage) {
      return [this.orgName, this.owner, this.name].filter((p) => p !== undefined).join("/");
    }
    if (this.domain === DOCKER_HUB && !this.name.includes("/")) return `library/${this.name}`;
    return this.name;
  }

  /**
   * The reference Docker understands: `<registry>/[<org>/]<owner>/<name>[:<tag>][@<digest>]`
   * for a platform image; for an external one, the reference as given
   * (`[<registry>/]<name>[:<tag>][@<digest>]`).
   *
   * @param withScheme prefix `https://` (platform images only, as in the SDK)
   * @returns the reference
   *
   * @example
   * ```ts
   * import { RemoteImage } from "./remote_image.ts";
   * const image = RemoteImage.newPlatformImage("ubuntu", "registry.example.com", {
   *   owner: "alice",
   *   clusterName: "default",
   *   tag: "1.0",
   * });
   * image.asDockerUrl(); // "registry.example.com/alice/ubuntu:1.0"
   * image.asDockerUrl(true); // "https://registry.example.com/alice/ubuntu:1.0"
   * ```
   */
  asDockerUrl(withScheme = false): string {
    const end = referenceSuffix(this.tag, this.digest);
    if (this.isPlatformImage) {
      return `${withScheme ? "https://" : ""}${this.registry}/${this.repository}${end}`;
    }
    return `${this.registry === undefined ? "" : `${this.registry}/`}${this.name}${end}`;
  }

  /**
   * A copy of this reference with another tag (other fields, a digest included, kept).
   *
   * @param tag the new tag, or undefined for none (the repository, or only the digest)
   * @returns the new reference
   * @throws {InvalidReferenceError} if the tag is invalid
   *
   * @example
   * ```ts
   * import { RemoteImage } from "./remote_image.ts";
   * RemoteImage.newExternalImage("ubuntu").withTag("22.04").toString(); // "ubuntu:22.04"
   * ```
   */
  withTag(tag: string | undefined): RemoteImage {
    return new RemoteImage({ ...this.#fields(), tag });
  }

  /**
   * A copy of this reference pinned to a digest (other fields, the tag included, kept).
   *
   * @param digest the digest, `sha256:<64 hex digits>`, or undefined to drop the pin
   * @returns the new reference
   * @throws {InvalidReferenceError} if the digest is invalid
   *
   * @example
   * ```ts
   * import { RemoteImage } from "./remote_image.ts";
   * RemoteImage.newExternalImage("ubuntu").withDigest("sha256:" + "a".repeat(64)).toString();
   * // "ubuntu@sha256:aaaa…"
   * ```
   */
  withDigest(digest: string | undefined): RemoteImage {
    return new RemoteImage({ ...this.#fields(), digest });
  }

  /**
   * `image://<cluster>/[<org>/]<owner>/<name>[:<tag>][@<digest>]` for a platform image,
   * the Docker reference ({@linkcode RemoteImage.asDockerUrl}) for an external one.
   *
   * @returns the text form, which {@linkcode ImageNameParser.parseRemote} reads back
   *
   * @example
   * ```ts
   * import { RemoteImage } from "./remote_image.ts";
   * RemoteImage.newPlatformImage("ubuntu", "registry.example.com", {
   *   owner: "alice",
   *   clusterName: "default",
   *   tag: "1.0",
   * }).toString(); // "image://default/alice/ubuntu:1.0"
   * ```
   */
  toString(): string {
    if (this.isPlatformImage) {
      return `image://${this.clusterName}/${this.repository}${
        referenceSuffix(this.tag, this.digest)
      }`;
    }
    return this.asDockerUrl();
  }

  #fields(): RemoteImageInit {
    return {
      name: this.name,
      tag: this.tag,
      digest: this.digest,
      owner: this.owner,
      orgName: this.orgName,
      registry: this.registry,
      clusterName: this.clusterName,
    };
  }
}
