/**
 * A request to a registry's API with everything around it: `Authorization` for the
 * scopes it needs, one new attempt after a 401 challenge, and retries with backoff on
 * connection failures and on 408/429/5xx, only for requests that are safe to repeat.
 *
 * @module
 */

import { AbortedError } from "../errors.ts";
import type { Authenticator } from "./auth.ts";
import { RegistryConnectionError } from "./errors.ts";
import { type HttpResponse, type HttpTransport, type RequestBody, show } from "./transport.ts";
import { backoffDelay, RETRYABLE_STATUSES, type RetryPolicy, sleep } from "./retry.ts";

/** New tokens one request may ask for after the registry refused the one it sent. */
const MAX_NEW_TOKENS = 2;

/**
 * One request to the registry.
 *
 * @example
 * ```ts ignore
 * const res = await http.send({
 *   method: "HEAD",
 *   url: "v2/app/manifests/latest",
 *   scopes: ["repository:app:pull"],
 *   operation: "check manifest r.example.com/app:latest",
 * });
 * ```
 */
export interface RegistryRequest {
  /** The HTTP method. */
  method: "GET" | "HEAD" | "PUT" | "POST" | "PATCH" | "DELETE";
  /** Absolute URL, or a path relative to the registry's base URL (`v2/...`). */
  url: URL | string;
  /** Headers besides `Authorization`. */
  headers?: Record<string, string>;
  /** The body: bytes can be sent again, a stream only once. */
  body?: RequestBody;
  /** The scopes the request needs, e.g. `repository:app:pull`. */
  scopes: string[];
  /** Names the operation and its subject in errors and logs. */
  operation: string;
  /**
   * Whether the request may be repeated after a connection failure or a 408/429/5xx
   * answer. Default: true unless the body is a stream.
   */
  retry?: boolean;
  /** Cancels the request. */
  signal?: AbortSignal;
  /** How long to wait for the answer once the request is sent. */
  headersTimeoutMs?: number;
}

/**
 * Sends requests to one registry with authentication and retries.
 *
 * @example
 * ```ts ignore
 * import { RegistryHttp } from "./registry_http.ts";
 * const http = new RegistryHttp(new URL("http://127.0.0.1:5000/"), transport, auth, policy);
 * const res = await http.send({ method: "GET", url: "v2/", scopes: [], operation: "ping" });
 * ```
 */
export class RegistryHttp {
  /** The registry's base URL. */
  readonly base: URL;
  /** The transport under it. */
  readonly transport: HttpTransport;
  /** The authenticator. */
  readonly auth: Authenticator;
  /** The retry policy. */
  readonly retry: RetryPolicy;

  /**
   * Creates the request layer of one registry.
   *
   * @param base the registry's base URL
   * @param transport sends single requests
   * @param auth adds `Authorization`
   * @param retry how often and how patiently to retry
   */
  constructor(base: URL, transport: HttpTransport, auth: Authenticator, retry: RetryPolicy) {
    this.base = base;
    this.transport = transport;
    this.auth = auth;
    this.retry = retry;
  }

  /** `host[:port]` of the registry. */
  get host(): string {
    return this.base.host;
  }

  /** Resolves a path relative to the base URL. */
  url(path: string): URL {
    return new URL(path, this.base);
  }

  /**
   * Sends a request. Returns the answer whatever its status (after the retries a
   * retryable status got); throws {@linkcode RegistryConnectionError} when no answer
   * came after the retries, {@linkcode AbortedError} on abort.
   */
  async send(req: RegistryRequest): Promise<HttpResponse> {
    const url = typeof req.url === "string" ? this.url(req.url) : req.url;
    const replayable = !(req.body instanceof ReadableStream);
    const retryable = req.retry ?? replayable;
    let scopes = req.scopes;
    let challenges = 0;
    for (let attempt = 0;;) {
      if (req.signal?.aborted) throw new AbortedError(req.operation);
      const authorization = await this.auth.header(scopes, req.signal, req.operation);
      const headers: Record<string, string> = { ...req.headers };
      if (authorization) headers.authorization = authorization;
      let res: HttpResponse;
      try {
        res = await this.transport.send({
          method: req.method,
          url,
          headers,
          body: req.body,
          signal: req.signal,
          operation: req.operation,
          authorizedOrigin: this.base.origin,
          headersTimeoutMs: req.headersTimeoutMs,
        });
      } catch (e) {
        if (e instanceof RegistryConnectionError && retryable && attempt < this.retry.maxRetries) {
          attempt++;
          const delay = backoffDelay(this.retry, attempt) ?? 0;
          this.transport.log(`${req.operation}: retry ${attempt} in ${delay} ms (${e.message})`);
          await sleep(delay, req.signal, req.operation);
          continue;
        }
        if (e instanceof RegistryConnectionError && attempt > 0) {
          // Say that this was the last of several tries, not a first failure.
          throw new RegistryConnectionError(`${e.message} (gave up after ${attempt} retries)`, {
            cause: e,
          });
        }
        throw e;
      }
      if (res.status === 401) {
        const outcome = await this.auth.challenged(res, scopes, authorization);
        // A second new attempt only for a token refused as no longer good: one fetched for
        // the first may expire on its way too (tokens lasting seconds, a slow link).
        const allowed = outcome.tokenRefused ? MAX_NEW_TOKENS : 1;
        if (outcome.retry && challenges < allowed && replayable) {
          challenges++;
          scopes = outcome.scopes;
          await res.discard();
          continue;
        }
        return res;
      }
      if (RETRYABLE_STATUSES.has(res.status) && retryable && attempt < this.retry.maxRetries) {
        const delay = backoffDelay(this.retry, attempt + 1, res.headers.get("retry-after"));
        if (delay !== undefined) {
          attempt++;
          await res.discard();
          this.transport.log(
            `${req.operation}: ${req.method} ${show(url)} answered ${res.status}; ` +
              `retry ${attempt} in ${delay} ms`,
          );
          await sleep(delay, req.signal, req.operation);
          continue;
        }
      }
      return res;
    }
  }
}
