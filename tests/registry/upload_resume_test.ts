// Where an upload goes on after a failure, given where its session stands.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { resumePoint } from "../../lib/registry/upload_resume.ts";

const location = new URL("http://127.0.0.1:5000/v2/app/blobs/uploads/x");
const open = (offset: number) => ({ state: "open" as const, offset, location });

describe("resumePoint", () => {
  it("continues in chunks from the bytes the session holds", () => {
    assert.deepEqual(resumePoint(open(0), 4096, 0), { next: "chunks", from: 0 });
    assert.deepEqual(resumePoint(open(2048), 4096, 1024), { next: "chunks", from: 2048 });
    // Fewer bytes than acknowledged: the registry lost some; they are sent again.
    assert.deepEqual(resumePoint(open(1024), 4096, 2048), { next: "chunks", from: 1024 });
  });

  it("starts a new session when the registry no longer knows this one", () => {
    assert.deepEqual(resumePoint({ state: "gone" }, 4096, 2048), {
      next: "new-session",
      reason: "the registry no longer knows the session",
    });
  });

  it("starts a new session when the session holds more than was sent", () => {
    assert.deepEqual(resumePoint(open(5000), 4096, 2048), {
      next: "new-session",
      reason: "the session holds 5000 bytes, more than were sent",
    });
    // Up to what was read or acknowledged is fine.
    assert.deepEqual(resumePoint(open(4096), 4096, 2048), { next: "chunks", from: 4096 });
    assert.deepEqual(resumePoint(open(3000), 2048, 3000), { next: "chunks", from: 3000 });
  });

  it("names the refused chunk only when the session holds exactly what came before it", () => {
    const refused = { offset: 2048, length: 1024, last: false };
    assert.deepEqual(resumePoint(open(2048), 3072, 2048, refused), {
      next: "chunks",
      from: 2048,
      refusedForSize: refused,
    });
    assert.deepEqual(resumePoint(open(1024), 3072, 2048, refused), { next: "chunks", from: 1024 });
  });
});
