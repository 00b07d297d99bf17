// Upload records: where an upload session stands, kept in the cache folder for a later resume.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { withTempDir } from "../../testing/fs.ts";
import { UploadRecords } from "../../lib/blobcache/upload_records.ts";

describe("upload records", () => {
  it("keep the newest location and offset, never user info, and match their key", async () => {
    await withTempDir(async (dir) => {
      const records = new UploadRecords(dir);
      const key = {
        host: "r.example.com",
        repository: "alice/app",
        source: "sha256:" + "a".repeat(64),
        settings: "gzip-6",
      };
      assert.equal(await records.load(key), undefined);
      await records.save(key, {
        location: "https://u:secret@r.example.com/v2/x?_state=1",
        offset: 1,
      });
      await records.save(key, {
        location: "https://u:secret@r.example.com/v2/x?_state=2",
        offset: 9,
      });
      assert.deepEqual(await records.load(key), {
        location: "https://r.example.com/v2/x?_state=2",
        offset: 9,
      });
      const text = await readFile(records.path(key), "utf8");
      assert.doesNotMatch(text, /secret/);
      // Locations may be pre-signed URLs: only their owner may read them.
      assert.equal((await stat(records.path(key))).mode & 0o777, 0o600);
      assert.equal((await stat(join(dir, "uploads"))).mode & 0o777, 0o700);
      assert.equal(await records.load({ ...key, settings: "zstd-3" }), undefined);
      await records.remove(key);
      assert.equal(await records.load(key), undefined);
      assert.deepEqual(await readdir(join(dir, "uploads")), [], "no temporary file left");
    });
  });
});
