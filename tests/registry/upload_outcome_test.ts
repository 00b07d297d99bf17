// The one table of what an answer to an upload's request means: every status and OCI
// error code it knows, for every request it classifies.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  classifyUploadAnswer,
  type UploadOutcome,
  type UploadRequest,
} from "../../lib/registry/upload_outcome.ts";

const open: UploadRequest = { kind: "open" };
const postWhole: UploadRequest = { kind: "post-whole" };
const first: UploadRequest = { kind: "patch", atStart: true, mayBreakSizeRule: false };
const later: UploadRequest = { kind: "patch", atStart: false, mayBreakSizeRule: false };
const sized: UploadRequest = { kind: "patch", atStart: true, mayBreakSizeRule: true };
const putWhole: UploadRequest = { kind: "put-whole" };
const commit: UploadRequest = { kind: "commit" };
const status: UploadRequest = { kind: "status" };
const cancel: UploadRequest = { kind: "cancel" };

const done: UploadOutcome = { outcome: "done" };
const fail: UploadOutcome = { outcome: "fail" };
const gone: UploadOutcome = { outcome: "session-gone" };
const restart: UploadOutcome = { outcome: "restart" };
const fallBack: UploadOutcome = { outcome: "fall-back", learn: true };
const fallBackNoLesson: UploadOutcome = { outcome: "fall-back", learn: false };
const resumeNow: UploadOutcome = { outcome: "resume", sizeRule: false, retryAfter: false };
const resumeLater: UploadOutcome = { outcome: "resume", sizeRule: false, retryAfter: true };
const resumeSized: UploadOutcome = { outcome: "resume", sizeRule: true, retryAfter: false };
const retry: UploadOutcome = { outcome: "retry" };

type Row = [UploadRequest, number, string[], UploadOutcome];

const ROWS: Row[] = [
  // POST opening a session: only 200/201/202 open one.
  [open, 200, [], done],
  [open, 201, [], done],
  [open, 202, [], done],
  [open, 204, [], fail],
  [open, 401, ["UNAUTHORIZED"], fail],
  [open, 404, ["NAME_UNKNOWN"], fail],
  [open, 500, [], fail],
  // POST with the whole small blob.
  [postWhole, 201, [], done],
  [postWhole, 202, [], fallBack],
  [postWhole, 200, [], fallBack],
  [postWhole, 400, ["DIGEST_INVALID"], fallBack],
  [postWhole, 401, ["UNAUTHORIZED"], fail],
  [postWhole, 403, ["DENIED"], fail],
  [postWhole, 404, [], fallBack],
  [postWhole, 405, ["UNSUPPORTED"], fallBack],
  [postWhole, 499, [], fallBack],
  [postWhole, 500, [], fallBackNoLesson],
  [postWhole, 503, [], fallBackNoLesson],
  // PATCH: success (the caller checks Range).
  [first, 202, [], done],
  [later, 204, [], done],
  // PATCH: the session is gone.
  [first, 404, [], gone],
  [later, 404, ["BLOB_UPLOAD_UNKNOWN"], gone],
  [later, 400, ["BLOB_UPLOAD_UNKNOWN"], gone],
  [sized, 416, ["BLOB_UPLOAD_UNKNOWN"], gone],
  // PATCH: the mode is refused, only on the first bytes and not about the bytes.
  [first, 400, [], fallBack],
  [first, 405, [], fallBack],
  [first, 415, [], fallBack],
  [first, 501, [], fallBack],
  [first, 403, ["UNSUPPORTED"], fallBack],
  [first, 400, ["DIGEST_INVALID"], fail],
  [first, 400, ["SIZE_INVALID"], fail],
  [first, 400, ["NAME_INVALID"], fail],
  [first, 405, ["NAME_INVALID"], fail],
  [later, 400, [], fail],
  [later, 405, [], fail],
  [later, 501, ["UNSUPPORTED"], fail],
  // PATCH: a size rule may explain it (GHCR, ECR), before any refusal of the mode.
  [sized, 400, [], resumeSized],
  [sized, 413, [], resumeSized],
  [sized, 416, [], resumeSized],
  [sized, 400, ["DIGEST_INVALID"], resumeSized],
  [sized, 405, [], fallBack],
  [first, 413, [], fail],
  // PATCH: out of step, or worth another try after the session's status.
  [first, 416, [], resumeNow],
  [later, 416, ["BLOB_UPLOAD_INVALID"], resumeNow],
  [first, 401, ["UNAUTHORIZED"], resumeLater],
  [later, 408, [], resumeLater],
  [later, 429, ["TOOMANYREQUESTS"], resumeLater],
  [later, 500, [], resumeLater],
  [later, 502, [], resumeLater],
  [later, 503, [], resumeLater],
  [later, 504, [], resumeLater],
  [later, 403, ["DENIED"], fail],
  [later, 409, [], fail],
  // PUT with the whole blob.
  [putWhole, 201, [], done],
  [putWhole, 400, [], fallBack],
  [putWhole, 405, ["UNSUPPORTED"], fallBack],
  [putWhole, 415, [], fallBack],
  [putWhole, 501, [], fallBack],
  [putWhole, 400, ["DIGEST_INVALID"], restart],
  [putWhole, 404, ["BLOB_UPLOAD_UNKNOWN"], restart],
  [putWhole, 408, [], restart],
  [putWhole, 429, [], restart],
  [putWhole, 500, [], restart],
  [putWhole, 503, [], restart],
  [putWhole, 401, ["UNAUTHORIZED"], fail],
  [putWhole, 403, ["DENIED"], fail],
  [putWhole, 413, [], fail],
  // PUT closing a session.
  [commit, 201, [], done],
  [commit, 204, [], done],
  [commit, 400, ["DIGEST_INVALID"], restart],
  [commit, 404, ["DIGEST_INVALID"], restart],
  [commit, 404, [], gone],
  [commit, 400, ["BLOB_UPLOAD_UNKNOWN"], gone],
  [commit, 416, [], resumeNow],
  [commit, 400, ["SIZE_INVALID"], resumeNow],
  [commit, 400, ["BLOB_UPLOAD_INVALID"], resumeNow],
  [commit, 408, [], retry],
  [commit, 429, [], retry],
  [commit, 500, [], retry],
  [commit, 502, [], retry],
  [commit, 503, [], retry],
  [commit, 504, [], retry],
  [commit, 400, [], fail],
  [commit, 401, ["UNAUTHORIZED"], fail],
  [commit, 405, ["UNSUPPORTED"], fail],
  // GET of the session's status.
  [status, 204, [], done],
  [status, 200, [], done],
  [status, 404, ["BLOB_UPLOAD_UNKNOWN"], gone],
  [status, 400, [], gone],
  [status, 405, [], gone],
  [status, 401, ["UNAUTHORIZED"], fail],
  [status, 500, [], fail],
  // DELETE of the session.
  [cancel, 204, [], done],
  [cancel, 202, [], done],
  [cancel, 404, ["BLOB_UPLOAD_UNKNOWN"], gone],
  [cancel, 404, ["BLOB_UPLOAD_INVALID"], fail],
  [cancel, 405, [], fail],
  [cancel, 500, [], fail],
];

function name([request, status, codes]: Row): string {
  const what = request.kind === "patch"
    ? `patch${request.atStart ? " at start" : ""}${request.mayBreakSizeRule ? " sized" : ""}`
    : request.kind;
  return `${what} ${status}${codes.length ? " " + codes.join(",") : ""}`;
}

describe("what an answer to an upload's request means", () => {
  for (const row of ROWS) {
    it(name(row), () => {
      const [request, status, codes, expected] = row;
      assert.deepEqual(classifyUploadAnswer(request, status, codes), expected);
    });
  }

  it("answers every status for every request, and every 2xx of an upload's write is done", () => {
    const requests = [open, postWhole, first, later, sized, putWhole, commit, status, cancel];
    const outcomes = new Set<string>();
    for (const request of requests) {
      for (let code = 100; code < 600; code++) {
        const outcome = classifyUploadAnswer(request, code, []);
        outcomes.add(outcome.outcome);
        if (code >= 200 && code < 300 && request.kind !== "open" && request.kind !== "post-whole") {
          assert.equal(outcome.outcome, "done", `${request.kind} ${code}`);
        }
      }
    }
    // Every outcome is reachable from a status alone.
    assert.deepEqual([...outcomes].sort(), [
      "done",
      "fail",
      "fall-back",
      "restart",
      "resume",
      "retry",
      "session-gone",
    ]);
  });

  it("an unknown code changes nothing a known status decides", () => {
    for (const [request, status, codes, expected] of ROWS) {
      const outcome = classifyUploadAnswer(request, status, [...codes, "SOMETHING_NEW"]);
      assert.deepEqual(outcome, expected, name([request, status, codes, expected]));
    }
  });
});
