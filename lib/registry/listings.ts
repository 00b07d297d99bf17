/**
 * Listings: the registry's repositories (`_catalog`) and a repository's tags
 * (`tags/list`), read `n` at a time following `Link: <…>; rel="next"` to the end.
 *
 * @module
 */

import { ImagesError } from "../errors.ts";
import { checkRepository, resolveLocation } from "./endpoint.ts";
import { errorFromResponse } from "./errors.ts";
import type { RegistryHttp } from "./request.ts";

/**
 * Options of a listing.
 *
 * @example
 * ```ts ignore
 * const repos = await listRepositories(http, { pageSize: 30 });
 * ```
 */
export interface ListOptions {
  /** Entries asked for per page (`n`). Default 100. */
  pageSize?: number;
  /** Cancels the listing. */
  signal?: AbortSignal;
}

const MAX_PAGES = 100_000;
const MAX_PAGE_BYTES = 16 * 1024 * 1024;

/**
 * The target of the `rel="next"` link in a `Link` header, or undefined.
 *
 * @example
 * ```ts
 * import { parseLinkNext } from "./listings.ts";
 * parseLinkNext('</v2/_catalog?last=b&n=2>; rel="next"'); // "/v2/_catalog?last=b&n=2"
 * ```
 */
export function parseLinkNext(header: string | null | undefined): string | undefined {
  if (!header) return undefined;
  const text = header.slice(0, 16 * 1024);
  const re = /<([^>]*)>([^<]*)/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const value = linkParam(m[2], "rel");
    if (value && value.toLowerCase().split(/\s+/).includes("next")) return m[1];
  }
  return undefined;
}

/**
 * One parameter of a `Link` value, read in order from the start so that text inside
 * another parameter's quotes is never taken for a parameter of its own.
 */
function linkParam(params: string, wanted: string): string | undefined {
  const param = /\s*;\s*([^\s=;,"]+)\s*(?:=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s;,"]*)))?/y;
  for (let m = param.exec(params); m !== null; m = param.exec(params)) {
    if (m[1].toLowerCase() === wanted) return m[2] ?? m[3];
  }
  return undefined;
}

async function listAll(
  http: RegistryHttp,
  path: string,
  field: "repositories" | "tags",
  scopes: string[],
  operation: string,
  subject: "registry" | "repository",
  options: ListOptions,
): Promise<string[]> {
  const pageSize = options.pageSize ?? 100;
  if (!Number.isSafeInteger(pageSize) || pageSize < 1) {
    throw new ImagesError(`${operation}: pageSize must be a positive integer`, "INVALID_ARGUMENT");
  }
  let url = http.url(`${path}?n=${pageSize}`);
  const seen = new Set<string>();
  const out: string[] = [];
  for (let page = 0; page < MAX_PAGES; page++) {
    seen.add(url.href);
    const res = await http.send({
      method: "GET",
      url,
      scopes,
      operation,
      signal: options.signal,
    });
    if (!res.ok) throw await errorFromResponse(res.toResponse(), operation, subject);
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(await res.text(MAX_PAGE_BYTES));
    } catch (e) {
      if (e instanceof ImagesError) throw e;
      throw new ImagesError(`${operation}: the registry's answer is not JSON`, "REGISTRY_PROTOCOL");
    }
    const items = doc[field];
    if (items !== null && items !== undefined && !Array.isArray(items)) {
      throw new ImagesError(`${operation}: "${field}" is not a list`, "REGISTRY_PROTOCOL");
    }
    for (const item of items ?? []) if (typeof item === "string") out.push(item);
    const next = parseLinkNext(res.headers.get("link"));
    if (next === undefined) return out;
    const nextUrl = resolveLocation(next, res.url);
    if (nextUrl.origin !== http.base.origin) {
      throw new ImagesError(
        `${operation}: the next page is on another host (${nextUrl.host})`,
        "REGISTRY_PROTOCOL",
      );
    }
    if (seen.has(nextUrl.href)) {
      throw new ImagesError(`${operation}: the pages link in a loop`, "REGISTRY_PROTOCOL");
    }
    url = nextUrl;
  }
  throw new ImagesError(`${operation}: more than ${MAX_PAGES} pages`, "REGISTRY_PROTOCOL");
}

/**
 * Every repository of the registry (`GET /v2/_catalog`), all pages.
 *
 * @example
 * ```ts ignore
 * import { listRepositories } from "./listings.ts";
 * const repos = await listRepositories(http, { pageSize: 30 });
 * ```
 */
export async function listRepositories(
  http: RegistryHttp,
  options: ListOptions = {},
): Promise<string[]> {
  return await listAll(
    http,
    "v2/_catalog",
    "repositories",
    ["registry:catalog:*"],
    `list repositories of ${http.host}`,
    "registry",
    options,
  );
}

/**
 * Every tag of a repository (`GET /v2/<name>/tags/list`), all pages. Throws
 * {@linkcode RepositoryNotFoundError} when the repository does not exist.
 *
 * @example
 * ```ts ignore
 * import { listTags } from "./listings.ts";
 * const tags = await listTags(http, "owner/app", { pageSize: 30 });
 * ```
 */
export async function listTags(
  http: RegistryHttp,
  repo: string,
  options: ListOptions = {},
): Promise<string[]> {
  checkRepository(repo);
  return await listAll(
    http,
    `v2/${repo}/tags/list`,
    "tags",
    [`repository:${repo}:pull`],
    `list tags of ${http.host}/${repo}`,
    "repository",
    options,
  );
}
