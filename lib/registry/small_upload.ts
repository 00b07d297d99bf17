/**
 * Small blobs in as few round trips as the registry allows: one `POST
 * …/blobs/uploads/?digest=<digest>` carrying the whole body (the OCI distribution
 * spec's single-request upload) where the registry takes it (201), else the session it
 * opened instead (202, as CNCF distribution answers, ignoring the body) takes the body in
 * one `PUT ?digest=`: two round trips instead of the three of `POST`, `PATCH`, `PUT`.
 *
 * What a registry answers is learnt once per client: while the first small upload asks,
 * the others wait for its answer rather than send their bodies to be ignored, and only
 * a blob of at most 16 KiB asks (an image's config usually does).
 *
 * @module
 */

import { errorFromResponse } from "./errors.ts";
import type { HttpResponse } from "./transport.ts";
import type { RegistryRequest } from "./registry_http.ts";
import { classifyUploadAnswer } from "./upload_outcome.ts";
import { sessionOf, type UploadSession } from "./upload_session.ts";

/**
 * Blobs of at most this many bytes go up in one request (or two): 1 MiB, less than a
 * round trip's worth of bytes on a fast link, so the round trips saved matter more.
 *
 * @example
 * ```ts
 * import { SMALL_BLOB_BYTES } from "./small_upload.ts";
 * const size = 4096;
 * if (size <= SMALL_BLOB_BYTES) console.log("one request");
 * ```
 */
export const SMALL_BLOB_BYTES: number = 1024 * 1024;

/**
 * How long the answer to a small blob sent whole may take beyond the transport's one
 * stall period per MiB of body: nothing more, so it is answered within the stall timeout,
 * as a chunk is (the registry has at most 1 MiB to hash); an empty body gets the usual
 * wait for an answer.
 *
 * @example
 * ```ts
 * import { smallBodyWait } from "./small_upload.ts";
 * smallBodyWait(new Uint8Array(512)); // 0: answered within the stall timeout, as a chunk is
 * smallBodyWait(new Uint8Array(0)); // undefined: the transport's usual wait
 * ```
 */
export function smallBodyWait(body: Uint8Array): number | undefined {
  return body.byteLength > 0 ? 0 : undefined;
}

/**
 * Only a blob of at most this many bytes asks a registry whether it takes a single-request
 * upload: the bytes are lost where it does not (larger ones go the usual way meanwhile).
 */
const ASKING_BLOB_BYTES = 16 * 1024;

/**
 * What a registry was seen to do with a single-request upload: `true` (stores it),
 * `false` (opens a session, or refuses), or a question being asked.
 *
 * @example
 * ```ts
 * import type { SinglePostSupport } from "./small_upload.ts";
 * const learnt: SinglePostSupport = { verdict: true };
 * ```
 */
export interface SinglePostSupport {
  /** The answer, once known. */
  verdict?: boolean;
  /** Settles when the upload asking has its answer. */
  asking?: Promise<void>;
}

/**
 * The outcome of {@linkcode postWholeBlob}: stored, or not (with the session the registry
 * opened instead, if it did).
 *
 * @example
 * ```ts
 * import type { WholePost } from "./small_upload.ts";
 * const stored: WholePost = { stored: true };
 * const refused: WholePost = { stored: false }; // a registry may open a session instead
 * ```
 */
export type WholePost = { stored: true } | { stored: false; session?: UploadSession };

/**
 * Sends a whole small blob in the `POST` that opens an upload, unless the registry is
 * known not to take it (then nothing is sent: the caller opens a session as usual).
 * `send` sends it (the caller decides what a cancel does to a request carrying bytes).
 * Throws only for what no other way of uploading would cure (credentials refused).
 *
 * @example
 * ```ts ignore
 * const outcome = await postWholeBlob((r) => http.send(r), support, "app", bytes, digest, "upload");
 * if (!outcome.stored && outcome.session) {
 *   // PUT the bytes into outcome.session with ?digest=
 * }
 * ```
 */
export async function postWholeBlob(
  send: (request: Omit<RegistryRequest, "signal">) => Promise<HttpResponse>,
  support: SinglePostSupport,
  repo: string,
  body: Uint8Array,
  digest: string,
  operation: string,
): Promise<WholePost> {
  while (support.verdict === undefined && support.asking) await support.asking;
  if (support.verdict === undefined && body.byteLength > ASKING_BLOB_BYTES) {
    return { stored: false };
  }
  let answered!: () => void;
  const asking = support.verdict === undefined;
  if (asking) support.asking = new Promise<void>((resolve) => answered = resolve);
  try {
    if (support.verdict === false) return { stored: false };
    const res = await send({
      method: "POST",
      url: `v2/${repo}/blobs/uploads/?digest=${encodeURIComponent(digest)}`,
      headers: { "content-type": "application/octet-stream" },
      body,
      scopes: [`repository:${repo}:pull,push`],
      operation,
      retry: true,
      headersTimeoutMs: smallBodyWait(body),
    });
    const outcome = classifyUploadAnswer({ kind: "post-whole" }, res.status, []);
    if (outcome.outcome === "fail") {
      throw await errorFromResponse(res.toResponse(), operation, "upload");
    }
    await res.discard();
    if (outcome.outcome === "done") {
      support.verdict = true;
      return { stored: true };
    }
    if (outcome.outcome === "fall-back" && outcome.learn) support.verdict = false;
    // 202: the registry opened a session instead, which takes the body next.
    return res.status === 202
      ? { stored: false, session: sessionOf(res, operation) }
      : { stored: false };
  } finally {
    if (asking) {
      support.asking = undefined;
      answered();
    }
  }
}
