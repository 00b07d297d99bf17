/**
 * Listings: the registry's repositories (`_catalog`) and a repository's tags
 * (`tags/list`), read `n` at a time following `Link: <…>; rel="next"` to the end.
 * Pages come one at a time ({@linkcode listPages}), names that are not valid are left
 * out (a registry's text never reaches a terminal unchecked), and a listing stops with
 * a clear error past {@linkcode MAX_LISTED} names, so a registry sending pages without
 * end costs bounded memory.
 *
 * @module
 */

import { ImagesError } from "../errors.ts";
import { checkRepository, isRepositoryName, isTagName, resolveLocation } from "./endpoint.ts";
import { errorFromResponse } from "./errors.ts";
import type { RegistryHttp } from "./registry_http.ts";

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
  /** Most names listed before the listing fails. Default {@linkcode MAX_LISTED}. */
  maxEntries?: number;
  /** Cancels the listing. */
  signal?: AbortSignal;
}

/**
 * Most names one listing returns by default: a registry answering with pages without
 * end fails with a clear error there instead of growing memory without bound.
 *
 * @example
 * ```ts
 * import { MAX_LISTED } from "./listings.ts";
 * console.log(MAX_LISTED); // 100000
 * ```
 */
export const MAX_LISTED = 100_000;
const MAX_PAGES = 10_000;
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

/** What one listing reads: where, which field, and which names are valid. */
interface Listing {
  path: string;
  field: "repositories" | "tags";
  valid: (name: string) => boolean;
  scopes: string[];
  operation: string;
  subject: "registry" | "repository";
}

/**
 * The pages of a listing, one at a time, each the valid names it held. The caller
 * decides what to keep; pages are only fetched as it asks for them.
 */
async function* listPages(
  http: RegistryHttp,
  listing: Listing,
  options: ListOptions,
): AsyncGenerator<string[]> {
  const { operation } = listing;
  const pageSize = options.pageSize ?? 100;
  if (!Number.isSafeInteger(pageSize) || pageSize < 1) {
    throw new ImagesError(`${operation}: pageSize must be a positive integer`, "INVALID_ARGUMENT");
  }
  let url = http.url(`${listing.path}?n=${pageSize}`);
  // Pages read, by a 53-bit hash of their URL: a loop is seen at once, in 8 bytes a page.
  const seen = new Set<number>([hash53(url.href)]);
  let invalid = 0;
  for (let page = 0; page < MAX_PAGES; page++) {
    const res = await http.send({
      method: "GET",
      url,
      scopes: listing.scopes,
      operation,
      signal: options.signal,
    });
    if (!res.ok) throw await errorFromResponse(res.toResponse(), operation, listing.subject);
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(await res.text(MAX_PAGE_BYTES));
    } catch (e) {
      if (e instanceof ImagesError) throw e;
      throw new ImagesError(`${operation}: the registry's answer is not JSON`, "REGISTRY_PROTOCOL");
    }
    const items = doc[listing.field];
    if (items !== null && items !== undefined && !Array.isArray(items)) {
      throw new ImagesError(`${operation}: "${listing.field}" is not a list`, "REGISTRY_PROTOCOL");
    }
    const names: string[] = [];
    for (const item of items ?? []) {
      if (typeof item === "string" && listing.valid(item)) names.push(item);
      else invalid++;
    }
    const next = parseLinkNext(res.headers.get("link"));
    yield names;
    if (next === undefined) break;
    const nextUrl = resolveLocation(next, res.url, operation);
    if (nextUrl.origin !== http.base.origin) {
      throw new ImagesError(
        `${operation}: the next page is on another host (${nextUrl.host})`,
        "REGISTRY_PROTOCOL",
      );
    }
    const key = hash53(nextUrl.href);
    if (seen.has(key)) {
      throw new ImagesError(`${operation}: the pages link in a loop`, "REGISTRY_PROTOCOL");
    }
    seen.add(key);
    url = nextUrl;
    if (page === MAX_PAGES - 1) {
      throw new ImagesError(`${operation}: more than ${MAX_PAGES} pages`, "REGISTRY_PROTOCOL");
    }
  }
  if (invalid > 0) http.transport.log(`${operation}: left out ${invalid} invalid names`);
}

async function listAll(
  http: RegistryHttp,
  listing: Listing,
  options: ListOptions,
): Promise<string[]> {
  const max = options.maxEntries ?? MAX_LISTED;
  const out: string[] = [];
  for await (const names of listPages(http, listing, options)) {
    if (out.length + names.length > max) {
      throw new ImagesError(
        `${listing.operation}: the registry lists more than ${max.toLocaleString("en-US")} ` +
          `names; stopped there`,
        "LISTING_TOO_LONG",
      );
    }
    for (const name of names) out.push(name);
  }
  return out;
}

/**
 * Every repository of the registry (`GET /v2/_catalog`), all pages (at most
 * `maxEntries` names; invalid names are left out).
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
  return await listAll(http, {
    path: "v2/_catalog",
    field: "repositories",
    valid: isRepositoryName,
    scopes: ["registry:catalog:*"],
    operation: `list repositories of ${http.host}`,
    subject: "registry",
  }, options);
}

/**
 * Every tag of a repository (`GET /v2/<name>/tags/list`), all pages (at most
 * `maxEntries`; invalid tags are left out). Throws
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
  return await listAll(http, {
    path: `v2/${repo}/tags/list`,
    field: "tags",
    valid: isTagName,
    scopes: [`repository:${repo}:pull`],
    operation: `list tags of ${http.host}/${repo}`,
    subject: "repository",
  }, options);
}

/** A 53-bit hash of a text (cyrb53): small keys for the set of pages read. */
function hash53(text: string): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}
