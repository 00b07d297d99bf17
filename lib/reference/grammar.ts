/**
 * The grammar of image references (Docker's distribution/reference, and the Apolo
 * SDK's tag and cluster rules): what a name component, a registry host, a tag and a
 * digest may be, and the checks that reject anything else with an
 * {@linkcode InvalidReferenceError} naming the part that is wrong.
 *
 * Names are components of lowercase letters and digits separated by `.`, `_`, `__` or
 * dashes, joined by `/`, at most 255 characters with the registry host; a tag is
 * `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; a digest is `<algorithm>:<encoded>`.
 *
 * @example
 * ```ts
 * import { checkTag, splitReference } from "./grammar.ts";
 * splitReference("localhost:5000/app:1.0", "localhost:5000/app:1.0");
 * // { name: "localhost:5000/app", tag: "1.0", digest: undefined }
 * checkTag("1.0", "app:1.0"); // returns; ".hidden" would throw InvalidReferenceError
 * ```
 *
 * @module
 */

import { InvalidReferenceError } from "../errors.ts";

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const COMPONENT_RULE =
  "lowercase letters and digits separated by '.', '_', '__' or dashes, not starting or ending with a separator";
const TAG_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const TAG_MAX = 128;
const TAG_RULE =
  "letters, digits, '_', '.' and '-', not starting with '.' or '-', at most 128 characters";
const NAME_MAX = 255;
const DOMAIN_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$/;
const IPV6_HOST = /^\[[0-9A-Fa-f:.]+\]$/;
const PORT = /^[0-9]{1,5}$/;
const CLUSTER = /^[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?$/;
const ALGORITHM = "[a-z0-9]+(?:[.+_-][a-z0-9]+)*";
const DIGEST_ALGORITHM = new RegExp(`^${ALGORITHM}$`);
const SHA256_HEX = /^[a-f0-9]{64}$/;
const DIGEST = new RegExp(`^${ALGORITHM}:[a-zA-Z0-9=_-]{32,}$`);

/**
 * The registry host Docker Hub is known by.
 *
 * @example
 * ```ts
 * import { DOCKER_HUB } from "./grammar.ts";
 * `${DOCKER_HUB}/library/ubuntu`; // "docker.io/library/ubuntu"
 * ```
 */
export const DOCKER_HUB = "docker.io";

/**
 * Every registry host that means Docker Hub ({@linkcode DOCKER_HUB} included).
 *
 * @example
 * ```ts
 * import { DOCKER_HUB_ALIASES } from "./grammar.ts";
 * DOCKER_HUB_ALIASES.has("index.docker.io"); // true
 * ```
 */
export const DOCKER_HUB_ALIASES: ReadonlySet<string> = new Set([
  DOCKER_HUB,
  "index.docker.io",
  "registry-1.docker.io",
]);

/**
 * Rejects a reference: throws an {@linkcode InvalidReferenceError}.
 *
 * @param problem what is wrong, naming the part
 * @param reference the reference as given (credentials already redacted)
 * @throws {InvalidReferenceError} always
 *
 * @example
 * ```ts
 * import { fail } from "./grammar.ts";
 * try {
 *   fail("empty tag", "app:");
 * } catch (error) {
 *   console.log((error as Error).message);
 * }
 * ```
 */
export function fail(problem: string, reference: string): never {
  throw new InvalidReferenceError(problem, reference);
}

/**
 * A part of a reference quoted for an error message (as a JSON string, so control
 * characters and quotes stay visible).
 *
 * @param text the part
 * @returns the quoted part
 *
 * @example
 * ```ts
 * import { quote } from "./grammar.ts";
 * quote("a b"); // "\"a b\""
 * ```
 */
export function quote(text: string): string {
  return JSON.stringify(text);
}

/**
 * Whether a text is one path component of an image name (Docker's grammar).
 *
 * @param value the text
 * @returns true if it is
 *
 * @example
 * ```ts
 * import { isPathComponent } from "./grammar.ts";
 * isPathComponent("my-app"); // true
 * isPathComponent("My-App"); // false
 * ```
 */
export function isPathComponent(value: string): boolean {
  return PATH_COMPONENT.test(value);
}

/**
 * Whether a text is a tag: `[A-Za-z0-9_][A-Za-z0-9_.-]*`, at most 128 characters.
 *
 * @param value the text
 * @returns true if it is
 *
 * @example
 * ```ts
 * import { isTag } from "./grammar.ts";
 * isTag("v1.0"); // true
 * isTag(".v1"); // false
 * ```
 */
export function isTag(value: string): boolean {
  return value.length <= TAG_MAX && TAG_PATTERN.test(value);
}

/**
 * Whether a text has the form of a digest of any algorithm, `<algorithm>:<encoded>` with
 * at least 32 encoded characters, as archives may store it ({@linkcode checkDigest}
 * takes only the `sha256` the platform supports).
 *
 * @param value the text
 * @returns true if it is
 *
 * @example
 * ```ts
 * import { isDigest } from "./grammar.ts";
 * isDigest("sha512:" + "0".repeat(128)); // true
 * isDigest("sha256:abc"); // false
 * ```
 */
export function isDigest(value: string): boolean {
  return DIGEST.test(value);
}

/**
 * Checks one path component (an owner, an org, a part of an image name).
 *
 * @param what what the component is, for the message (`"owner"`, `"org name"`, …)
 * @param value the component
 * @param ref the whole reference, for the message
 * @throws {InvalidReferenceError} if it is empty or not Docker's component grammar
 *
 * @example
 * ```ts
 * import { checkComponent } from "./grammar.ts";
 * checkComponent("owner", "alice", "image:/alice/app"); // returns; "Alice" would throw
 * ```
 */
export function checkComponent(what: string, value: string, ref: string): void {
  if (value === "") fail(`empty ${what}`, ref);
  if (!PATH_COMPONENT.test(value)) {
    const lower = value.toLowerCase();
    const why = value.includes(":")
      ? "':' may only start the tag, at the end, and a tag cannot contain '/'"
      : lower !== value && PATH_COMPONENT.test(lower)
      ? "must be lowercase"
      : `must be ${COMPONENT_RULE}`;
    fail(`invalid ${what} ${quote(value)}: ${why}`, ref);
  }
}

/**
 * Checks an image name below the registry host: components joined by `/`.
 *
 * @param path the name, e.g. `library/ubuntu`
 * @param ref the whole reference, for the message
 * @throws {InvalidReferenceError} if it or one of its components is empty or invalid
 *
 * @example
 * ```ts
 * import { checkPath } from "./grammar.ts";
 * checkPath("library/ubuntu", "ubuntu"); // returns; "a//b" would throw
 * ```
 */
export function checkPath(path: string, ref: string): void {
  if (path === "") fail("empty image name", ref);
  for (const component of path.split("/")) {
    if (component === "") fail(`empty path component in image name ${quote(path)}`, ref);
    checkComponent("image name component", component, ref);
  }
}

/**
 * Checks a tag: `[A-Za-z0-9_][A-Za-z0-9_.-]*`, at most 128 characters.
 *
 * @param tag the tag
 * @param ref the whole reference, for the message
 * @throws {InvalidReferenceError} if the tag is empty, too long or has a bad character
 *
 * @example
 * ```ts
 * import { checkTag } from "./grammar.ts";
 * checkTag("22.04", "ubuntu:22.04"); // returns; "-rc" would throw
 * ```
 */
export function checkTag(tag: string, ref: string): void {
  if (tag === "") fail("empty tag", ref);
  if (tag.length > TAG_MAX) {
    fail(`tag is longer than ${TAG_MAX} characters (${tag.length})`, ref);
  }
  if (!TAG_PATTERN.test(tag)) fail(`invalid tag ${quote(tag)}: a tag is ${TAG_RULE}`, ref);
}

/**
 * Checks a digest an image is pinned to: `sha256:<64 lowercase hex digits>`, the only
 * algorithm the platform supports.
 *
 * @param digest the digest
 * @param ref the whole reference, for the message
 * @throws {InvalidReferenceError} naming an unsupported algorithm or a malformed digest
 *
 * @example
 * ```ts
 * import { checkDigest } from "./grammar.ts";
 * checkDigest("sha256:" + "a".repeat(64), "app"); // returns; "sha512:…" would throw
 * ```
 */
export function checkDigest(digest: string, ref: string): void {
  if (digest === "") fail("empty digest after '@'", ref);
  const colon = digest.indexOf(":");
  if (colon < 0) {
    fail(`invalid digest ${quote(digest)}: expected sha256:<64 hex digits>`, ref);
  }
  const algorithm = digest.slice(0, colon);
  if (algorithm !== "sha256") {
    fail(
      DIGEST_ALGORITHM.test(algorithm)
        ? `unsupported digest algorithm ${quote(algorithm)}: only sha256 is supported`
        : `invalid digest ${quote(digest)}: expected sha256:<64 hex digits>`,
      ref,
    );
  }
  if (!SHA256_HEX.test(digest.slice(colon + 1))) {
    fail(`invalid digest ${quote(digest)}: sha256 needs 64 lowercase hex digits`, ref);
  }
}

/**
 * Checks a registry host `host[:port]`: DNS labels joined by `.`, or an IPv6 address
 * in brackets, with an optional port up to 65535.
 *
 * @param domain the registry host
 * @param ref the whole reference, for the message
 * @throws {InvalidReferenceError} if the host or port is invalid
 *
 * @example
 * ```ts
 * import { checkDomain } from "./grammar.ts";
 * checkDomain("[::1]:5000", "[::1]:5000/app"); // returns; "host:99999" would throw
 * ```
 */
export function checkDomain(domain: string, ref: string): void {
  const problem = domainProblem(domain);
  if (problem !== undefined) fail(problem, ref);
}

/**
 * Whether a text is a registry host `host[:port]` ({@linkcode checkDomain} without the
 * error).
 *
 * @param domain the text
 * @returns true if it is
 *
 * @example
 * ```ts
 * import { isDomain } from "./grammar.ts";
 * isDomain("localhost:5000"); // true
 * isDomain("-bad-.example"); // false
 * ```
 */
export function isDomain(domain: string): boolean {
  return domainProblem(domain) === undefined;
}

/** What is wrong with a registry host, or undefined when nothing is. */
function domainProblem(domain: string): string | undefined {
  if (domain === "") return "empty registry host";
  let host = domain;
  let port: string | undefined;
  if (domain.startsWith("[")) {
    const end = domain.indexOf("]");
    host = end < 0 ? domain : domain.slice(0, end + 1);
    const rest = end < 0 ? "" : domain.slice(end + 1);
    if (rest !== "") {
      if (!rest.startsWith(":")) return `invalid registry host ${quote(domain)}`;
      port = rest.slice(1);
    }
    if (!IPV6_HOST.test(host)) return `invalid registry host ${quote(domain)}`;
  } else {
    const colon = domain.indexOf(":");
    if (colon >= 0) {
      host = domain.slice(0, colon);
      port = domain.slice(colon + 1);
    }
    if (host === "" || !host.split(".").every((label) => DOMAIN_LABEL.test(label))) {
      return `invalid registry host ${
        quote(host)
      }: expected DNS labels (letters, digits, inner dashes) joined by '.'`;
    }
  }
  if (port !== undefined && (!PORT.test(port) || Number(port) > 65535)) {
    return `invalid registry port ${quote(port)} in ${quote(domain)}: expected 0-65535`;
  }
  return undefined;
}

/**
 * Checks an Apolo cluster name: lowercase letters, digits, `.`, `_` and `-`, starting
 * and ending with a letter or digit.
 *
 * @param cluster the cluster name
 * @param ref the whole reference, for the message
 * @throws {InvalidReferenceError} if the name is empty or invalid
 *
 * @example
 * ```ts
 * import { checkCluster } from "./grammar.ts";
 * checkCluster("default", "image://default/alice/app"); // returns; "Default" would throw
 * ```
 */
export function checkCluster(cluster: string, ref: string): void {
  if (cluster === "") fail("empty cluster name", ref);
  if (!CLUSTER.test(cluster)) {
    const why = CLUSTER.test(cluster.toLowerCase())
      ? "must be lowercase"
      : "must be lowercase letters, digits, '.', '_' and '-', starting and ending with a letter or digit";
    fail(`invalid cluster name ${quote(cluster)}: ${why}`, ref);
  }
}

/**
 * Checks the length of a full image name (registry host included): at most 255.
 *
 * @param full the name with its registry host, without tag or digest
 * @param ref the whole reference, for the message
 * @throws {InvalidReferenceError} if the name is longer
 *
 * @example
 * ```ts
 * import { checkLength } from "./grammar.ts";
 * checkLength("ghcr.io/acme/tool", "ghcr.io/acme/tool:1"); // returns
 * ```
 */
export function checkLength(full: string, ref: string): void {
  if (full.length > NAME_MAX) {
    fail(`image name ${quote(full)} is longer than ${NAME_MAX} characters (${full.length})`, ref);
  }
}

/**
 * Docker's rule: the first of several components is a registry host if it looks like
 * one (it has a `.` or a `:`, is `localhost`, or has an uppercase letter).
 *
 * @param name an image name without tag or digest
 * @returns the registry host, if any, and the rest of the name
 *
 * @example
 * ```ts
 * import { splitDomain } from "./grammar.ts";
 * splitDomain("ghcr.io/acme/tool"); // { domain: "ghcr.io", path: "acme/tool" }
 * splitDomain("acme/tool"); // { path: "acme/tool" }
 * ```
 */
export function splitDomain(name: string): { domain?: string; path: string } {
  const slash = name.indexOf("/");
  if (slash < 0) return { path: name };
  const first = name.slice(0, slash);
  if (
    first.includes(".") || first.includes(":") || first === "localhost" ||
    first !== first.toLowerCase()
  ) {
    return { domain: first, path: name.slice(slash + 1) };
  }
  return { path: name };
}

/**
 * Validates `[domain/]path` as a Docker repository name.
 *
 * @param name the name without tag or digest
 * @param ref the whole reference, for the message
 * @returns its registry host, if any, and the rest of the name
 * @throws {InvalidReferenceError} naming the part that is wrong
 *
 * @example
 * ```ts
 * import { parseDockerName } from "./grammar.ts";
 * parseDockerName("localhost:5000/a/b", "localhost:5000/a/b");
 * // { domain: "localhost:5000", path: "a/b" }
 * ```
 */
export function parseDockerName(name: string, ref: string): { domain?: string; path: string } {
  if (name === "") fail("empty image name", ref);
  checkLength(name, ref);
  const parts = splitDomain(name);
  if (parts.domain !== undefined) checkDomain(parts.domain, ref);
  checkPath(parts.path, ref);
  return parts;
}

/**
 * A reference split into its name, tag and digest.
 *
 * @example
 * ```ts
 * import type { Split } from "./grammar.ts";
 * const split: Split = { name: "ubuntu", tag: "22.04" };
 * ```
 */
export interface Split {
  /** The name, with its registry host if one was given. */
  name: string;
  /** The tag, if one was given. */
  tag?: string;
  /** The digest, if one was given. */
  digest?: string;
}

/**
 * Splits `name[:tag][@digest]` without checking any part: the digest is what follows
 * the first `@`, the tag what follows the last `:` after the last `/` (a colon before
 * it stays in the name: a port).
 *
 * @param text the reference
 * @returns its name, tag and digest, as written
 *
 * @example
 * ```ts
 * import { splitNameTagDigest } from "./grammar.ts";
 * splitNameTagDigest("localhost:5000/app:1"); // { name: "localhost:5000/app", tag: "1", digest: undefined }
 * ```
 */
export function splitNameTagDigest(text: string): Split {
  const at = text.indexOf("@");
  const digest = at < 0 ? undefined : text.slice(at + 1);
  let name = at < 0 ? text : text.slice(0, at);
  let tag: string | undefined;
  const colon = name.lastIndexOf(":");
  if (colon > name.lastIndexOf("/")) {
    tag = name.slice(colon + 1);
    name = name.slice(0, colon);
  }
  return { name, tag, digest };
}

/**
 * Splits `name[:tag][@digest]` ({@linkcode splitNameTagDigest}), checking the tag and
 * digest.
 *
 * @param text the reference, or the part of it after a cluster or registry host
 * @param ref the whole reference, for the message
 * @returns its name (not checked yet), tag and digest
 * @throws {InvalidReferenceError} if the tag or digest is invalid or the name empty
 *
 * @example
 * ```ts
 * import { splitReference } from "./grammar.ts";
 * splitReference("app:1@sha256:" + "a".repeat(64), "app:1@…").tag; // "1"
 * ```
 */
export function splitReference(text: string, ref: string): Split {
  const split = splitNameTagDigest(text);
  const { name, tag, digest } = split;
  if (digest !== undefined) {
    if (digest.includes("@")) fail("more than one '@': expected <name>[:<tag>][@<digest>]", ref);
    checkDigest(digest, ref);
  }
  if (tag !== undefined) {
    const lastComponent = name.slice(name.lastIndexOf("/") + 1);
    if (lastComponent.includes(":")) {
      fail(`too many colons in ${quote(`${lastComponent}:${tag}`)}: expected <name>[:<tag>]`, ref);
    }
    if (tag === "") fail("empty tag after ':'", ref);
    checkTag(tag, ref);
  }
  if (name === "") fail("empty image name", ref);
  return split;
}

/**
 * The end of a reference's text form: `:<tag>` and/or `@<digest>`, or nothing.
 *
 * @param tag the tag, if any
 * @param digest the digest, if any
 * @returns the suffix
 *
 * @example
 * ```ts
 * import { referenceSuffix } from "./grammar.ts";
 * referenceSuffix("1.0", undefined); // ":1.0"
 * ```
 */
export function referenceSuffix(tag: string | undefined, digest: string | undefined): string {
  return (tag === undefined ? "" : `:${tag}`) + (digest === undefined ? "" : `@${digest}`);
}
