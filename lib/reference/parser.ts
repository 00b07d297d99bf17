/**
 * Parsing image references: {@linkcode ImageNameParser}, {@linkcode parseLocalImage}
 * and {@linkcode parseExternalImage}, a port of the Apolo SDK's `_parsing_utils`
 * (`_ImageNameParser`); the images they return are in `local_image.ts` and
 * `remote_image.ts`, the grammar they check against in `grammar.ts`.
 *
 * Forms a {@linkcode ImageNameParser} reads:
 *
 * | text                                         | result                                        |
 * | -------------------------------------------- | --------------------------------------------- |
 * | `image://<cluster>/[<org>/]<owner>/<name>`   | platform image of that cluster                |
 * | `image:/<owner>/<name>` (or `image:///…`)    | current cluster and org, that owner           |
 * | `image:<name>`                               | current cluster, org and owner                |
 * | `<registry-host>/[<org>/]<owner>/<name>`     | platform image of the cluster of that host    |
 * | `ubuntu`, `ghcr.io/a/b`, `localhost:5000/a`  | external image (any other registry)           |
 *
 * Each may end in `:<tag>` and/or `@sha256:<64 hex digits>`. Names follow Docker's
 * grammar: components of lowercase letters and digits separated by `.`, `_`, `__`
 * or dashes, joined by `/`, at most 255 characters with the registry host; a tag is
 * `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`. Every rejection is an
 * {@linkcode InvalidReferenceError} whose message names the part that is wrong.
 *
 * @example
 * ```ts
 * import { ImageNameParser } from "./parser.ts";
 * const parser = new ImageNameParser({
 *   clusterName: "default",
 *   owner: "alice",
 *   registries: { default: "https://registry.example.com" },
 * });
 * parser.parseRemote("image:ubuntu").asDockerUrl(); // "registry.example.com/alice/ubuntu:latest"
 * parser.parseRemote("ubuntu").repository; // "library/ubuntu"
 * ```
 *
 * @module
 */

import {
  checkCluster,
  checkComponent,
  checkDomain,
  checkPath,
  fail,
  parseDockerName,
  quote,
  type Split,
  splitDomain,
  splitReference,
} from "./grammar.ts";
import { LocalImage } from "./local_image.ts";
import { RemoteImage } from "./remote_image.ts";

/**
 * How a parser treats the tag of an image reference:
 * - `"default"`: a missing tag becomes `latest` (unless a digest is given);
 * - `"allow"`: a missing tag stays `undefined`;
 * - `"deny"`: a tag (or digest) is an error; used for `tags()` and `list()`, which
 *   take a repository, not one of its images.
 *
 * @example
 * ```ts
 * import type { TagOption } from "./parser.ts";
 * const forListing: TagOption = "deny";
 * ```
 */
export type TagOption = "default" | "allow" | "deny";

/**
 * Options of the parse functions.
 *
 * @example
 * ```ts
 * import { parseExternalImage, type ParseOptions } from "./parser.ts";
 * const options: ParseOptions = { tagOption: "allow" };
 * parseExternalImage("ubuntu", options).tag; // undefined
 * ```
 */
export interface ParseOptions {
  /** How a tag is treated; `"default"` when omitted. */
  readonly tagOption?: TagOption;
}

// ---------------------------------------------------------------------------
// Parsing rules beyond the grammar

const URL_SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;
const FORBIDDEN_CHAR = /[^\x21-\x7e]/;
const IMAGE_SCHEME = "image:";

function checkCommon(text: string): void {
  if (text === "") fail("empty image reference", text);
  if (text.startsWith("-")) fail("an image reference must not start with '-'", text);
  const bad = FORBIDDEN_CHAR.exec(text);
  if (bad) {
    fail(
      `character ${quote(bad[0])} is not allowed: only printable ASCII without spaces`,
      text,
    );
  }
  if (text === "image:latest") {
    fail(
      'ambiguous: valid both as the local image "image" with tag "latest" and as the ' +
        'platform image "latest"; write image:latest:latest for the platform image',
      text,
    );
  }
}

function checkNoUrlScheme(text: string): void {
  const scheme = URL_SCHEME.exec(text);
  if (scheme) fail(`unsupported scheme "${scheme[1]}:" (only image: is allowed)`, text);
}

/**
 * Checks a plain Docker reference (neither `image:`, rejected with `imageSchemeProblem`,
 * nor a URL) and splits it into name, tag and digest.
 */
function splitDockerReference(text: string, imageSchemeProblem: string): Split {
  checkCommon(text);
  if (text.startsWith(IMAGE_SCHEME)) fail(imageSchemeProblem, text);
  checkNoUrlScheme(text);
  return splitReference(text, text);
}

function applyTagOption(
  split: Split,
  options: ParseOptions,
  ref: string,
): { tag?: string; digest?: string } {
  const option = options.tagOption ?? "default";
  const { tag, digest } = split;
  switch (option) {
    case "default":
      return { tag: tag ?? (digest === undefined ? "latest" : undefined), digest };
    case "allow":
      return { tag, digest };
    case "deny":
      if (tag !== undefined) {
        fail(`tag ${quote(tag)} is not allowed here: expected an image without a tag`, ref);
      }
      if (digest !== undefined) {
        fail(
          `digest ${quote(digest)} is not allowed here: expected an image without a digest`,
          ref,
        );
      }
      return {};
    default:
      throw new TypeError(`unknown tagOption ${quote(String(option))}`);
  }
}

/**
 * Parses a local image reference `name[:tag][@digest]` (the SDK's
 * `parse_as_local_image`). With the default tag option a missing tag becomes `latest`
 * (unless a digest is given). The `image:` scheme and URL schemes are rejected.
 *
 * @param text the reference, e.g. `ubuntu:22.04`, `localhost:5000/a/b` or `app@sha256:…`
 * @param options how a missing tag is treated
 * @returns the local image
 * @throws {InvalidReferenceError} naming the part that is wrong
 *
 * @example
 * ```ts
 * import { parseLocalImage } from "./parser.ts";
 * parseLocalImage("ubuntu").toString(); // "ubuntu:latest"
 * parseLocalImage("ubuntu", { tagOption: "allow" }).tag; // undefined
 * ```
 */
export function parseLocalImage(text: string, options: ParseOptions = {}): LocalImage {
  const split = splitDockerReference(text, "the image: scheme is not allowed for a local image");
  parseDockerName(split.name, text);
  const { tag, digest } = applyTagOption(split, options, text);
  return new LocalImage(split.name, tag, digest);
}

/**
 * Parses a Docker reference `[<registry>/]<name>[:<tag>][@<digest>]` as an external
 * image, without any platform configuration: `ubuntu` is Docker Hub's
 * `library/ubuntu`, `localhost:5000/a/b:1` is `a/b` in `localhost:5000`.
 * `image:` references need an {@linkcode ImageNameParser} and are rejected here.
 *
 * @param text the reference
 * @param options how a tag is treated
 * @returns the external image
 * @throws {InvalidReferenceError} naming the part that is wrong
 *
 * @example
 * ```ts
 * import { parseExternalImage } from "./parser.ts";
 * const image = parseExternalImage("ghcr.io/acme/tool:1.2");
 * image.registry; // "ghcr.io"
 * image.repository; // "acme/tool"
 * parseExternalImage("ubuntu").asDockerUrl(); // "ubuntu:latest"
 * ```
 */
export function parseExternalImage(text: string, options: ParseOptions = {}): RemoteImage {
  const split = splitDockerReference(
    text,
    "an image: reference needs the platform configuration (use ImageNameParser)",
  );
  const { domain, path } = parseDockerName(split.name, text);
  const { tag, digest } = applyTagOption(split, options, text);
  return new RemoteImage({ name: path, registry: domain, tag, digest });
}

/**
 * What an {@linkcode ImageNameParser} knows about the platform.
 *
 * @example
 * ```ts
 * import type { ImageNameParserConfig } from "./parser.ts";
 * const config: ImageNameParserConfig = {
 *   clusterName: "default",
 *   orgName: "acme",
 *   owner: "alice",
 *   registries: { default: "https://registry.example.com", gpu: "registry.gpu.example.com:5000" },
 *   orgNames: { gpu: ["research"] },
 * };
 * ```
 */
export interface ImageNameParserConfig {
  /** The current cluster: short forms (`image:name`, `image:/owner/name`) refer to it. */
  readonly clusterName: string;
  /** The current organization, if any: short forms refer to it. */
  readonly orgName?: string;
  /** The current owner (user or project): `image:name` refers to it. */
  readonly owner: string;
  /**
   * Registry of each cluster, by cluster name: a URL (`https://host[:port]/…`) or a
   * bare `host[:port]`. Only its `host[:port]` is kept.
   */
  readonly registries: Readonly<Record<string, string>>;
  /**
   * Organizations known per cluster, by cluster name. In long forms
   * (`image://cluster/a/b/c`, `<registry>/a/b/c`) a first segment listed here (or
   * equal to `orgName`) is read as an org. See {@linkcode ImageNameParser}.
   */
  readonly orgNames?: Readonly<Record<string, readonly string[]>>;
}

/**
 * Parses image references against the platform's configuration (the SDK's
 * `_ImageNameParser`).
 *
 * How the org is found in a long form `image://<cluster>/<a>/<b>[/…]` (and in
 * `<registry-host>/<a>/<b>[/…]`): as in the SDK, `<a>` is an org when it equals the
 * configured `orgName`; in addition, when it is listed in `orgNames[<cluster>]`. It is
 * read as an org only when at least an owner and a name follow it (`<a>/<b>/<c>…`);
 * otherwise `<a>` is the owner. Everything after the owner is the name, which may have
 * several components (`image://c/alice/library/ubuntu` is `library/ubuntu` of
 * `alice`). So a platform image whose owner happens to be a known org name and whose
 * name has several components does not read back as itself; the SDK has the same
 * ambiguity. Short forms (`image:name`, `image:/owner/name`, `image:///owner/name`)
 * always take the configured org (none if unset).
 *
 * @example
 * ```ts
 * import { ImageNameParser } from "./parser.ts";
 * const parser = new ImageNameParser({
 *   clusterName: "default",
 *   orgName: "acme",
 *   owner: "alice",
 *   registries: { default: "https://registry.example.com" },
 * });
 * parser.parseRemote("image:ubuntu:22.04").toString(); // "image://default/acme/alice/ubuntu:22.04"
 * parser.parseRemote("image://default/acme/bob/tool").owner; // "bob"
 * parser.parseRemote("registry.example.com/acme/bob/tool:1").clusterName; // "default"
 * parser.parseRemote("ubuntu").isPlatformImage; // false
 * parser.parseLocal("ubuntu").toString(); // "ubuntu:latest"
 * ```
 */
export class ImageNameParser {
  /** The current cluster. */
  readonly clusterName: string;
  /** The current organization, if any. */
  readonly orgName?: string;
  /** The current owner. */
  readonly owner: string;
  readonly #registries: ReadonlyMap<string, string>;
  readonly #orgNames: ReadonlyMap<string, ReadonlySet<string>>;

  /**
   * Validates the configuration and keeps each registry's `host[:port]`.
   *
   * @param config the current cluster, org and owner, and each cluster's registry
   * @throws {InvalidReferenceError} if a configured name or registry is invalid
   */
  constructor(config: ImageNameParserConfig) {
    checkCluster(config.clusterName, config.clusterName);
    if (config.orgName !== undefined) checkComponent("org name", config.orgName, config.orgName);
    checkComponent("owner", config.owner, config.owner);
    const registries = new Map<string, string>();
    for (const [cluster, url] of Object.entries(config.registries)) {
      checkCluster(cluster, cluster);
      registries.set(cluster, registryHost(url));
    }
    const orgNames = new Map<string, Set<string>>();
    for (const [cluster, orgs] of Object.entries(config.orgNames ?? {})) {
      for (const org of orgs) checkComponent("org name", org, org);
      orgNames.set(cluster, new Set(orgs));
    }
    this.clusterName = config.clusterName;
    this.orgName = config.orgName;
    this.owner = config.owner;
    this.#registries = registries;
    this.#orgNames = orgNames;
    Object.freeze(this);
  }

  /**
   * The registry host (`host[:port]`) of a cluster.
   *
   * @param clusterName the cluster
   * @returns its registry host
   * @throws {InvalidReferenceError} if the cluster is not configured
   *
   * @example
   * ```ts
   * import { ImageNameParser } from "./parser.ts";
   * const parser = new ImageNameParser({
   *   clusterName: "default",
   *   owner: "alice",
   *   registries: { default: "https://registry.example.com:5000/v2/" },
   * });
   * parser.registryOf("default"); // "registry.example.com:5000"
   * ```
   */
  registryOf(clusterName: string): string {
    return this.#registryOf(clusterName, clusterName);
  }

  /**
   * Parses any remote reference (the SDK's `parse_remote`): `image:` forms and names
   * under a platform registry host give platform images, anything else is a Docker
   * reference to an external image ({@linkcode parseExternalImage}).
   *
   * @param text the reference
   * @param options how a tag is treated (`"deny"` for `tags()` and `list()`)
   * @returns the remote image
   * @throws {InvalidReferenceError} naming the part that is wrong
   *
   * @example
   * ```ts
   * import { ImageNameParser } from "./parser.ts";
   * const parser = new ImageNameParser({
   *   clusterName: "default",
   *   owner: "alice",
   *   registries: { default: "registry.example.com" },
   * });
   * parser.parseRemote("image:/bob/tool:1").toString(); // "image://default/bob/tool:1"
   * parser.parseRemote("image:tool", { tagOption: "deny" }).tag; // undefined
   * parser.parseRemote("localhost:5000/a/b").registry; // "localhost:5000"
   * ```
   */
  parseRemote(text: string, options: ParseOptions = {}): RemoteImage {
    if (text.startsWith(IMAGE_SCHEME) || this.#findRegistry(text) !== undefined) {
      return this.parsePlatform(text, options);
    }
    return parseExternalImage(text, options);
  }

  /**
   * Parses a platform image reference only (the SDK's `parse_as_platform_image`): an
   * `image:` form or a name under a platform registry host.
   *
   * @param text the reference
   * @param options how a tag is treated
   * @returns the platform image
   * @throws {InvalidReferenceError} naming the part that is wrong, also when `text` is
   *   not a platform reference
   *
   * @example
   * ```ts
   * import { ImageNameParser } from "./parser.ts";
   * const parser = new ImageNameParser({
   *   clusterName: "default",
   *   owner: "alice",
   *   registries: { default: "registry.example.com" },
   * });
   * parser.parsePlatform("registry.example.com/bob/tool").toString(); // "image://default/bob/tool:latest"
   * ```
   */
  parsePlatform(text: string, options: ParseOptions = {}): RemoteImage {
    checkCommon(text);
    if (!text.startsWith(IMAGE_SCHEME)) {
      const found = this.#findRegistry(text);
      if (found === undefined) {
        checkNoUrlScheme(text);
        fail(
          `a platform image needs the image: scheme or a platform registry host (${
            [...this.#registries.values()].join(", ") || "none configured"
          })`,
          text,
        );
      }
      return this.#platform(text, found.cluster, "registry", found.path, options);
    }
    const query = text.indexOf("?");
    if (query >= 0) {
      fail(`query part ${quote(text.slice(query))} is not allowed in an image: URI`, text);
    }
    const fragment = text.indexOf("#");
    if (fragment >= 0) {
      fail(`fragment part ${quote(text.slice(fragment))} is not allowed in an image: URI`, text);
    }
    const body = text.slice(IMAGE_SCHEME.length);
    if (body.startsWith("//")) {
      const slash = body.indexOf("/", 2);
      const authority = slash < 0 ? body.slice(2) : body.slice(2, slash);
      const path = slash < 0 ? "" : body.slice(slash);
      if (authority !== "") {
        const cluster = checkAuthority(authority, text);
        return this.#platform(text, cluster, "long", path.replace(/^\/+/, ""), options);
      }
      // image:///owner/name: no cluster, so the current one
      return this.#platform(text, this.clusterName, "absolute", path.replace(/^\/+/, ""), options);
    }
    if (body.startsWith("/")) {
      return this.#platform(text, this.clusterName, "absolute", body.replace(/^\/+/, ""), options);
    }
    return this.#platform(text, this.clusterName, "relative", body, options);
  }

  /**
   * Parses a local image reference (the SDK's `parse_as_local_image`); same as
   * {@linkcode parseLocalImage}.
   *
   * @param text the reference, `name[:tag][@digest]`
   * @param options how a missing tag is treated
   * @returns the local image
   * @throws {InvalidReferenceError} naming the part that is wrong
   *
   * @example
   * ```ts
   * import { ImageNameParser } from "./parser.ts";
   * const parser = new ImageNameParser({
   *   clusterName: "default",
   *   owner: "alice",
   *   registries: { default: "registry.example.com" },
   * });
   * parser.parseLocal("ubuntu:22.04").tag; // "22.04"
   * ```
   */
  parseLocal(text: string, options: ParseOptions = {}): LocalImage {
    return parseLocalImage(text, options);
  }

  /**
   * The platform image a local image is pushed to when no remote image is given (the
   * SDK's `convert_to_platform_image`): the same name and tag under the current
   * cluster, org and owner. A local name under a platform registry host
   * (`registry.example.com/bob/tool`) keeps that cluster, org and owner.
   *
   * @param local the local image
   * @returns the platform image
   * @throws {InvalidReferenceError} if the local name starts with a registry host that
   *   is not a platform registry
   *
   * @example
   * ```ts
   * import { ImageNameParser } from "./parser.ts";
   * import { LocalImage } from "./local_image.ts";
   * const parser = new ImageNameParser({
   *   clusterName: "default",
   *   owner: "alice",
   *   registries: { default: "registry.example.com" },
   * });
   * parser.localToRemote(new LocalImage("tool", "1")).toString(); // "image://default/alice/tool:1"
   * ```
   */
  localToRemote(local: LocalImage): RemoteImage {
    const ref = local.toString();
    const found = this.#findRegistry(local.name);
    if (found !== undefined) {
      const form = found.path.includes("/") ? "registry" : "relative";
      return this.#build(ref, found.cluster, form, found.path, local.tag, undefined);
    }
    const { domain } = splitDomain(local.name);
    if (domain !== undefined) {
      fail(
        `registry host ${
          quote(domain)
        } is not a platform registry; give the remote image explicitly`,
        ref,
      );
    }
    return this.#build(ref, this.clusterName, "relative", local.name, local.tag, undefined);
  }

  /**
   * The local image a remote image is pulled to when no local image is given (the
   * SDK's `convert_to_local_image`): the name and tag of a platform image; the Docker
   * reference without digest of an external one.
   *
   * @param remote the remote image
   * @returns the local image
   *
   * @example
   * ```ts
   * import { ImageNameParser } from "./parser.ts";
   * const parser = new ImageNameParser({
   *   clusterName: "default",
   *   owner: "alice",
   *   registries: { default: "registry.example.com" },
   * });
   * parser.remoteToLocal(parser.parseRemote("image:/bob/tool:1")).toString(); // "tool:1"
   * ```
   */
  remoteToLocal(remote: RemoteImage): LocalImage {
    const name = remote.isPlatformImage || remote.registry === undefined
      ? remote.name
      : `${remote.registry}/${remote.name}`;
    return new LocalImage(name, remote.tag);
  }

  #platform(
    ref: string,
    cluster: string,
    form: Form,
    path: string,
    options: ParseOptions,
  ): RemoteImage {
    const split = path === "" ? { name: "" } : splitReference(path, ref);
    const { tag, digest } = applyTagOption(split, options, ref);
    return this.#build(ref, cluster, form, split.name, tag, digest);
  }

  #build(
    ref: string,
    cluster: string,
    form: Form,
    path: string,
    tag: string | undefined,
    digest: string | undefined,
  ): RemoteImage {
    let orgName: string | undefined = this.orgName;
    let owner = this.owner;
    let name = path;
    const noName = `no image name: expected ${EXPECTED[form]}`;
    if (form !== "relative") {
      const segments = path.split("/");
      if (form !== "absolute") {
        orgName = undefined;
        if (segments.length >= 3 && this.#isOrg(cluster, segments[0])) orgName = segments.shift();
      }
      if (segments.length < 2 || segments[0] === "") fail(noName, ref);
      owner = segments.shift()!;
      name = segments.join("/");
    }
    if (name === "") fail(noName, ref);
    if (orgName !== undefined) checkComponent("org name", orgName, ref);
    checkComponent("owner", owner, ref);
    checkPath(name, ref);
    const registry = this.#registryOf(cluster, ref);
    return new RemoteImage({ name, tag, digest, owner, orgName, registry, clusterName: cluster });
  }

  #isOrg(cluster: string, segment: string): boolean {
    return segment === this.orgName || (this.#orgNames.get(cluster)?.has(segment) ?? false);
  }

  #registryOf(cluster: string, ref: string): string {
    const registry = this.#registries.get(cluster);
    if (registry === undefined) {
      fail(
        `unknown cluster ${quote(cluster)} (known clusters: ${
          [...this.#registries.keys()].join(", ") || "none"
        })`,
        ref,
      );
    }
    return registry;
  }

  #findRegistry(text: string): { cluster: string; path: string } | undefined {
    for (const [cluster, registry] of this.#registries) {
      if (text.startsWith(`${registry}/`)) {
        return { cluster, path: text.slice(registry.length).replace(/^\/+/, "") };
      }
    }
    return undefined;
  }
}

/** Where a platform reference came from: `image://c/…`, `<registry>/…`, `image:/…`, `image:…`. */
type Form = "long" | "registry" | "absolute" | "relative";

const EXPECTED: Record<Form, string> = {
  long: "image://<cluster>/[<org>/]<owner>/<name>",
  registry: "<registry-host>/[<org>/]<owner>/<name>",
  absolute: "image:/<owner>/<name>",
  relative: "image:<name>",
};

/** Checks the authority of `image://<authority>/…` and returns the cluster name. */
function checkAuthority(authority: string, text: string): string {
  const at = authority.lastIndexOf("@");
  if (at >= 0) {
    const userinfo = authority.slice(0, at);
    const redacted = text.replace(`//${userinfo}@`, "//***@");
    fail(
      userinfo.includes(":")
        ? "a password is not allowed in an image: URI"
        : "a user name is not allowed in an image: URI",
      redacted,
    );
  }
  if (authority.includes(":")) {
    fail(
      `a port is not allowed in an image: URI (cluster part ${
        quote(authority)
      }); for an image of the current cluster write image:<name>:<tag>`,
      text,
    );
  }
  checkCluster(authority, text);
  return authority;
}

/** `host[:port]` of a registry given as a URL or a bare host; credentials are dropped. */
function registryHost(value: string): string {
  const redacted = value.replace(/\/\/[^/@]*@/, "//");
  let rest = value.trim();
  const scheme = URL_SCHEME.exec(rest);
  if (scheme) rest = rest.slice(scheme[0].length);
  const slash = rest.indexOf("/");
  if (slash >= 0) rest = rest.slice(0, slash);
  rest = rest.slice(rest.lastIndexOf("@") + 1);
  if (rest === "") fail("empty host in registry URL", redacted);
  checkDomain(rest, redacted);
  return rest;
}
