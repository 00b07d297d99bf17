import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { gzipSync } from "node:zlib";
import { ArchiveError } from "../../lib/errors.ts";
import {
  BLOCK_SIZE,
  encodePaxRecords,
  encodeTarHeader,
  paddedSize,
  type TarHeaderFields,
} from "../../lib/archive/tar_header.ts";
import { TarIndex } from "../../lib/archive/tar_index.ts";
import { makeTempDir, removeTempDir } from "../../testing/fs.ts";
import { run } from "../../testing/tools.ts";
import { fileURLToPath } from "node:url";

const enc = new TextEncoder();

/** A header and its data, padded, as raw bytes. */
function entry(fields: TarHeaderFields, data: string | Uint8Array = ""): Uint8Array {
  const bytes = typeof data === "string" ? enc.encode(data) : data;
  const out = new Uint8Array(BLOCK_SIZE + paddedSize(bytes.length));
  out.set(encodeTarHeader({ ...fields, size: fields.size ?? bytes.length }));
  out.set(bytes, BLOCK_SIZE);
  return out;
}

function archive(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat([...parts, new Uint8Array(2 * BLOCK_SIZE)]));
}

async function text(index: TarIndex, name: string): Promise<string> {
  return new TextDecoder().decode(await index.readEntry(name, 1 << 20));
}

describe("TarIndex", () => {
  let dir: string;
  before(async () => {
    dir = await makeTempDir("tar-index");
  });
  after(async () => {
    await removeTempDir(dir);
  });

  let counter = 0;
  async function indexOf(bytes: Uint8Array): Promise<TarIndex> {
    const path = join(dir, `a${counter++}.tar`);
    await writeFile(path, bytes);
    return await TarIndex.open(path);
  }

  async function failure(bytes: Uint8Array): Promise<ArchiveError> {
    const path = join(dir, `bad${counter++}.tar`);
    await writeFile(path, bytes);
    try {
      const index = await TarIndex.open(path);
      await index.close();
    } catch (e) {
      assert.ok(e instanceof ArchiveError, `expected ArchiveError, got ${e}`);
      assert.equal(e.file, path);
      return e;
    }
    assert.fail("expected an error");
  }

  it("indexes ustar entries (prefix field), normalises names and reads data back", async () => {
    const long = `${"p".repeat(120)}/layer.tar`;
    const index = await indexOf(archive(
      entry({ name: "./manifest.json" }, "[1]"),
      entry({ name: "dir/", typeflag: "5" }),
      entry({ name: "dir//./x.txt" }, "xx"),
      entry({ name: long }, "layer"),
    ));
    try {
      assert.deepEqual([...index.names()], ["manifest.json", "dir", "dir/x.txt", long]);
      assert.equal(await text(index, "manifest.json"), "[1]");
      assert.equal(await text(index, "./dir/x.txt"), "xx");
      assert.equal(await text(index, long), "layer");
      assert.equal(index.entry("dir")?.type, "directory");
      assert.equal(index.resolve("missing"), undefined);
    } finally {
      await index.close();
    }
  });

  it("applies pax path, linkpath and size records, and tolerates global headers", async () => {
    const longPath = `${"a".repeat(200)}/${"b".repeat(150)}.tar`;
    const longTarget = `${"t".repeat(130)}.txt`;
    const paxFor = (records: Record<string, string>, type = "x") => {
      const data = encodePaxRecords(records);
      return entry({ name: "PaxHeaders/x", typeflag: type }, data);
    };
    const index = await indexOf(archive(
      paxFor({ comment: "global", mtime: "1.5" }, "g"),
      entry({ name: longTarget.slice(0, 99) }, "not this one"),
      paxFor({ path: longTarget }),
      entry({ name: "short-name-ignored" }, "target data"),
      paxFor({ path: longPath, linkpath: longTarget }),
      entry({ name: "link", typeflag: "2", linkname: "ignored" }),
      // pax size overrides the header's size field (here 0)
      paxFor({ size: "5" }),
      entry({ name: "sized", size: 0 }, ""),
      enc.encode("12345".padEnd(BLOCK_SIZE, "\0")),
      entry({ name: "after" }, "ok"),
    ));
    try {
      assert.equal(index.entry("short-name-ignored"), undefined);
      assert.equal(await text(index, longTarget), "target data");
      // the symlink sits in a directory, its target is relative to that directory
      assert.equal(index.entry(longPath)?.linkname, longTarget);
      assert.equal(index.entry("sized")?.size, 5);
      assert.equal(await text(index, "sized"), "12345");
      assert.equal(await text(index, "after"), "ok");
    } finally {
      await index.close();
    }
  });

  it("reads GNU long names and long link names", async () => {
    const longName = `gnu/${"n".repeat(300)}`;
    const longLink = `${"l".repeat(150)}`;
    const bytes = archive(
      entry({ name: "././@LongLink", typeflag: "L", format: "gnu" }, longLink + "\0"),
      entry({ name: "truncated", format: "gnu" }, "target"),
      entry({ name: "././@LongLink", typeflag: "L", format: "gnu" }, longName + "\0"),
      entry({ name: "ignored", typeflag: "K", format: "gnu" }, longLink + "\0"),
      entry({ name: "ignored-too", typeflag: "1", linkname: "x", format: "gnu" }),
    );
    const gnu = await indexOf(bytes);
    try {
      assert.equal(await text(gnu, longLink), "target");
      assert.equal(gnu.entry(longName)?.type, "hardlink");
      assert.equal(gnu.entry(longName)?.linkname, longLink);
      assert.equal(await text(gnu, longName), "target");
    } finally {
      await gnu.close();
    }
  });

  it("reads base-256 sizes and pax sizes over 8 GiB without touching the data", async () => {
    const size = 8 * 1024 ** 3 + 4096; // over the octal limit
    const path = join(dir, "huge.tar");
    const fh = await open(path, "w");
    try {
      const first = encodeTarHeader({ name: "huge.bin", size });
      const pax = encodePaxRecords({ size: String(size) });
      let pos = 0;
      await fh.write(first, 0, BLOCK_SIZE, pos);
      pos += BLOCK_SIZE + paddedSize(size);
      const paxHeader = entry({ name: "PaxHeaders/huge2", typeflag: "x" }, pax);
      await fh.write(paxHeader, 0, paxHeader.length, pos);
      pos += paxHeader.length;
      await fh.write(encodeTarHeader({ name: "huge2.bin", size: 0 }), 0, BLOCK_SIZE, pos);
      pos += BLOCK_SIZE + paddedSize(size);
      const tail = archive(entry({ name: "manifest.json" }, "[]"));
      await fh.write(tail, 0, tail.length, pos);
    } finally {
      await fh.close();
    }
    const index = await TarIndex.open(path);
    try {
      assert.equal(index.entry("huge.bin")?.size, size);
      assert.equal(index.entry("huge2.bin")?.size, size);
      assert.equal(await text(index, "manifest.json"), "[]");
      const head = await index.readHead("huge2.bin", 4);
      assert.deepEqual([...head], [0, 0, 0, 0]);
    } finally {
      await index.close();
      await removeTempDir(path);
    }
  });

  it("follows symlinks (relative to their directory, chains, directories) and hard links", async () => {
    const index = await indexOf(archive(
      entry({ name: "blobs/sha256/abc" }, "layer bytes"),
      entry({ name: "id1/layer.tar", typeflag: "2", linkname: "../blobs/sha256/abc" }),
      entry({ name: "id2/layer.tar", typeflag: "2", linkname: "../id1/layer.tar" }),
      entry({ name: "id3", typeflag: "2", linkname: "id1" }),
      entry({ name: "hard.tar", typeflag: "1", linkname: "./id2/layer.tar" }),
      entry({ name: "x/y/up", typeflag: "2", linkname: "../../hard.tar" }),
    ));
    try {
      for (
        const name of ["id1/layer.tar", "id2/layer.tar", "id3/layer.tar", "hard.tar", "x/y/up"]
      ) {
        assert.equal(index.resolve(name)?.name, "blobs/sha256/abc", name);
        assert.equal(await text(index, name), "layer bytes");
      }
      assert.equal(index.entry("id1/layer.tar")?.type, "symlink");
    } finally {
      await index.close();
    }
  });

  it("refuses link loops, links leading outside, dangling links and directories", async () => {
    const index = await indexOf(archive(
      entry({ name: "loop-a", typeflag: "2", linkname: "loop-b" }),
      entry({ name: "loop-b", typeflag: "2", linkname: "loop-a" }),
      entry({ name: "d/out", typeflag: "2", linkname: "../../etc/passwd" }),
      entry({ name: "abs", typeflag: "2", linkname: "/etc/passwd" }),
      entry({ name: "dangling", typeflag: "2", linkname: "nowhere" }),
      entry({ name: "dir", typeflag: "5" }),
    ));
    try {
      const cases: [string, RegExp][] = [
        ["loop-a", /too many levels of links/],
        ["d/out", /points outside the archive/],
        ["abs", /points outside the archive/],
        ["dangling", /link to nowhere, which is not in the archive/],
        ["dir", /is a directory, not a file/],
      ];
      for (const [name, message] of cases) {
        assert.throws(() => index.resolve(name), (e: unknown) => {
          assert.ok(e instanceof ArchiveError);
          assert.equal(e.entry, name);
          assert.match(e.message, message);
          return true;
        });
      }
      assert.throws(() => index.resolve("../x"), /leaves the archive/);
    } finally {
      await index.close();
    }
  });

  it("refuses entry names that are absolute or climb out with ..", async () => {
    let e = await failure(archive(entry({ name: "/etc/passwd" }, "x")));
    assert.match(e.message, /\/etc\/passwd: path leaves the archive/);
    e = await failure(archive(entry({ name: "a/../../evil" }, "x")));
    assert.match(e.message, /a\/\.\.\/\.\.\/evil: path leaves the archive/);
    e = await failure(archive(entry({ name: "h", typeflag: "1", linkname: "../../x" })));
    assert.match(e.message, /hard link to \.\.\/\.\.\/x leaves the archive/);
  });

  it("detects truncation, header checksum mismatches and files that are not tars", async () => {
    const good = archive(entry({ name: "a.txt" }, "a".repeat(2000)), entry({ name: "b" }, "b"));
    let e = await failure(good.slice(0, 1500));
    assert.equal(e.entry, "a.txt");
    assert.match(e.message, /truncated: the entry claims 2000 bytes at offset 512/);
    e = await failure(good.slice(0, 2560 + 100));
    assert.match(e.message, /truncated: the file ends inside a header block at offset 2560/);
    const corrupt = good.slice();
    corrupt[2560 + 10] ^= 0xff; // inside the second header
    e = await failure(corrupt);
    assert.match(e.message, /header checksum mismatch at offset 2560/);
    e = await failure(enc.encode("this is not a tar archive at all\n".repeat(40)));
    assert.match(e.message, /not a tar archive: no valid tar header at offset 0/);
    e = await failure(new Uint8Array(gzipSync(good)));
    assert.match(e.message, /gzip-compressed/);
    e = await failure(new Uint8Array(0));
    assert.match(e.message, /the file is empty/);
  });

  it("lets a later entry of the same name replace an earlier one", async () => {
    const index = await indexOf(archive(entry({ name: "a" }, "old"), entry({ name: "a" }, "new")));
    try {
      assert.equal(await text(index, "a"), "new");
    } finally {
      await index.close();
    }
  });

  it("streams entries in chunks of the requested size", async () => {
    const data = new Uint8Array(10_000).map((_, i) => i % 251);
    const index = await indexOf(archive(entry({ name: "data" }, data)));
    try {
      const sizes: number[] = [];
      const chunks: Uint8Array[] = [];
      for await (const chunk of index.openEntry("data", { chunkSize: 4096 })) {
        sizes.push(chunk.length);
        chunks.push(chunk);
      }
      assert.deepEqual(sizes, [4096, 4096, 1808]);
      assert.deepEqual(new Uint8Array(Buffer.concat(chunks)), data);
    } finally {
      await index.close();
    }
  });

  it("finds manifest.json after a 1 GiB entry with one header scan and bounded memory", async () => {
    const size = 1024 * 1024 * 1024;
    const path = join(dir, "big.tar");
    const fh = await open(path, "w");
    try {
      await fh.write(encodeTarHeader({ name: "layer.tar", size }), 0, BLOCK_SIZE, 0);
      const tail = archive(entry({ name: "manifest.json" }, '[{"Config":"c"}]'));
      await fh.write(tail, 0, tail.length, BLOCK_SIZE + size); // the data is a sparse hole
    } finally {
      await fh.close();
    }
    const index = await TarIndex.open(path);
    try {
      assert.equal(await text(index, "manifest.json"), '[{"Config":"c"}]');
      // Streaming the whole entry keeps memory bounded: measured in a child process, so
      // other tests running in this process do not disturb the figure.
      const script = fileURLToPath(new URL("./fixtures/stream_entry_rss.ts", import.meta.url));
      const runtime = "Bun" in globalThis ? [script] : ["run", "-A", script];
      const out = (await run(process.execPath, [...runtime, path, "layer.tar"])).stdout;
      const result = JSON.parse(out);
      assert.equal(result.total, size);
      assert.ok(result.peakMiB < 200, `peak RSS ${result.peakMiB} MiB while streaming 1 GiB`);
    } finally {
      await index.close();
      await removeTempDir(path);
    }
  });
});
