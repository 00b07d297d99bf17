/**
 * What a registry's answer to one request of a blob upload means: one pure table from
 * the request, the status and the OCI error codes to an {@linkcode UploadOutcome}, used
 * by every upload mode, the session requests and the single-request upload, so a status
 * means the same wherever it comes back.
 *
 * @module
 */

import { RETRYABLE_STATUSES } from "./retry.ts";

/**
 * The request an answer is to.
 *
 * - `open`: `POST …/blobs/uploads/` opening a session.
 * - `post-whole`: `POST …/blobs/uploads/?digest=` carrying a whole small blob.
 * - `patch`: `PATCH <location>` with bytes (streamed, or a chunk); `atStart` when they
 *   are the session's first bytes, `mayBreakSizeRule` when the chunk may break a size
 *   rule of the registry not known yet (see `sizeRuleMayApply`).
 * - `put-whole`: `PUT <location>?digest=` carrying the whole blob (monolithic).
 * - `commit`: `PUT <location>?digest=` closing a session that holds every byte.
 * - `status`: `GET <location>`, where the session stands.
 * - `cancel`: `DELETE <location>`.
 *
 * @example
 * ```ts ignore
 * const request: UploadRequest = { kind: "patch", atStart: true, mayBreakSizeRule: false };
 * ```
 */
export type UploadRequest =
  | { kind: "open" }
  | { kind: "post-whole" }
  | { kind: "patch"; atStart: boolean; mayBreakSizeRule: boolean }
  | { kind: "put-whole" }
  | { kind: "commit" }
  | { kind: "status" }
  | { kind: "cancel" };

/**
 * What to do after an answer.
 *
 * - `done`: the request did what it was for (the caller still checks what the answer
 *   says, e.g. `Range`).
 * - `fall-back`: the registry refuses this way of uploading: take the next one; `learn`
 *   when the refusal says something lasting about the registry (a server error does not).
 * - `session-gone`: the registry no longer knows the session: start a new one (after a
 *   commit, first see whether the blob got stored).
 * - `restart`: this session cannot take the blob (a commit: the registry computed another
 *   digest): start a new one.
 * - `resume`: count a failure, ask the session where it stands and continue from there;
 *   `sizeRule` when the chunk may have been refused for its size (learnt when the session
 *   holds exactly what came before it); `retryAfter` when the registry's `Retry-After`
 *   sets the wait.
 * - `retry`: count a failure, wait (honouring `Retry-After`), send the same request again.
 * - `fail`: no other request cures it: the answer's error is final.
 *
 * @example
 * ```ts ignore
 * const outcome = classifyUploadAnswer({ kind: "commit" }, 503, []);
 * if (outcome.outcome === "retry") console.log("again");
 * ```
 */
export type UploadOutcome =
  | { outcome: "done" }
  | { outcome: "fall-back"; learn: boolean }
  | { outcome: "session-gone" }
  | { outcome: "restart" }
  | { outcome: "resume"; sizeRule: boolean; retryAfter: boolean }
  | { outcome: "retry" }
  | { outcome: "fail" };

/** Statuses with which a registry refuses a way of uploading (not these bytes). */
const REFUSING_MODE = new Set([400, 405, 415, 501]);
/** Statuses with which a registry may refuse a chunk for its size (GHCR, ECR). */
const REFUSING_SIZE = new Set([400, 413, 416]);

const DONE: UploadOutcome = { outcome: "done" };
const FAIL: UploadOutcome = { outcome: "fail" };

/**
 * What an answer to an upload's request means (see {@linkcode UploadOutcome}), from the
 * request, its status and the OCI error codes of its body (none for a success).
 *
 * @example
 * ```ts
 * import { classifyUploadAnswer } from "./upload_outcome.ts";
 * classifyUploadAnswer({ kind: "commit" }, 404, ["BLOB_UPLOAD_UNKNOWN"]); // { outcome: "session-gone" }
 * classifyUploadAnswer({ kind: "put-whole" }, 405, []); // { outcome: "fall-back", learn: true }
 * ```
 */
export function classifyUploadAnswer(
  request: UploadRequest,
  status: number,
  codes: readonly string[],
): UploadOutcome {
  const has = (code: string) => codes.includes(code);
  const ok = status >= 200 && status < 300;
  switch (request.kind) {
    case "open":
      return status === 200 || status === 201 || status === 202 ? DONE : FAIL;
    case "post-whole":
      if (status === 201) return DONE;
      // 202: the registry opened a session instead (ignoring the body): it goes on there.
      if (status === 202) return { outcome: "fall-back", learn: true };
      if (status === 401 || status === 403) return FAIL; // no other way cures credentials
      return { outcome: "fall-back", learn: status < 500 };
    case "status":
      if (ok) return DONE;
      // ECR answers 404 for a session it cannot report on; 400/405: no status requests.
      return status === 404 || status === 400 || status === 405
        ? { outcome: "session-gone" }
        : FAIL;
    case "cancel":
      if (ok) return DONE;
      // Any other refusal (distribution's 404 BLOB_UPLOAD_INVALID for a stale state)
      // leaves the session open with its bytes.
      return has("BLOB_UPLOAD_UNKNOWN") ? { outcome: "session-gone" } : FAIL;
    case "patch": {
      if (ok) return DONE;
      if (status === 404 || has("BLOB_UPLOAD_UNKNOWN")) return { outcome: "session-gone" };
      const sizeRule = REFUSING_SIZE.has(status) && request.mayBreakSizeRule;
      const aboutTheBytes = has("DIGEST_INVALID") || has("SIZE_INVALID") || has("NAME_INVALID");
      if (
        !sizeRule && request.atStart && (REFUSING_MODE.has(status) || has("UNSUPPORTED")) &&
        !aboutTheBytes
      ) {
        return { outcome: "fall-back", learn: true };
      }
      if (sizeRule || status === 416) return { outcome: "resume", sizeRule, retryAfter: false };
      // 401 on a streamed body: the token expired mid-transfer; it was dropped, and the
      // status request that follows gets a fresh one.
      if (status === 401 || RETRYABLE_STATUSES.has(status)) {
        return { outcome: "resume", sizeRule: false, retryAfter: true };
      }
      return FAIL;
    }
    case "put-whole":
      if (ok) return DONE;
      if (REFUSING_MODE.has(status) && !has("DIGEST_INVALID")) {
        return { outcome: "fall-back", learn: true };
      }
      if (status === 404 || RETRYABLE_STATUSES.has(status) || has("DIGEST_INVALID")) {
        return { outcome: "restart" };
      }
      return FAIL;
    case "commit":
      if (ok) return DONE;
      if (has("DIGEST_INVALID")) return { outcome: "restart" };
      if (status === 404 || has("BLOB_UPLOAD_UNKNOWN")) return { outcome: "session-gone" };
      if (status === 416 || has("SIZE_INVALID") || has("BLOB_UPLOAD_INVALID")) {
        return { outcome: "resume", sizeRule: false, retryAfter: false };
      }
      return RETRYABLE_STATUSES.has(status) ? { outcome: "retry" } : FAIL;
  }
}
