/**
 * Blob upload sessions: opening one (`POST …/blobs/uploads/`), asking where it stands
 * (`GET <location>` → `Range`), cancelling it (`DELETE <location>`), and reading the
 * `Location`, `Range` and `OCI-Chunk-Min-Length` headers of the answers.
 *
 * @module
 */

import { AbortedError, ImagesError } from "../errors.ts";
import { resolveLocation } from "./endpoint.ts";
import { errorFromResponse, readOciErrors, RegistryConnectionError } from "./errors.ts";
import type { HttpResponse } from "./transport.ts";
import type { RegistryHttp } from "./registry_http.ts";
import { classifyUploadAnswer } from "./upload_outcome.ts";

/**
 * An open upload session.
 *
 * @example
 * ```ts ignore
 * const session: UploadSession = await openSession(http, "app", "upload to app");
 * console.log(session.location.href);
 * ```
 */
export interface UploadSession {
  /** The newest `Location` the registry gave, absolute. */
  location: URL;
  /** The smallest chunk the registry accepts (`OCI-Chunk-Min-Length`), if it said. */
  minChunk?: number;
}

/**
 * The session's `Location` from an answer, resolved against the URL that answered.
 *
 * @example
 * ```ts ignore
 * import { locationOf } from "./upload_session.ts";
 * const next = locationOf(res, "upload to r.example.com/app");
 * ```
 */
export function locationOf(res: HttpResponse, operation: string): URL {
  const value = res.headers.get("location");
  if (!value) {
    throw new ImagesError(
      `${operation}: the registry answered ${res.status} without a Location`,
      "REGISTRY_PROTOCOL",
    );
  }
  return resolveLocation(value, res.url, operation);
}

/**
 * The end offset (exclusive) a `Range: 0-<last>` header reports, or undefined.
 * `0-0` is read as 0 bytes (CNCF distribution's answer for an empty session).
 *
 * @example
 * ```ts
 * import { rangeEnd } from "./upload_session.ts";
 * rangeEnd("0-1023"); // 1024
 * rangeEnd("bytes=0-0"); // 0
 * ```
 */
export function rangeEnd(value: string | null): number | undefined {
  const m = /^\s*(?:bytes=)?(\d+)-(\d+)\s*$/.exec(value ?? "");
  if (!m) return undefined;
  const last = Number(m[2]);
  if (!Number.isSafeInteger(last)) return undefined;
  return last === 0 ? 0 : last + 1;
}

function minChunkOf(res: HttpResponse): number | undefined {
  const n = Number(res.headers.get("oci-chunk-min-length") ?? NaN);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/**
 * The session an answer (202 to a POST, or to a mount) opened.
 *
 * @example
 * ```ts ignore
 * import { sessionOf } from "./upload_session.ts";
 * const session = sessionOf(res, "upload to r.example.com/app");
 * ```
 */
export function sessionOf(res: HttpResponse, operation: string): UploadSession {
  const minChunk = minChunkOf(res);
  return { location: locationOf(res, operation), ...(minChunk ? { minChunk } : {}) };
}

/** How long an aborted upload still waits for the answer opening its session, ms. */
const OPEN_GRACE_MS = 2_000;

/**
 * Opens an upload session in `repo`. An abort does not cut the `POST` at once: the
 * registry may already have opened the session, and nobody could cancel it without
 * its `Location`. The answer is awaited a little longer ({@linkcode OPEN_GRACE_MS}),
 * the session it opened is cancelled, and then the abort is thrown.
 *
 * @example
 * ```ts ignore
 * import { openSession } from "./upload_session.ts";
 * const session = await openSession(http, "app", "upload blob to r.example.com/app");
 * ```
 */
export async function openSession(
  http: RegistryHttp,
  repo: string,
  operation: string,
  signal?: AbortSignal,
): Promise<UploadSession> {
  if (signal?.aborted) throw new AbortedError(operation);
  const grace = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const onAbort = () => timer = setTimeout(() => grace.abort(), OPEN_GRACE_MS);
  signal?.addEventListener("abort", onAbort, { once: true });
  let res: HttpResponse;
  try {
    res = await http.send({
      method: "POST",
      url: `v2/${repo}/blobs/uploads/`,
      body: new Uint8Array(0),
      scopes: [`repository:${repo}:pull,push`],
      operation,
      retry: true,
      signal: grace.signal,
    });
  } finally {
    signal?.removeEventListener("abort", onAbort);
    clearTimeout(timer);
  }
  if (classifyUploadAnswer({ kind: "open" }, res.status, []).outcome !== "done") {
    if (signal?.aborted) {
      await res.discard();
      throw new AbortedError(operation);
    }
    throw await errorFromResponse(res.toResponse(), operation, "repository");
  }
  await res.discard();
  const session = sessionOf(res, operation);
  if (signal?.aborted) {
    if (session.location.pathname.includes("/blobs/uploads/")) {
      await cancelSession(http, repo, session.location, operation);
    }
    throw new AbortedError(operation);
  }
  return session;
}

/**
 * Where a session stands: how many bytes it holds, and its newest location.
 *
 * @example
 * ```ts ignore
 * const status: SessionStatus = await sessionStatus(http, "app", session.location, "upload");
 * if (status.state === "open") console.log(status.offset);
 * ```
 */
export type SessionStatus =
  | { state: "open"; offset: number; location: URL }
  | { state: "gone" };

/**
 * Asks a session how many bytes it holds (`GET <location>` → 204 + `Range`).
 * `gone` when the registry no longer knows it (or cannot say: ECR answers 404).
 *
 * @example
 * ```ts ignore
 * import { sessionStatus } from "./upload_session.ts";
 * const status = await sessionStatus(http, "app", session.location, "upload");
 * ```
 */
export async function sessionStatus(
  http: RegistryHttp,
  repo: string,
  location: URL,
  operation: string,
  signal?: AbortSignal,
): Promise<SessionStatus> {
  const res = await http.send({
    method: "GET",
    url: location,
    scopes: [`repository:${repo}:pull,push`],
    operation: `${operation} (status)`,
    retry: true,
    signal,
  });
  await res.discard();
  const outcome = classifyUploadAnswer({ kind: "status" }, res.status, []).outcome;
  if (outcome === "session-gone") return { state: "gone" };
  if (outcome !== "done") {
    throw await errorFromResponse(res.toResponse(), `${operation} (status)`, "upload");
  }
  const end = rangeEnd(res.headers.get("range"));
  const loc = res.headers.get("location");
  return {
    state: "open",
    offset: end ?? 0,
    location: loc ? resolveLocation(loc, res.url, operation) : location,
  };
}

/** Upload sessions this process cancelled, and those it could not (see {@linkcode uploadCancellations}). */
const cancellations = { cancelled: 0, refused: 0 };

/**
 * How many upload sessions this process has cancelled at registries so far, and how
 * many it could not (left for the registry to purge), e.g. for a command line to say
 * what an interrupted push left.
 *
 * @example
 * ```ts
 * import { uploadCancellations } from "./upload_session.ts";
 * const { cancelled, refused } = uploadCancellations();
 * ```
 */
export function uploadCancellations(): { cancelled: number; refused: number } {
  return { ...cancellations };
}

/** Attempts at cancelling a session, and the pauses between them (ms). */
const CANCEL_PAUSES = [100, 400];
/**
 * The longest a cancel may take in all, ms: it runs after Ctrl-C, and a registry that
 * never answers must not hold the user for long.
 */
const CANCEL_BUDGET_MS = 2_000;

/**
 * Cancels a session (`DELETE <location>`), best effort: never throws, waits at most
 * {@linkcode CANCEL_BUDGET_MS} in all. A connection lost on the way is tried again twice
 * (the `DELETE` is idempotent), so one dropped connection does not leave the session
 * open at the registry.
 *
 * @example
 * ```ts ignore
 * import { cancelSession } from "./upload_session.ts";
 * await cancelSession(http, "app", session.location, "upload");
 * ```
 */
export async function cancelSession(
  http: RegistryHttp,
  repo: string,
  location: URL,
  operation: string,
): Promise<void> {
  const deadline = Date.now() + CANCEL_BUDGET_MS;
  for (let attempt = 0;; attempt++) {
    try {
      const res = await http.send({
        method: "DELETE",
        url: location,
        scopes: [`repository:${repo}:pull,push`],
        operation: `${operation} (cancel)`,
        retry: false,
        headersTimeoutMs: Math.max(100, deadline - Date.now()),
        signal: AbortSignal.timeout(Math.max(100, deadline - Date.now())),
      });
      // Cancelled, or gone already; any other refusal leaves it open with its bytes.
      const codes = res.ok ? [] : (await readOciErrors(res.toResponse())).map((e) => e.code);
      if (res.ok) await res.discard();
      const gone = classifyUploadAnswer({ kind: "cancel" }, res.status, codes).outcome !== "fail";
      cancellations[gone ? "cancelled" : "refused"]++;
      http.transport.log(
        `${operation}: upload session ${gone ? "cancelled" : "not cancelled"} (${res.status}${
          codes.length ? " " + codes.join(", ") : ""
        })`,
      );
      return;
    } catch (e) {
      const again = e instanceof RegistryConnectionError && attempt < CANCEL_PAUSES.length &&
        Date.now() + CANCEL_PAUSES[attempt] < deadline;
      http.transport.log(
        `${operation}: cancelling the upload session failed${again ? " (trying again)" : ""}: ${
          (e as Error).message
        }`,
      );
      if (!again) {
        cancellations.refused++;
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, CANCEL_PAUSES[attempt]));
    }
  }
}
