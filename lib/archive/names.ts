/**
 * Image names as archives store them (`RepoTags`, `io.containerd.image.name`,
 * `org.opencontainers.image.ref.name`): normalising them so `nginx`, `nginx:latest`
 * and `docker.io/library/nginx:latest` are the same image, and the short forms Docker
 * writes.
 *
 * This is deliberately small: it parses what archives contain, not every reference form
 * the command line accepts. Registry hosts, components, tags and digests follow the
 * reference grammar (`../reference/grammar.ts`); text outside it gives undefined rather
 * than an error.
 *
 * @module
 */

import {
  DOCKER_HUB,
  DOCKER_HUB_ALIASES,
  isDigest,
  isDomain,
  isPathComponent,
  isTag,
  splitDomain,
  splitNameTagDigest,
} from "../reference/grammar.ts";

/** A docker reference split into its parts. */
export interface ImageNameParts {
  /** Registry host, `docker.io` when none is given. */
  domain: string;
  /** Repository path, with `library/` added for single-component Docker Hub names. */
  path: string;
  /** Tag, if one is given. */
  tag?: string;
  /** Digest, if one is given. */
  digest?: string;
}

/**
 * Splits a docker reference (`[host/]path[:tag][@digest]`) into its parts; undefined
 * when it is not one.
 *
 * @example
 * ```ts
 * import { parseImageName } from "./names.ts";
 * parseImageName("nginx"); // { domain: "docker.io", path: "library/nginx" }
 * ```
 */
export function parseImageName(text: string): ImageNameParts | undefined {
  const { name, tag, digest } = splitNameTagDigest(text);
  if (digest !== undefined && !isDigest(digest)) return undefined;
  if (tag !== undefined && !isTag(tag)) return undefined;
  const { domain: host, path } = splitDomain(name);
  if (host !== undefined && !isDomain(host)) return undefined;
  const domain = host === undefined || DOCKER_HUB_ALIASES.has(host) ? DOCKER_HUB : host;
  const parts = path.split("/");
  if (!parts.every((p) => isPathComponent(p))) return undefined;
  if (domain === DOCKER_HUB && parts.length === 1) parts.unshift("library");
  return { domain, path: parts.join("/"), tag, digest };
}

/**
 * The fully qualified form of a reference, with `:latest` added when it has neither a
 * tag nor a digest (`nginx` → `docker.io/library/nginx:latest`); undefined if it is
 * not a reference.
 *
 * @example
 * ```ts
 * import { fullImageName } from "./names.ts";
 * fullImageName("nginx"); // "docker.io/library/nginx:latest"
 * ```
 */
export function fullImageName(text: string): string | undefined {
  const p = parseImageName(text);
  if (!p) return undefined;
  const tag = p.tag ?? (p.digest ? undefined : "latest");
  return `${p.domain}/${p.path}${tag ? `:${tag}` : ""}${p.digest ? `@${p.digest}` : ""}`;
}

/**
 * The short form Docker prints and writes in `RepoTags` (`docker.io/library/nginx:latest`
 * → `nginx:latest`), tag added as in {@linkcode fullImageName}; undefined if not a reference.
 *
 * @example
 * ```ts
 * import { familiarImageName } from "./names.ts";
 * familiarImageName("docker.io/library/nginx"); // "nginx:latest"
 * ```
 */
export function familiarImageName(text: string): string | undefined {
  const full = fullImageName(text);
  if (!full) return undefined;
  return full.replace(/^docker\.io\//, "").replace(/^library\/(?=[^/]+$|[^/]+[:@])/, "");
}

/**
 * The repository part of a reference in the familiar form (`nginx`, `quay.io/a/b`).
 *
 * @example
 * ```ts
 * import { familiarRepository } from "./names.ts";
 * familiarRepository("docker.io/library/nginx:1.25"); // "nginx"
 * ```
 */
export function familiarRepository(text: string): string | undefined {
  const p = parseImageName(text);
  if (!p) return undefined;
  const name = p.domain === "docker.io" ? p.path.replace(/^library\/(?=[^/]+$)/, "") : p.path;
  return p.domain === "docker.io" ? name : `${p.domain}/${name}`;
}

/**
 * The tag of a reference (`latest` when it has neither a tag nor a digest), undefined for
 * a digest-only reference or text that is not a reference.
 *
 * @example
 * ```ts
 * import { imageTag } from "./names.ts";
 * imageTag("nginx:1.25"); // "1.25"
 * ```
 */
export function imageTag(text: string): string | undefined {
  const p = parseImageName(text);
  if (!p) return undefined;
  return p.tag ?? (p.digest ? undefined : "latest");
}

/**
 * Whether two names denote the same image: equal as written, or equal once both are
 * fully qualified.
 *
 * @example
 * ```ts
 * import { sameImageName } from "./names.ts";
 * sameImageName("nginx", "docker.io/library/nginx:latest"); // true
 * ```
 */
export function sameImageName(a: string, b: string): boolean {
  if (a === b) return true;
  const fa = fullImageName(a);
  return fa !== undefined && fa === fullImageName(b);
}
