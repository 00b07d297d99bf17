/**
 * One HTTP exchange with a registry over web `fetch`: redirects followed by hand so
 * `Authorization` never reaches another origin, a timeout until the answer starts and
 * a timeout on a body that stalls (in either direction), abort through a signal, and
 * a debug log that never shows a credential.
 *
 * Retries live one level up ({@linkcode ./registry_http.ts}); this file does one attempt.
 *
 * @module
 */

import { AbortedError, ImagesError } from "../errors.ts";
import { readAll } from "../streams.ts";
import { isLoopbackHost, resolveLocation } from "./endpoint.ts";
import {
  fetchFailureText,
  RegistryConnectionError,
  RegistryError,
  StalledError,
  unreachableError,
} from "./errors.ts";

/**
 * A request body: bytes (can be sent again) or a stream (sent once).
 *
 * @example
 * ```ts
 * import type { RequestBody } from "./transport.ts";
 * const body: RequestBody = new TextEncoder().encode("{}");
 * ```
 */
export type RequestBody = Uint8Array | ReadableStream<Uint8Array>;

/**
 * One HTTP request.
 *
 * @example
 * ```ts
 * import type { HttpRequest } from "./transport.ts";
 * const request: HttpRequest = {
 *   method: "GET",
 *   url: new URL("https://r.example.com/v2/"),
 *   operation: "ping r.example.com",
 * };
 * ```
 */
export interface HttpRequest {
  /** `GET`, `HEAD`, `PUT`, `POST`, `PATCH` or `DELETE`. */
  method: string;
  /** The absolute URL. */
  url: URL;
  /** Headers; `authorization` is only sent to the origin of `url` (see `authorizedOrigin`). */
  headers?: Record<string, string>;
  /** The body, if any. */
  body?: RequestBody;
  /** Cancels the request; the error is then an {@linkcode AbortedError}. */
  signal?: AbortSignal;
  /** Names the operation in errors, e.g. `get manifest r.example.com/app:1`. */
  operation: string;
  /**
   * The only origin credentials may go to (the `authorization` header, and the body
   * when {@linkcode HttpRequest.secretBody} is set); default the origin of `url`.
   */
  authorizedOrigin?: string;
  /**
   * The body carries a credential (an OAuth2 password or refresh token form): a
   * redirect to another origin is refused rather than sending it there, whatever the
   * redirect code, and it goes over plain http only to loopback or an insecure registry.
   */
  secretBody?: boolean;
  /** How long to wait for the answer to start once the request was sent; default per transport. */
  headersTimeoutMs?: number;
}

/**
 * Timeouts and limits of a {@linkcode HttpTransport}.
 *
 * @example
 * ```ts
 * import type { HttpTransportOptions } from "./transport.ts";
 * const options: HttpTransportOptions = { connectTimeoutMs: 10_000, stallTimeoutMs: 30_000 };
 * ```
 */
export interface HttpTransportOptions {
  /**
   * The `fetch` to use (default the global one). The library lets go of the memory of
   * a streamed body's chunk once the runtime's own `fetch` asks for the next (it holds
   * what it read until sent); with a `fetch` given here, that is left to the garbage
   * collector, since such a one may keep or re-read what it read.
   */
  fetch?: typeof fetch;
  /** Debug log; `Authorization` and query strings are never shown. */
  log?: (line: string) => void;
  /**
   * How long a request may wait for a sign of life: the answer of a request without
   * body, or the network taking the first bytes of a body. Default 30 s.
   */
  connectTimeoutMs?: number;
  /**
   * The longest pause of a body that flows (sent or received), and the longest wait
   * for the answer after a body was sent. A body given as bytes, whose progress cannot
   * be seen, gets this long per MiB. Default 60 s.
   */
  stallTimeoutMs?: number;
  /** Most redirects followed for one request. Default 10. */
  maxRedirects?: number;
  /** Allow `authorization` over plain http to a host that is not loopback. Default false. */
  allowInsecureCredentials?: boolean;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MiB = 1024 * 1024;

/**
 * The answer to a request: status, headers, the URL it came from (after redirects),
 * and a body whose stalls and drops surface as {@linkcode RegistryConnectionError}.
 *
 * @example
 * ```ts
 * import { HttpTransport } from "./transport.ts";
 * const transport = new HttpTransport({ fetch: () => Promise.resolve(new Response("hi")) });
 * const res = await transport.send({
 *   method: "GET",
 *   url: new URL("https://r.example.com/v2/"),
 *   operation: "ping",
 * });
 * console.log(res.status, await res.text());
 * ```
 */
export class HttpResponse {
  /** The HTTP status. */
  readonly status: number;
  /** The answer's headers. */
  readonly headers: Headers;
  /** The URL that answered (after redirects): relative `Location`s resolve against it. */
  readonly url: URL;
  /** The body, or null. Errors are {@linkcode RegistryConnectionError} or {@linkcode AbortedError}. */
  readonly body: ReadableStream<Uint8Array> | null;

  /**
   * Wraps an answer.
   *
   * @param status the HTTP status
   * @param headers the headers
   * @param url the URL that answered
   * @param body the body, or null
   */
  constructor(
    status: number,
    headers: Headers,
    url: URL,
    body: ReadableStream<Uint8Array> | null,
  ) {
    this.status = status;
    this.headers = headers;
    this.url = url;
    this.body = body;
  }

  /** Whether the status is 2xx. */
  get ok(): boolean {
    return this.status >= 200 && this.status < 300;
  }

  /**
   * Reads the whole body, failing when it is longer than `limit` bytes.
   * `what` names the document in that error.
   */
  async bytes(limit = 4 * 1024 * 1024, what = "answer"): Promise<Uint8Array> {
    if (!this.body) return new Uint8Array(0);
    return await readAll(this.body, limit, what);
  }

  /** Reads the whole body as text (at most `limit` bytes). */
  async text(limit = 4 * 1024 * 1024): Promise<string> {
    return new TextDecoder().decode(await this.bytes(limit));
  }

  /** A plain `Response` over the same status, headers and (unread) body, e.g. for error parsing. */
  toResponse(): Response {
    const nullBody = this.status === 204 || this.status === 304 || this.status < 200;
    return new Response(nullBody ? null : this.body, {
      status: this.status,
      headers: this.headers,
    });
  }

  /** Throws the body away without reading it, so the connection can be reused or closed. */
  async discard(): Promise<void> {
    await this.body?.cancel().catch(() => {});
  }
}

/** A marker: the request was stopped by one of our timers. */
class TimeoutSignal extends Error {
  constructor(readonly what: string, readonly stall = false) {
    super(what);
  }
}

/**
 * Sends single HTTP requests to a registry (and to the places it redirects to).
 *
 * @example
 * ```ts ignore
 * import { HttpTransport } from "./transport.ts";
 * const transport = new HttpTransport({ stallTimeoutMs: 10_000 });
 * const res = await transport.send({
 *   method: "GET",
 *   url: new URL("http://127.0.0.1:5000/v2/"),
 *   operation: "ping 127.0.0.1:5000",
 * });
 * await res.discard();
 * ```
 */
export class HttpTransport {
  readonly #fetch: typeof fetch;
  /** Whether the registry ever answered: a refusal then means a restart, not a wrong port. */
  #answered = false;
  /**
   * Whether a streamed body's chunks may be freed once the next is asked for: true
   * with the runtime's own `fetch` (see {@linkcode HttpTransportOptions.fetch}).
   */
  readonly freesSentChunks: boolean;
  readonly #log?: (line: string) => void;
  readonly #connectMs: number;
  readonly #stallMs: number;
  readonly #maxRedirects: number;
  readonly #allowInsecureCredentials: boolean;

  /**
   * Creates a transport.
   *
   * @param options timeouts, log and the `fetch` to use
   */
  constructor(options: HttpTransportOptions = {}) {
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.freesSentChunks = options.fetch === undefined;
    this.#log = options.log;
    this.#connectMs = options.connectTimeoutMs ?? 30_000;
    this.#stallMs = options.stallTimeoutMs ?? 60_000;
    this.#maxRedirects = options.maxRedirects ?? 10;
    this.#allowInsecureCredentials = options.allowInsecureCredentials ?? false;
  }

  /** The stall timeout, for callers that need to bound their own waits. */
  get stallTimeoutMs(): number {
    return this.#stallMs;
  }

  /** Writes a line to the debug log, if there is one. */
  log(line: string): void {
    this.#log?.(line);
  }

  /**
   * Sends a request, following redirects. `authorization` is dropped on the way to
   * any other origin. Throws {@linkcode RegistryConnectionError} when there is no
   * answer, {@linkcode AbortedError} when `signal` fires.
   */
  async send(request: HttpRequest): Promise<HttpResponse> {
    const authorizedOrigin = request.authorizedOrigin ?? request.url.origin;
    let url = request.url;
    let method = request.method;
    let body = request.body;
    let bodyUsed = false;
    for (let hop = 0;; hop++) {
      // Credentials are bound to one origin: decided per origin for everything that
      // carries one, never header by header.
      const trusted = url.origin === authorizedOrigin;
      const secretBody = request.secretBody === true && body !== undefined;
      if (secretBody && !trusted) {
        throw new ImagesError(
          `${request.operation}: ${show(request.url)} redirected a request carrying credentials ` +
            `to another origin (${url.origin}); they are not sent there`,
          "REGISTRY_PROTOCOL",
        );
      }
      const headers = new Headers();
      for (const [k, v] of Object.entries(request.headers ?? {})) {
        if (k.toLowerCase() === "authorization" && !trusted) continue;
        headers.set(k, v);
      }
      if (headers.has("authorization") || secretBody) {
        this.#checkCredentialTransport(url, request.operation);
      }
      if (body instanceof ReadableStream) {
        if (bodyUsed) {
          throw new ImagesError(
            `${request.operation}: the registry redirected a streamed upload (${method} ${
              show(url)
            }); it cannot be sent again`,
            "REGISTRY_PROTOCOL",
          );
        }
        bodyUsed = true;
      }
      const res = await this.#once(method, url, headers, body, request);
      if (!REDIRECTS.has(res.status) || !res.headers.has("location")) return res;
      await res.discard();
      if (hop >= this.#maxRedirects) {
        throw new RegistryError(
          `${request.operation}: more than ${this.#maxRedirects} redirects (last to ${show(url)})`,
          { status: res.status },
          "TOO_MANY_REDIRECTS",
        );
      }
      const next = resolveLocation(res.headers.get("location")!, url, request.operation);
      this.log(`redirect ${res.status} ${show(url)} -> ${show(next)}`);
      if (res.status === 303 || ((res.status === 301 || res.status === 302) && method === "POST")) {
        method = method === "HEAD" ? "HEAD" : "GET";
        body = undefined;
      }
      url = next;
    }
  }

  #checkCredentialTransport(url: URL, operation: string): void {
    if (
      url.protocol === "http:" && !isLoopbackHost(url.hostname) && !this.#allowInsecureCredentials
    ) {
      throw new ImagesError(
        `${operation}: refusing to send credentials over plain http to ${url.host}; ` +
          `use https, or mark the registry insecure to allow it`,
        "INSECURE_CREDENTIALS",
      );
    }
  }

  async #once(
    method: string,
    url: URL,
    headers: Headers,
    body: RequestBody | undefined,
    request: HttpRequest,
  ): Promise<HttpResponse> {
    const controller = new AbortController();
    const userSignal = request.signal;
    if (userSignal?.aborted) throw new AbortedError(request.operation);
    const onUserAbort = () => controller.abort(new AbortedError(request.operation));
    userSignal?.addEventListener("abort", onUserAbort, { once: true });

    let timer: ReturnType<typeof setTimeout> | undefined;
    const arm = (ms: number, what: string) => {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(new TimeoutSignal(what)), ms);
    };
    const disarm = () => clearTimeout(timer);
    const headersMs = request.headersTimeoutMs ?? this.#connectMs;

    let sendBody: BodyInit | undefined;
    if (body instanceof ReadableStream) {
      const stallMs = this.#stallMs;
      const answerMs = Math.max(request.headersTimeoutMs ?? 0, stallMs);
      arm(this.#connectMs, `no connection within ${secs(this.#connectMs)}`);
      sendBody = trackedBody(body, {
        reading: disarm,
        queued: () => arm(stallMs, `the upload stalled for ${secs(stallMs)}`),
        ended: () => arm(answerMs, `no answer within ${secs(answerMs)} of the upload's end`),
      });
    } else {
      // The network's progress on a byte body cannot be seen: allow one stall period per
      // MiB on top of the wait for the answer.
      const sending = body === undefined ? 0 : Math.ceil(body.byteLength / MiB) * this.#stallMs;
      if (body !== undefined) sendBody = body as unknown as BodyInit;
      arm(headersMs + sending, `no answer within ${secs(headersMs + sending)}`);
    }

    if (this.#log) {
      this.log(`${method} ${show(url)}`);
      headers.forEach((value, name) => this.log(`  ${headerLine(name, value)}`));
    }
    const started = performance.now();
    let response: Response;
    try {
      const init: RequestInit & { duplex?: string } = {
        method,
        headers,
        body: sendBody,
        redirect: "manual",
        signal: controller.signal,
      };
      if (body instanceof ReadableStream) init.duplex = "half";
      response = await untilAborted(this.#fetch(url, init), controller.signal, (late) => {
        void late.body?.cancel().catch(() => {});
      });
    } catch (e) {
      disarm();
      userSignal?.removeEventListener("abort", onUserAbort);
      this.log(`${method} ${show(url)} failed: ${describeFailure(controller.signal, e)}`);
      throw this.#failure(controller.signal, e, request.operation, method, url);
    }
    disarm();
    this.#answered = true;
    this.log(
      `${method} ${show(url)} -> ${response.status} (${
        Math.round(performance.now() - started)
      } ms)`,
    );
    if (!response.body) {
      userSignal?.removeEventListener("abort", onUserAbort);
      return new HttpResponse(response.status, response.headers, url, null);
    }
    const wrapped = watchedBody(response, response.body, {
      stallMs: this.#stallMs,
      signal: controller.signal,
      abort: (why) => controller.abort(why),
      failure: (e) => this.#failure(controller.signal, e, request.operation, method, url),
      done: () => userSignal?.removeEventListener("abort", onUserAbort),
    });
    return new HttpResponse(response.status, response.headers, url, wrapped);
  }

  #failure(signal: AbortSignal, e: unknown, operation: string, method: string, url: URL): Error {
    if (e instanceof ImagesError) return e;
    if (signal.aborted) {
      const reason = signal.reason;
      if (reason instanceof AbortedError) return reason;
      if (reason instanceof TimeoutSignal) {
        const message = `${operation}: ${method} ${show(url)}: ${reason.what}`;
        return reason.stall ? new StalledError(message) : new RegistryConnectionError(message);
      }
    }
    const final = unreachableError(e, url, `${operation}: ${method} ${show(url)}`, !this.#answered);
    if (final) return final;
    const message = fetchFailureText(e);
    const name = (e as { name?: string }).name;
    if (name === "NotCapable" || name === "PermissionDenied") {
      // Deno without --allow-net for this host: no retry can help
      return new ImagesError(`${operation}: ${firstLine(message)}`, "PERMISSION_DENIED", {
        cause: e,
      });
    }
    return new RegistryConnectionError(
      `${operation}: ${method} ${show(url)}: connection failed (${firstLine(message)})`,
      { cause: e },
    );
  }
}

function describeFailure(signal: AbortSignal, e: unknown): string {
  if (signal.aborted) {
    const reason = signal.reason;
    if (reason instanceof AbortedError) return "aborted";
    if (reason instanceof TimeoutSignal) return reason.what;
  }
  return fetchFailureText(e);
}

/** Request headers whose values are credentials: shown as `<scheme> <redacted>`. */
const SECRET_HEADERS = new Set(["authorization", "proxy-authorization", "cookie"]);

/**
 * A request header as a debug log line, a credential replaced by `<redacted>` (its
 * scheme kept, e.g. `Authorization: Bearer <redacted>`).
 *
 * @example
 * ```ts
 * import { headerLine } from "./transport.ts";
 * headerLine("authorization", "Basic dXNlcjpwYXNz"); // "Authorization: Basic <redacted>"
 * ```
 */
export function headerLine(name: string, value: string): string {
  const shown = name.replace(/(^|-)([a-z])/g, (_, dash, c) => dash + c.toUpperCase());
  if (!SECRET_HEADERS.has(name.toLowerCase())) return `${shown}: ${value}`;
  const scheme = /^(Basic|Bearer|Digest|Negotiate)\s/i.exec(value)?.[1];
  return `${shown}: ${scheme ? scheme + " " : ""}<redacted>`;
}

function firstLine(text: string): string {
  return text.split("\n")[0].slice(0, 200);
}

function secs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

/**
 * A URL for messages and logs: origin and path, with any query replaced by `?…`
 * (pre-signed storage URLs carry credentials there).
 *
 * @example
 * ```ts
 * import { show } from "./transport.ts";
 * show(new URL("https://s3.example.com/blob?X-Amz-Signature=secret")); // "https://s3.example.com/blob?…"
 * ```
 */
export function show(url: URL): string {
  return `${url.origin}${url.pathname}${url.search ? "?…" : ""}`;
}

/** Wraps a request body to tell when the network waits for it and when it is done. */
function trackedBody(
  body: ReadableStream<Uint8Array>,
  on: { reading: () => void; queued: () => void; ended: () => void },
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      on.reading();
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (e) {
        on.queued();
        throw e;
      }
      if (result.done) {
        on.ended();
        controller.close();
      } else {
        on.queued();
        controller.enqueue(result.value);
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/**
 * Settles as `promise` does, or rejects with the signal's reason as soon as `signal`
 * aborts: a runtime may leave a pending fetch or body read hanging after its abort
 * (Deno 2.9 does for a body read once the `Response` is unreachable). What `promise`
 * brings after that goes to `late`, so nothing is left open.
 */
function untilAborted<T>(
  promise: Promise<T>,
  signal: AbortSignal,
  late: (value: T) => void,
): Promise<T> {
  if (signal.aborted) {
    promise.then(late, () => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    let aborted = false;
    const onAbort = () => {
      aborted = true;
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        if (aborted) late(value);
        else resolve(value);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

/**
 * Responses with a body read pending, held while it is: Deno 2.9 stops failing a pending
 * body read on abort once its `Response` is unreachable. (Only while a read waits, so a
 * body a caller drops unread is not kept alive.)
 */
const READING = new Set<Response>();

/**
 * Wraps a response body so a read that waits too long, or a dropped connection, fails
 * typed, and an abort ends a pending read at once.
 */
function watchedBody(
  response: Response,
  body: ReadableStream<Uint8Array>,
  on: {
    stallMs: number;
    signal: AbortSignal;
    abort: (why: unknown) => void;
    failure: (e: unknown) => Error;
    done: () => void;
  },
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let finished = false;
  const finish = () => {
    if (!finished) {
      finished = true;
      on.done();
    }
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const timer = setTimeout(
        () => on.abort(new TimeoutSignal(`the download stalled for ${secs(on.stallMs)}`, true)),
        on.stallMs,
      );
      READING.add(response);
      try {
        const { done, value } = await untilAborted(reader.read(), on.signal, () => {});
        if (done) {
          finish();
          controller.close();
        } else controller.enqueue(value);
      } catch (e) {
        finish();
        if (on.signal.aborted) void reader.cancel(on.signal.reason).catch(() => {});
        throw on.failure(e);
      } finally {
        READING.delete(response);
        clearTimeout(timer);
      }
    },
    async cancel(reason) {
      finish();
      await reader.cancel(reason).catch(() => {});
    },
  }, { highWaterMark: 0 });
}
