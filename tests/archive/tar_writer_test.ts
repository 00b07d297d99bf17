import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { TarIndex } from "../../lib/archive/tar_index.ts";
import { TarWriter } from "../../lib/archive/tar_writer.ts";
import { listDir, makeTempDir, removeTempDir } from "../../testing/fs.ts";
import { run } from "../../testing/tools.ts";

function pattern(size: number, seed: number): Uint8Array {
  return new Uint8Array(size).map((_, i) => (i * 31 + seed) % 256);
}

function chunks(data: Uint8Array, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size));
  return out;
}

describe("TarWriter", () => {
  let dir: string;
  before(async () => {
    dir = await makeTempDir("tar-writer");
  });
  after(async () => {
    await removeTempDir(dir);
  });

  it("fills reserved slots concurrently, in any order, and GNU tar agrees", async () => {
    const path = join(dir, "slots.tar");
    const files = new Map<string, Uint8Array>([
      ["empty", new Uint8Array(0)],
      ["b511", pattern(511, 1)],
      ["b512", pattern(512, 2)],
      ["b513", pattern(513, 3)],
      ["big", pattern(300_000, 4)],
    ]);
    const writer = await TarWriter.create(path);
    const slots = await Promise.all(
      [...files].map(([name, data]) => writer.reserve(name, data.length)),
    );
    // Interleave the writes of all slots, last slot first.
    const queues = slots.map((slot, i) => ({ slot, parts: chunks([...files.values()][i], 4000) }));
    await Promise.all(
      queues.reverse().map(async ({ slot, parts }) => {
        for (const part of parts) {
          await slot.write(part);
          await new Promise((r) => setTimeout(r, 0));
        }
        await slot.finish();
      }),
    );
    await writer.addFile("after-slots.txt", new TextEncoder().encode("tail"));
    await writer.commit();
    assert.deepEqual(await listDir(dir), ["slots.tar"]);

    const index = await TarIndex.open(path);
    try {
      for (const [name, data] of files) {
        assert.deepEqual(await index.readEntry(name, 1 << 20), data);
      }
    } finally {
      await index.close();
    }
    const out = join(dir, "extracted");
    await mkdir(out);
    await run("tar", ["-xf", path, "-C", out]);
    for (const [name, data] of files) {
      assert.deepEqual(new Uint8Array(await readFile(join(out, name))), data, name);
    }
    assert.equal(await readFile(join(out, "after-slots.txt"), "utf8"), "tail");
    await removeTempDir(out);
    await removeTempDir(path);
  });

  it("stamps entries with the writer's mtime unless an entry gives its own", async () => {
    const path = join(dir, "mtime.tar");
    const writer = await TarWriter.create(path, { mtime: 1_700_000_000 });
    await writer.addFile("a.txt", new TextEncoder().encode("a"));
    await writer.addFile("b.txt", new TextEncoder().encode("b"), { mtime: 1_600_000_000 });
    await writer.finish();
    await writer.commit();
    const listing = (await run("tar", ["--utc", "--full-time", "-tvf", path])).stdout;
    assert.match(listing, /2023-11-14 22:13:20 a\.txt/);
    assert.match(listing, /2020-09-13 12:26:40 b\.txt/);
    await removeTempDir(path);
  });

  it("writes pax headers for long names and link targets that GNU tar reads", async () => {
    const path = join(dir, "long.tar");
    const longName = `${"dir-".repeat(40)}/${"n".repeat(180)}.txt`; // over 255 bytes
    const longTarget = `../${"t".repeat(120)}`;
    const utf8 = "ünïcødé/файл.txt";
    const writer = await TarWriter.create(path);
    await writer.addFile(longName, new TextEncoder().encode("long"));
    await writer.addSymlink("links/l", longTarget);
    await writer.addFile(utf8, new TextEncoder().encode("utf8"));
    await writer.addStream("streamed.bin", new Blob([pattern(70_000, 9) as BlobPart]).stream());
    await writer.commit();

    const listing = (await run("tar", ["-tvf", path])).stdout;
    assert.ok(listing.includes(longName), listing);
    assert.ok(listing.includes(`links/l -> ${longTarget}`), listing);
    assert.ok(listing.includes(utf8), listing);
    const index = await TarIndex.open(path);
    try {
      assert.equal(new TextDecoder().decode(await index.readEntry(longName, 100)), "long");
      assert.equal(index.entry("links/l")?.linkname, longTarget);
      assert.equal(new TextDecoder().decode(await index.readEntry(utf8, 100)), "utf8");
      assert.deepEqual(await index.readEntry("streamed.bin", 1 << 20), pattern(70_000, 9));
    } finally {
      await index.close();
    }
    await removeTempDir(path);
  });

  it("refuses to finish with a slot not completely written, and abort keeps the old file", async () => {
    const path = join(dir, "keep.tar");
    await writeFile(path, "previous content");
    const writer = await TarWriter.create(path);
    const slot = await writer.reserve("partial", 10);
    await slot.write(new Uint8Array(4));
    await assert.rejects(slot.write(new Uint8Array(7)), /more than the 10 bytes reserved/);
    await assert.rejects(
      writer.commit(),
      /entries not completely written: partial \(4\/10 bytes\)/,
    );
    await writer.abort();
    assert.equal(await readFile(path, "utf8"), "previous content");
    assert.deepEqual(await listDir(dir), ["keep.tar"]);
    await removeTempDir(path);
  });

  it("lets a failed slot start over, and commit replaces the previous file", async () => {
    const path = join(dir, "retry.tar");
    await writeFile(path, "old");
    const writer = await TarWriter.create(path);
    const spooled = await writer.spool(new Blob(["discard me"]).stream());
    await spooled.discard();
    const slot = await writer.reserve("retried", 3);
    await slot.write(new Uint8Array([9, 9]));
    slot.reset(); // e.g. the download failed half-way
    await slot.write(new Uint8Array([1, 2, 3]));
    await slot.finish();
    await writer.commit();
    assert.deepEqual(await listDir(dir), ["retry.tar"]);
    const index = await TarIndex.open(path);
    try {
      assert.deepEqual([...index.names()], ["retried"]);
      assert.deepEqual(await index.readEntry("retried", 10), new Uint8Array([1, 2, 3]));
    } finally {
      await index.close();
    }
    const size = (await readFile(path)).length;
    assert.equal(size % 512, 0);
    assert.deepEqual(
      new Uint8Array(Buffer.from(await readFile(path)).subarray(size - 1024)),
      new Uint8Array(1024),
    );
    await removeTempDir(path);
  });
});
