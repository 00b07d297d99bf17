/**
 * Typed errors of the registry client.
 *
 * Every error names the operation and the image, repository or blob it was about,
 * carries the HTTP status and the registry's OCI error codes, and never a credential.
 *
 * @module
 */

import { type ErrorCode, ImagesError, NotFoundError } from "../errors.ts";
import { printable } from "../printable.ts";
import { readAll } from "../streams.ts";

/**
 * One entry of a registry's `{"errors": [...]}` answer.
 *
 * @example
 * ```ts
 * import type { OciErrorEntry } from "./errors.ts";
 * const entry: OciErrorEntry = { code: "MANIFEST_UNKNOWN", message: "manifest unknown" };
 * ```
 */
export interface OciErrorEntry {
  /** The OCI error code, e.g. `MANIFEST_UNKNOWN`. */
  code: string;
  /** The registry's message. */
  message?: string;
}

/**
 * What every registry error carries besides its message.
 *
 * @example
 * ```ts
 * import type { RegistryErrorInfo } from "./errors.ts";
 * const info: RegistryErrorInfo = { status: 500, errors: [{ code: "UNKNOWN" }] };
 * ```
 */
export interface RegistryErrorInfo {
  /** The HTTP status of the answer, or undefined when there was no answer. */
  status?: number;
  /** The OCI error entries of the answer's body. */
  errors?: OciErrorEntry[];
  /** The underlying cause. */
  cause?: unknown;
}

/**
 * A registry answered with an error, or could not be reached. Base class of the
 * registry errors that are not "not found" (those extend {@linkcode NotFoundError}).
 *
 * @example
 * ```ts
 * import { RegistryError } from "./errors.ts";
 * const e = new RegistryError("push manifest to r.example.com/app:1: server error", {
 *   status: 500,
 * });
 * console.log(e.status, e.code); // 500 REGISTRY_ERROR
 * ```
 */
export class RegistryError extends ImagesError {
  /** The HTTP status, or undefined when there was no answer. */
  readonly status?: number;
  /** The OCI error entries of the registry's answer. */
  readonly errors: OciErrorEntry[];

  /**
   * Creates the error.
   *
   * @param message the operation, its subject and what went wrong
   * @param info status, OCI errors and cause
   * @param code what kind of error it is
   */
  constructor(message: string, info: RegistryErrorInfo = {}, code: ErrorCode = "REGISTRY_ERROR") {
    super(message, code, info.cause === undefined ? undefined : { cause: info.cause });
    this.status = info.status;
    this.errors = info.errors ?? [];
  }
}

/**
 * The registry could not be reached, the connection dropped or stalled, and retries
 * did not help.
 *
 * @example
 * ```ts
 * import { RegistryConnectionError } from "./errors.ts";
 * const e = new RegistryConnectionError("ping r.example.com: connection refused");
 * console.log(e.code); // CONNECTION_FAILED
 * ```
 */
export class RegistryConnectionError extends RegistryError {
  /**
   * Creates the error.
   *
   * @param message the operation, its subject and what went wrong
   * @param info the cause
   */
  constructor(message: string, info: RegistryErrorInfo = {}) {
    super(message, info, "CONNECTION_FAILED");
  }
}

/** Why a registry cannot be reached in a way no retry cures (the codes of {@linkcode ErrorCode} for it). */
export type UnreachableCode = Extract<
  ErrorCode,
  "TLS_MISMATCH" | "TLS_CERTIFICATE" | "CONNECTION_REFUSED" | "HOST_NOT_FOUND" | "PORT_BLOCKED"
>;

/**
 * The registry cannot be reached, and trying again would not help: TLS spoken to a port
 * that answers plain HTTP, a certificate refused, a port nobody listens on, a host name
 * that does not resolve, a port the runtime's fetch blocks (see
 * {@linkcode unreachableError}). Not retried.
 *
 * @example
 * ```ts
 * import { RegistryUnreachableError } from "./errors.ts";
 * const e = new RegistryUnreachableError("ping: 127.0.0.1:5000 refused the connection", "CONNECTION_REFUSED");
 * console.log(e.code); // CONNECTION_REFUSED
 * ```
 */
export class RegistryUnreachableError extends RegistryError {
  /**
   * Creates the error.
   *
   * @param message the operation and what went wrong
   * @param code why
   * @param cause the runtime's error
   */
  constructor(message: string, code: UnreachableCode, cause?: unknown) {
    super(message, { cause }, code);
  }
}

/**
 * The text of a failed `fetch`, its causes included (Deno's `fetch failed` keeps the
 * reason in its cause), without the URL Deno repeats (its query may hold upload state).
 *
 * @example
 * ```ts
 * import { fetchFailureText } from "./errors.ts";
 * const e = new TypeError("fetch failed", { cause: new Error("tcp connect error: Connection refused") });
 * fetchFailureText(e); // "tcp connect error: Connection refused"
 * ```
 */
export function fetchFailureText(error: unknown): string {
  const texts: string[] = [];
  for (let e = error, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    const { message, code } = e as { message?: unknown; code?: unknown };
    let text = String(message ?? e).split("\n")[0];
    text = text.replace(/error sending request for url \([^)]*\):\s*/i, "");
    if (typeof code === "string" && code !== "" && !text.includes(code)) text = `${code}: ${text}`;
    if (text !== "" && !/^fetch failed$/i.test(text)) texts.push(text);
    e = (e as { cause?: unknown }).cause;
  }
  return (texts.at(-1) ?? "connection failed").slice(0, 300);
}

/** rustls' names for certificate problems, in words. */
const CERTIFICATE_PROBLEMS: [RegExp, string][] = [
  [/UnknownIssuer|self.signed|UNABLE_TO_(GET_ISSUER|VERIFY)/i, "issued by an unknown authority"],
  [/CaUsedAsEndEntity/i, "a CA certificate used as the server's own (self-signed?)"],
  [/NotValidForName|Hostname.*mismatch|ERR_TLS_CERT_ALTNAME/i, "not valid for this host name"],
  [/Expired|CERT_HAS_EXPIRED/i, "expired"],
  [/NotValidYet|CERT_NOT_YET_VALID/i, "not valid yet"],
  [/Revoked/i, "revoked"],
];

/**
 * A failed `fetch` that no retry cures, as a {@linkcode RegistryUnreachableError}, or
 * undefined (a transient failure, to retry). `firstContact`: the host never answered
 * this process; a refusal or an unknown name is then final, while a host that answered
 * before and now refuses is taken as restarting.
 *
 * @example
 * ```ts
 * import { unreachableError } from "./errors.ts";
 * const e = Object.assign(new TypeError("ECONNREFUSED"), { code: "ECONNREFUSED" });
 * unreachableError(e, new URL("http://127.0.0.1:5999/v2/"), "ping", true)?.code; // "CONNECTION_REFUSED"
 * ```
 */
export function unreachableError(
  error: unknown,
  url: URL,
  operation: string,
  firstContact: boolean,
): RegistryUnreachableError | undefined {
  const reason = fetchFailureText(error);
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  const where = `${url.hostname}:${port}`;
  const fail = (problem: string, code: UnreachableCode) =>
    new RegistryUnreachableError(`${operation}: ${problem}`, code, error);
  if (
    url.protocol === "https:" &&
    /InvalidContentType|corrupt message|wrong.version.number|EPROTO|speak TLS/i.test(reason)
  ) {
    return fail(
      `${where} does not speak TLS (is it a plain-HTTP registry? then give its URL as ` +
        `http://${where})`,
      "TLS_MISMATCH",
    );
  }
  if (/certificate|CERT_|self.signed/i.test(reason)) {
    const words = CERTIFICATE_PROBLEMS.find(([pattern]) => pattern.test(reason))?.[1];
    return fail(
      `the TLS certificate of ${where} was refused: ${words ? `${words} (${reason})` : reason}`,
      "TLS_CERTIFICATE",
    );
  }
  // Deno's fetch refuses the ports browsers block (6000, 6665-6669, 10080, ...) before
  // connecting: no retry can cure that.
  if (/Requests to port \d+ are blocked/i.test(reason)) {
    return fail(
      `this runtime's fetch refuses port ${port} (a port browsers block); ` +
        "serve the registry on another port",
      "PORT_BLOCKED",
    );
  }
  if (!firstContact) return undefined;
  if (/ECONNREFUSED|connection refused/i.test(reason)) {
    return fail(
      `${where} refused the connection (is the registry running, and on this port?)`,
      "CONNECTION_REFUSED",
    );
  }
  if (/ENOTFOUND|dns error|name or service not known|EAI_NONAME/i.test(reason)) {
    return fail(`host ${url.hostname} not found (${reason})`, "HOST_NOT_FOUND");
  }
  return undefined;
}

/**
 * The network went silent for the stall timeout in the middle of a body. Retried once
 * without progress at most: a registry that stalls twice in a row at the same place
 * would make every retry cost another stall timeout.
 *
 * @example
 * ```ts
 * import { RegistryConnectionError, StalledError } from "./errors.ts";
 * const e = new StalledError("get blob: the download stalled for 60 s");
 * console.log(e instanceof RegistryConnectionError, e.code); // true CONNECTION_FAILED
 * ```
 */
export class StalledError extends RegistryConnectionError {}

/**
 * The registry refused the credentials, or asked for credentials that were not given (401).
 *
 * @example
 * ```ts
 * import { AuthenticationError } from "./errors.ts";
 * const e = new AuthenticationError("pull r.example.com/app: authentication failed", {
 *   status: 401,
 * });
 * console.log(e.code); // AUTHENTICATION_FAILED
 * ```
 */
export class AuthenticationError extends RegistryError {
  /**
   * Creates the error.
   *
   * @param message the operation, its subject and what went wrong
   * @param info status, OCI errors and cause
   */
  constructor(message: string, info: RegistryErrorInfo = {}) {
    super(message, info, "AUTHENTICATION_FAILED");
  }
}

/**
 * The credentials are valid but do not allow the operation (403, or a token that
 * lacks the scope asked for). The Apolo SDK's name for it.
 *
 * @example
 * ```ts
 * import { AuthorizationError } from "./errors.ts";
 * const e = new AuthorizationError("push r.example.com/app: access denied", { status: 403 });
 * console.log(e.code); // ACCESS_DENIED
 * ```
 */
export class AuthorizationError extends RegistryError {
  /**
   * Creates the error.
   *
   * @param message the operation, its subject and what went wrong
   * @param info status, OCI errors and cause
   */
  constructor(message: string, info: RegistryErrorInfo = {}) {
    super(message, info, "ACCESS_DENIED");
  }
}

/**
 * The registry asked us to slow down (429) and kept asking after the retries.
 *
 * @example
 * ```ts
 * import { TooManyRequestsError } from "./errors.ts";
 * const e = new TooManyRequestsError("pull r.example.com/app: too many requests", {
 *   status: 429,
 * }, 30);
 * console.log(e.retryAfterSeconds); // 30
 * ```
 */
export class TooManyRequestsError extends RegistryError {
  /** What the registry's `Retry-After` asked for, in seconds, if it said. */
  readonly retryAfterSeconds?: number;

  /**
   * Creates the error.
   *
   * @param message the operation, its subject and what went wrong
   * @param info status, OCI errors and cause
   * @param retryAfterSeconds the registry's `Retry-After`, in seconds
   */
  constructor(message: string, info: RegistryErrorInfo = {}, retryAfterSeconds?: number) {
    super(message, info, "TOO_MANY_REQUESTS");
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/**
 * The registry does not support the operation (e.g. deleting is disabled: 400/405).
 *
 * @example
 * ```ts
 * import { UnsupportedError } from "./errors.ts";
 * const e = new UnsupportedError("delete manifest r.example.com/app@sha256:…: unsupported", {
 *   status: 405,
 * });
 * console.log(e.code); // UNSUPPORTED
 * ```
 */
export class UnsupportedError extends RegistryError {
  /**
   * Creates the error.
   *
   * @param message the operation, its subject and what went wrong
   * @param info status, OCI errors and cause
   */
  constructor(message: string, info: RegistryErrorInfo = {}) {
    super(message, info, "UNSUPPORTED");
  }
}

/**
 * Something the registry answered 404 for: the base of the manifest, blob and repository
 * cases, carrying the status and the OCI error entries.
 *
 * @example
 * ```ts
 * import { RegistryNotFoundError } from "./errors.ts";
 * const e = new RegistryNotFoundError("get r.example.com/app: not found", { status: 404 });
 * console.log(e.status); // 404
 * ```
 */
export class RegistryNotFoundError extends NotFoundError {
  /** The HTTP status (404). */
  readonly status?: number;
  /** The OCI error entries of the registry's answer. */
  readonly errors: OciErrorEntry[];

  /**
   * Creates the error.
   *
   * @param message the operation and what was not found
   * @param info status, OCI errors and cause
   */
  constructor(message: string, info: RegistryErrorInfo = {}) {
    super(message, info.cause === undefined ? undefined : { cause: info.cause });
    this.status = info.status;
    this.errors = info.errors ?? [];
  }
}

/**
 * A manifest (a tag or a digest) that the repository does not have.
 *
 * @example
 * ```ts
 * import { ManifestNotFoundError } from "./errors.ts";
 * const e = new ManifestNotFoundError("get manifest r.example.com/app:1: not found", {
 *   status: 404,
 * });
 * console.log(e.code); // NOT_FOUND
 * ```
 */
export class ManifestNotFoundError extends RegistryNotFoundError {}

/**
 * A blob that the repository does not have.
 *
 * @example
 * ```ts
 * import { BlobNotFoundError } from "./errors.ts";
 * const e = new BlobNotFoundError("get blob sha256:… of r.example.com/app: not found", {
 *   status: 404,
 * });
 * console.log(e.status); // 404
 * ```
 */
export class BlobNotFoundError extends RegistryNotFoundError {}

/**
 * A repository that the registry does not have.
 *
 * @example
 * ```ts
 * import { RepositoryNotFoundError } from "./errors.ts";
 * const e = new RepositoryNotFoundError("list tags of r.example.com/app: not found", {
 *   status: 404,
 * });
 * console.log(e.status); // 404
 * ```
 */
export class RepositoryNotFoundError extends RegistryNotFoundError {}

/**
 * What a failed answer was about, to pick the error type and word the message.
 *
 * @example
 * ```ts
 * import type { Subject } from "./errors.ts";
 * const subject: Subject = "manifest";
 * ```
 */
export type Subject = "manifest" | "blob" | "repository" | "upload" | "registry";

const MAX_ERROR_BODY = 64 * 1024;

/**
 * Reads the OCI error entries of an error answer's body (at most 64 KiB), never failing.
 *
 * @example
 * ```ts
 * import { readOciErrors } from "./errors.ts";
 * const res = new Response(JSON.stringify({ errors: [{ code: "DENIED", message: "no" }] }));
 * console.log(await readOciErrors(res)); // [{ code: "DENIED", message: "no" }]
 * ```
 */
export async function readOciErrors(response: Response): Promise<OciErrorEntry[]> {
  if (!response.body) return [];
  try {
    // A longer body is not an error document worth reading: readAll refuses it (no entries).
    const text = new TextDecoder().decode(
      await readAll(response.body, MAX_ERROR_BODY, "error body"),
    );
    const doc = JSON.parse(text) as { errors?: unknown };
    if (!Array.isArray(doc.errors)) return [];
    const out: OciErrorEntry[] = [];
    for (const e of doc.errors.slice(0, 10)) {
      if (typeof e !== "object" || e === null) continue;
      const { code, message } = e as Record<string, unknown>;
      if (typeof code !== "string") continue;
      out.push({
        code: code.slice(0, 64),
        ...(typeof message === "string" ? { message: message.slice(0, 200) } : {}),
      });
    }
    return out;
  } catch {
    return [];
  }
}

function describe(status: number, errors: OciErrorEntry[]): string {
  const first = errors[0];
  const detail = first
    ? printable(`${first.code}${first.message ? `: ${first.message}` : ""}`, 300)
    : STATUS_TEXT[status] ?? "error";
  return `${status} ${detail}`;
}

const STATUS_TEXT: Record<number, string> = {
  400: "bad request",
  401: "unauthorized",
  403: "forbidden",
  404: "not found",
  405: "method not allowed",
  408: "request timeout",
  409: "conflict",
  413: "payload too large",
  416: "range not satisfiable",
  429: "too many requests",
  500: "internal server error",
  502: "bad gateway",
  503: "service unavailable",
  504: "gateway timeout",
};

/**
 * Parses a `Retry-After` header (seconds or an HTTP date) into milliseconds.
 *
 * @example
 * ```ts
 * import { parseRetryAfter } from "./errors.ts";
 * parseRetryAfter("2"); // 2000
 * parseRetryAfter(null); // undefined
 * ```
 */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/**
 * Turns an error answer into the typed error that fits it, reading its body.
 * `operation` names what was being done and to what, e.g.
 * `get manifest r.example.com/app:1`.
 *
 * @example
 * ```ts
 * import { errorFromResponse, ManifestNotFoundError } from "./errors.ts";
 * const res = new Response(JSON.stringify({ errors: [{ code: "MANIFEST_UNKNOWN" }] }), {
 *   status: 404,
 * });
 * const e = await errorFromResponse(res, "get manifest r.example.com/app:1", "manifest");
 * console.log(e instanceof ManifestNotFoundError); // true
 * ```
 */
export async function errorFromResponse(
  response: Response,
  operation: string,
  subject: Subject,
): Promise<ImagesError> {
  const errors = await readOciErrors(response);
  return errorFromStatus(response.status, errors, operation, subject, response.headers);
}

/**
 * Like {@linkcode errorFromResponse} for an answer whose body was already read.
 *
 * @example
 * ```ts
 * import { errorFromStatus } from "./errors.ts";
 * const e = errorFromStatus(403, [], "push r.example.com/app", "repository");
 * console.log(e.name); // AuthorizationError
 * ```
 */
export function errorFromStatus(
  status: number,
  errors: OciErrorEntry[],
  operation: string,
  subject: Subject,
  headers?: Headers,
): ImagesError {
  const info = { status, errors };
  const codes = new Set(errors.map((e) => e.code));
  const text = `${operation}: ${describe(status, errors)}`;
  if (status === 401) {
    if (insufficientScope(headers)) {
      return new AuthorizationError(`${text} (the credentials do not grant this access)`, info);
    }
    return new AuthenticationError(`${text} (authentication failed or required)`, info);
  }
  if (status === 403 || codes.has("DENIED")) return new AuthorizationError(text, info);
  if (status === 404) {
    if (codes.has("MANIFEST_UNKNOWN")) return new ManifestNotFoundError(text, info);
    if (codes.has("BLOB_UNKNOWN")) return new BlobNotFoundError(text, info);
    if (codes.has("NAME_UNKNOWN")) return new RepositoryNotFoundError(text, info);
    if (subject === "manifest") return new ManifestNotFoundError(text, info);
    if (subject === "blob") return new BlobNotFoundError(text, info);
    if (subject === "repository") return new RepositoryNotFoundError(text, info);
    return new RegistryError(text, info);
  }
  if (status === 429 || codes.has("TOOMANYREQUESTS")) {
    const after = parseRetryAfter(headers?.get("retry-after") ?? null);
    return new TooManyRequestsError(
      text,
      info,
      after === undefined ? undefined : Math.ceil(after / 1000),
    );
  }
  if (status === 405 || codes.has("UNSUPPORTED")) return new UnsupportedError(text, info);
  return new RegistryError(text, info);
}

function insufficientScope(headers?: Headers): boolean {
  const value = headers?.get("www-authenticate") ?? "";
  return /error\s*=\s*"?insufficient_scope/i.test(value);
}
