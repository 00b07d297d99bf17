/**
 * Registry addresses: the base URL of a registry, which hosts count as loopback,
 * the URLs of the API's endpoints, and the rules for following a `Location`.
 *
 * @module
 */

import { ImagesError } from "../errors.ts";

/**
 * Whether a host name (without port) is a loopback address: `localhost`,
 * `127.0.0.0/8` or `::1`.
 *
 * @example
 * ```ts
 * import { isLoopbackHost } from "./endpoint.ts";
 * isLoopbackHost("127.0.0.1"); // true
 * isLoopbackHost("registry.example.com"); // false
 * ```
 */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/^\[|\]$/g, "");
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  if (h === "::1" || h === "0:0:0:0:0:0:0:1") return true;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * Turns what a user gives for a registry into its base URL: a bare host gets
 * `https://`, or `http://` when it is a loopback address or `insecure` is set.
 * An explicit `http://` is kept (credentials are still only sent over it to a loopback
 * host or a registry marked insecure). Paths, queries and credentials in the URL are refused.
 *
 * @example
 * ```ts
 * import { registryBaseUrl } from "./endpoint.ts";
 * registryBaseUrl("registry.example.com").href; // "https://registry.example.com/"
 * registryBaseUrl("127.0.0.1:5000").href; // "http://127.0.0.1:5000/"
 * ```
 */
export function registryBaseUrl(text: string, insecure = false): URL {
  const trimmed = text.trim().replace(/\/+$/, "");
  let url: URL;
  try {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed)) url = new URL(trimmed);
    else {
      const probe = new URL(`http://${trimmed}`);
      const scheme = insecure || isLoopbackHost(probe.hostname) ? "http" : "https";
      url = new URL(`${scheme}://${trimmed}`);
    }
  } catch {
    throw new ImagesError(
      `invalid registry URL ${JSON.stringify(text)}: expected host[:port] or https://host[:port]`,
      "REGISTRY_URL_INVALID",
    );
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new ImagesError(
      `invalid registry URL ${JSON.stringify(text)}: the scheme must be https or http`,
      "REGISTRY_URL_INVALID",
    );
  }
  if (url.username || url.password) {
    throw new ImagesError(
      `invalid registry URL: credentials in the URL are not accepted; pass them as options`,
      "REGISTRY_URL_INVALID",
    );
  }
  if ((url.pathname !== "/" && url.pathname !== "/v2" && url.pathname !== "/v2/") || url.search) {
    throw new ImagesError(
      `invalid registry URL ${JSON.stringify(text)}: expected no path or query`,
      "REGISTRY_URL_INVALID",
    );
  }
  return new URL(`${url.protocol}//${url.host}/`);
}

/**
 * Whether a repository name has the OCI grammar: components of `[a-z0-9]` separated
 * by `.`, `_`, `__` or `-`s, joined by `/`.
 *
 * @example
 * ```ts
 * import { isRepositoryName } from "./endpoint.ts";
 * isRepositoryName("org/owner/app"); // true
 * isRepositoryName("../etc"); // false
 * ```
 */
export function isRepositoryName(name: string): boolean {
  return name.length <= 255 &&
    /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/.test(
      name,
    );
}

/**
 * Returns `repo` if it is a valid repository name, otherwise throws an error naming it.
 *
 * @example
 * ```ts
 * import { checkRepository } from "./endpoint.ts";
 * checkRepository("owner/app"); // "owner/app"
 * ```
 */
export function checkRepository(repo: string): string {
  if (!isRepositoryName(repo)) {
    throw new ImagesError(
      `invalid repository name ${JSON.stringify(repo)}: expected lower-case components ` +
        `[a-z0-9] separated by . _ - and joined by /`,
      "INVALID_REFERENCE",
    );
  }
  return repo;
}

/**
 * Whether a text is a tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
 *
 * @example
 * ```ts
 * import { isTagName } from "./endpoint.ts";
 * isTagName("v1.0"); // true
 * isTagName("\x1b[2J"); // false
 * ```
 */
export function isTagName(text: string): boolean {
  return /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(text);
}

/**
 * Whether a manifest reference is a tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`) or a digest.
 *
 * @example
 * ```ts
 * import { isManifestReference } from "./endpoint.ts";
 * isManifestReference("latest"); // true
 * isManifestReference("a/b"); // false
 * ```
 */
export function isManifestReference(reference: string): boolean {
  return isTagName(reference) || /^sha256:[a-f0-9]{64}$/.test(reference);
}

/**
 * Resolves a URL a registry gave (`Location`, `Link`, a redirect) against the URL of
 * the request that returned it, keeping its query as given, and checks it is one we
 * may follow: http or https only (never `file:`, `data:` or `blob:`, which `fetch`
 * would read locally), no user name or password in it, and no step down from https
 * to plain http outside loopback. Every URL from a registry passes here; `operation`
 * names the request in the error.
 *
 * @example
 * ```ts
 * import { resolveLocation } from "./endpoint.ts";
 * const base = new URL("https://r.example.com/v2/app/blobs/uploads/");
 * resolveLocation("/v2/app/blobs/uploads/1?_state=x", base).href;
 * // "https://r.example.com/v2/app/blobs/uploads/1?_state=x"
 * ```
 */
export function resolveLocation(location: string, requestUrl: URL, operation?: string): URL {
  const during = operation ? `${operation}: ` : "";
  let url: URL;
  try {
    url = new URL(location, requestUrl);
  } catch {
    throw new ImagesError(
      `${during}${requestUrl.host} answered with an invalid Location ${
        JSON.stringify(location.slice(0, 200))
      }`,
      "REGISTRY_PROTOCOL",
    );
  }
  const refuse = (why: string) => {
    throw new ImagesError(
      `${during}${requestUrl.host} pointed to ${JSON.stringify(location.slice(0, 200))}: ${why}`,
      "REGISTRY_PROTOCOL",
    );
  };
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    refuse(`the scheme ${url.protocol} is not http or https`);
  }
  if (url.username || url.password) refuse("a URL with credentials in it is not followed");
  if (
    requestUrl.protocol === "https:" && url.protocol === "http:" && !isLoopbackHost(url.hostname)
  ) {
    refuse("a step down from https to plain http is not followed");
  }
  return url;
}

/**
 * A copy of `url` with `name=value` appended to its query, leaving the parameters
 * already there byte for byte as they were (upload locations carry signed state).
 *
 * @example
 * ```ts
 * import { withQuery } from "./endpoint.ts";
 * withQuery(new URL("https://r.example.com/u?_state=a%2Bb"), "digest", "sha256:00").href;
 * // "https://r.example.com/u?_state=a%2Bb&digest=sha256%3A00"
 * ```
 */
export function withQuery(url: URL, name: string, value: string): URL {
  const out = new URL(url.href);
  const pair = `${encodeURIComponent(name)}=${encodeURIComponent(value)}`;
  out.search = out.search && out.search !== "?" ? `${out.search}&${pair}` : `?${pair}`;
  return out;
}

/**
 * The URL of an API path under a registry's base URL, e.g. `v2/app/manifests/1`.
 *
 * @example
 * ```ts
 * import { apiUrl } from "./endpoint.ts";
 * apiUrl(new URL("https://r.example.com/"), "v2/app/tags/list").href;
 * // "https://r.example.com/v2/app/tags/list"
 * ```
 */
export function apiUrl(base: URL, path: string): URL {
  return new URL(path, base);
}
