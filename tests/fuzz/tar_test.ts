/**
 * Fuzzing the tar reader: random bytes, hostile hand-made archives (pax records with
 * absurd lengths, GNU long names that never end, base-256 sizes, bad checksums, links
 * everywhere) and mutations of real image archives. Every case must end in an index or
 * an ImagesError, quickly, with bounded memory.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import fc from "fast-check";
import {
  BLOCK_SIZE,
  decodePaxRecords,
  decodeTarHeader,
  encodePaxRecords,
  encodeTarHeader,
  parseNumericField,
} from "../../lib/archive/tar_header.ts";
import {
  archiveDirname,
  normalizeArchivePath,
  resolveSymlinkTarget,
} from "../../lib/archive/tar_path.ts";
import { makeTempDir, removeTempDir } from "../../testing/fs.ts";
import {
  docker25SaveEntries,
  layerTar,
  legacySaveEntries,
  syntheticImage,
  type TarSpec,
  writeTar,
} from "../../testing/tools.ts";
import {
  applyMutations,
  assertHeapBounded,
  base256,
  casesRun,
  check,
  concat,
  exerciseTar,
  fileEntry,
  gnuLongEntry,
  headerOffsets,
  heapUsed,
  linkEntry,
  mutationArb,
  paxEntry,
  paxRecord,
  rawHeader,
  tarOf,
  testTimeout,
  typed,
} from "../../testing/fuzz.ts";
import { assertQuadraticCaught, countedBytes, linearWork } from "../../testing/work.ts";

const HEAP_LIMIT = 256 * 1024 * 1024;

/**
 * The work budget of the pax decoder per byte: it reads each byte a few times (about
 * 2.5 on many short records), so a tighter budget than the default 64, which lets a
 * quadratic decoder be shown caught on a small input.
 */
const PAX_WORK_PER_BYTE = 16;

describe("fuzz: tar reader", () => {
  let dir: string;
  const corpus = new Map<string, Uint8Array>();
  let n = 0;

  before(async () => {
    dir = await makeTempDir("fuzz-tar");
    const image = syntheticImage([
      layerTar({ "etc/os-release": "ID=fuzz\n" }),
      layerTar({ "app/a.txt": "a".repeat(700) }),
      layerTar({ "etc/os-release": "ID=fuzz\n" }),
    ]);
    const specs: Record<string, TarSpec[]> = {
      legacy: legacySaveEntries(image, ["fuzz:1"]),
      docker25: docker25SaveEntries(image, "library/fuzz", "1"),
      oci: docker25SaveEntries(image, "library/fuzz", "1").filter((e) =>
        e.name !== "manifest.json" && e.name !== "repositories"
      ),
      long: [
        { name: "d/".repeat(60) + "file", data: "x" },
        { name: "l".repeat(150), type: "symlink", linkname: "d/".repeat(60) + "file" },
        { name: "h", type: "hardlink", linkname: "d/".repeat(60) + "file" },
      ],
    };
    for (const [name, entries] of Object.entries(specs)) {
      const path = join(dir, `${name}.tar`);
      await writeTar(path, entries);
      corpus.set(name, new Uint8Array(await readFile(path)));
      await rm(path);
    }
    // GNU-style archive by hand: long name, long link, base-256 size of a small file.
    corpus.set(
      "gnu",
      tarOf(
        gnuLongEntry("g/".repeat(80) + "long\0"),
        fileEntry("ignored", "gnu data", { format: "gnu" }),
        gnuLongEntry("g/".repeat(80) + "long\0", true),
        rawHeader({ name: "link", typeflag: "2", format: "gnu" }),
        concat([
          rawHeader({ name: "b256", size: base256(5), format: "gnu" }),
          new Uint8Array(BLOCK_SIZE).fill(0x41),
        ]),
        paxEntry(paxRecord("path", "p/".repeat(100) + "pax") + paxRecord("mtime", "1.5")),
        fileEntry("short", "pax data"),
      ),
    );
  });

  after(async () => {
    await removeTempDir(dir);
    console.log(casesRun("fuzz_tar_test.ts").line);
  });

  /** Writes bytes to a fresh file, runs the reader over it, removes it. */
  async function readBytes(bytes: Uint8Array, extraNames: string[] = []) {
    const path = join(dir, `case-${n++}.tar`);
    await writeFile(path, bytes);
    try {
      return await exerciseTar(path, extraNames);
    } finally {
      await rm(path, { force: true });
    }
  }

  it("the corpus itself reads without error", { timeout: testTimeout(5) }, async () => {
    for (const [name, bytes] of corpus) {
      const outcome = await readBytes(bytes);
      const unexpected = outcome.errors.filter((e) =>
        !/is a directory, not a file/.test(e.message)
      );
      assert.deepEqual(unexpected.map((e) => e.message), [], name);
      assert.ok(outcome.read > 0, name);
    }
  });

  it("random bytes: an index or an ArchiveError", { timeout: testTimeout(20) }, async () => {
    const heap = heapUsed();
    await check(
      "random bytes",
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 4096 }),
          // A valid first header followed by junk, so the reader gets past offset 0.
          fc.uint8Array({ maxLength: 3000 }).map((junk) =>
            concat([rawHeader({ name: "a", size: junk.length }), junk])
          ),
          fc.array(fc.uint8Array({ minLength: 512, maxLength: 512 }), { maxLength: 6 }).map(
            concat,
          ),
        ),
        async (bytes) => {
          await readBytes(bytes);
        },
      ),
    );
    assertHeapBounded(heap, HEAP_LIMIT, "random bytes");
  });

  it(
    "mutated image archives: an index or an ArchiveError",
    { timeout: testTimeout(40) },
    async () => {
      const heap = heapUsed();
      for (const [name, tar] of corpus) {
        const headers = headerOffsets(tar);
        await check(
          `mutated ${name}`,
          fc.asyncProperty(
            fc.array(mutationArb(tar.length, headers), { minLength: 1, maxLength: 4 }),
            async (mutations) => {
              await readBytes(applyMutations(tar, mutations), ["manifest.json", "index.json"]);
            },
          ),
          { scale: 0.5 },
        );
      }
      assertHeapBounded(heap, HEAP_LIMIT, "mutated archives");
    },
  );

  it(
    "hand-made hostile archives: an index or an ArchiveError",
    { timeout: testTimeout(20) },
    async () => {
      const name = fc.oneof(
        fc.constantFrom(
          "a",
          "b",
          "a/b",
          "./a",
          "a/../b",
          "../a",
          "/a",
          "a/",
          ".",
          "",
          "..",
          "a//b",
        ),
        fc.string({ maxLength: 120 }),
      );
      const entry: fc.Arbitrary<Uint8Array> = fc.oneof(
        fc.tuple(name, fc.uint8Array({ maxLength: 1200 })).map(([n, d]) => fileEntry(n, d)),
        fc.tuple(name, name).map(([n, t]) => linkEntry(n, t)),
        fc.tuple(name, name).map(([n, t]) => linkEntry(n, t, true)),
        name.map((n) => rawHeader({ name: n, typeflag: "5" })),
        // Absurd sizes: octal max, base-256 far beyond the file, beyond 2^53, negative.
        fc.tuple(
          name,
          fc.constantFrom(
            base256(2 ** 40),
            base256(2 ** 53 + 8),
            base256(2n ** 95n - 1n),
            new Uint8Array(12).fill(0xff),
            new TextEncoder().encode("77777777777\0"),
          ),
        ).map(([n, size]) => rawHeader({ name: n, size })),
        // Bad checksums, and checksums that are not numbers.
        name.map((n) => rawHeader({ name: n, size: 0, checksum: "bad" })),
        name.map((n) => rawHeader({ name: n, size: 0, checksum: new TextEncoder().encode("zz") })),
        // pax: well-formed, absurd lengths, missing newline, sizes that lie.
        fc.tuple(
          fc.constantFrom("path", "linkpath", "size", "mtime", "x"),
          fc.string({ maxLength: 300 }),
        )
          .map(([k, v]) => paxEntry(paxRecord(k, v))),
        fc.constantFrom(
          paxEntry("99999999999999999999 path=a\n"),
          paxEntry("9007199254740993 path=a\n"),
          paxEntry("-5 path=a\n"),
          paxEntry("5 path=a\n"),
          paxEntry("12 path=abc"),
          paxEntry("0 =\n"),
          paxEntry(" path=a\n"),
          paxEntry("7 =abc\n"),
          paxEntry(paxRecord("size", "1e3")),
          paxEntry(paxRecord("size", "-1")),
          paxEntry(paxRecord("size", "99999999999999999999")),
          paxEntry(paxRecord("size", "NaN")),
          paxEntry(paxRecord("path", "../../escape")),
          paxEntry(paxRecord("linkpath", "/etc/passwd")),
          paxEntry(paxRecord("path", "manifest.json"), true),
          paxEntry(paxRecord("__proto__", "x") + paxRecord("constructor", "y")),
          // A pax header claiming more than the reader accepts (1 MiB) and than the file.
          rawHeader({ name: "PaxHeaders/big", typeflag: "x", size: 2 * 1024 * 1024 }),
        ),
        // GNU long names and links: ending, never ending (no NUL, to the end), huge.
        fc.tuple(fc.string({ maxLength: 600 }), fc.boolean()).map(([t, link]) =>
          gnuLongEntry(t, link)
        ),
        fc.constantFrom(
          gnuLongEntry("n".repeat(5000)),
          rawHeader({
            name: "././@LongLink",
            typeflag: "L",
            size: 10 * 1024 * 1024,
            format: "gnu",
          }),
          rawHeader({
            name: "././@LongLink",
            typeflag: "K",
            size: base256(2 ** 45),
            format: "gnu",
          }),
        ),
        fc.uint8Array({ minLength: 512, maxLength: 512 }),
        fc.constant(new Uint8Array(BLOCK_SIZE)),
      );
      const heap = heapUsed();
      await check(
        "hostile archives",
        fc.asyncProperty(fc.array(entry, { maxLength: 8 }), fc.boolean(), async (entries, end) => {
          const bytes = end ? tarOf(...entries) : concat(entries);
          await readBytes(bytes, ["a", "b", "a/b", "manifest.json"]);
        }),
      );
      assertHeapBounded(heap, HEAP_LIMIT, "hostile archives");
    },
  );

  it(
    "link mazes resolve to a file, nothing, or a typed refusal",
    { timeout: testTimeout(10) },
    async () => {
      const names = ["a", "b", "c", "d/e", "d", "d/f/g"];
      const target = fc.oneof(
        fc.constantFrom(...names, "..", "../a", "/a", ".", "d/..", "d/../..", "a/b/c", "d/e/../.."),
        fc.array(fc.constantFrom(...names, "..", "."), { minLength: 1, maxLength: 5 }).map((p) =>
          p.join("/")
        ),
      );
      const entry = fc.oneof(
        fc.constantFrom(...names).map((n) => fileEntry(n, n)),
        fc.tuple(fc.constantFrom(...names), target).map(([n, t]) => linkEntry(n, t)),
        fc.tuple(fc.constantFrom(...names), target).map(([n, t]) => linkEntry(n, t, true)),
        fc.constantFrom(...names).map((n) => rawHeader({ name: n, typeflag: "5" })),
      );
      await check(
        "link mazes",
        fc.asyncProperty(fc.array(entry, { minLength: 1, maxLength: 10 }), async (entries) => {
          const outcome = await readBytes(tarOf(...entries), [...names, "d/e/x", "a/a/a"]);
          for (const e of outcome.errors) assert.equal(e.code, "ARCHIVE_INVALID", e.message);
        }),
      );
    },
  );

  it(
    "header blocks: decoding random blocks never throws",
    { timeout: testTimeout(5) },
    async () => {
      await check(
        "header decode",
        fc.property(fc.uint8Array({ minLength: 512, maxLength: 512 }), (block) => {
          const h = decodeTarHeader(block);
          if (typeof h !== "string") assert.ok(Number.isSafeInteger(h.size) && h.size >= 0);
        }),
        { scale: 5 },
      );
    },
  );

  it(
    "header blocks: what is encoded decodes to the same fields",
    { timeout: testTimeout(5) },
    async () => {
      const component = fc.stringMatching(/^[a-z0-9._-]{1,20}$/);
      await check(
        "header round trip",
        fc.property(
          fc.array(component, { minLength: 1, maxLength: 8 }).map((p) => p.join("/")),
          fc.oneof(
            fc.nat(),
            fc.constantFrom(0o77777777777, 0o77777777777 + 1, 2 ** 40, 2 ** 53 - 1),
          ),
          fc.constantFrom("0", "1", "2", "5"),
          fc.constantFrom<"ustar" | "gnu">("ustar", "gnu"),
          (name, size, typeflag, format) => {
            if (format === "gnu" && new TextEncoder().encode(name).length > 100) return;
            const block = encodeTarHeader({ name, size, typeflag, format, linkname: "t" });
            const h = decodeTarHeader(block);
            assert.notEqual(typeof h, "string");
            if (typeof h === "string") return;
            assert.equal(h.name, name);
            assert.equal(h.size, size);
            assert.equal(h.typeflag, typeflag);
            assert.equal(h.linkname, "t");
          },
        ),
      );
    },
  );

  it("numeric fields: octal or base-256, never unsafe", { timeout: testTimeout(5) }, async () => {
    await check(
      "numeric fields",
      fc.property(fc.uint8Array({ minLength: 12, maxLength: 12 }), (field) => {
        const v = parseNumericField(field, 0, 12);
        assert.ok(v === undefined || (Number.isSafeInteger(v) && v >= 0));
      }),
    );
    await check(
      "base-256 round trip",
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 53n - 1n }), (value) => {
        assert.equal(parseNumericField(base256(value), 0, 12), Number(value));
      }),
    );
  });

  it("pax records: random bytes give records or undefined; encoded records decode", {
    timeout: testTimeout(5),
  }, async () => {
    await check(
      "pax decode",
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 2000 }),
          fc.array(fc.tuple(fc.string(), fc.string()), { maxLength: 5 }).map((rs) =>
            new TextEncoder().encode(rs.map(([k, v]) => paxRecord(k, v)).join(""))
          ),
        ),
        (data) => {
          const decode = () => decodePaxRecords(countedBytes(data));
          linearWork("decodePaxRecords", data.length, decode, PAX_WORK_PER_BYTE);
        },
      ),
    );
    await check(
      "pax round trip",
      fc.property(
        fc.dictionary(
          fc.stringMatching(/^[a-zA-Z.]{1,12}$/),
          fc.string({ maxLength: 300, unit: "binary" }),
          { maxKeys: 5 },
        ),
        (records) => {
          const clean = Object.fromEntries(
            Object.entries(records).filter(([k]) => k !== "__proto__"),
          );
          assert.deepEqual({ ...decodePaxRecords(encodePaxRecords(clean)) }, clean);
        },
      ),
    );
  });

  it("pax records: linear work on many records or one huge one; a quadratic decoder is caught", () => {
    const many = new TextEncoder().encode("6 a=b\n".repeat(8192));
    const huge = new TextEncoder().encode(paxRecord("path", "a/".repeat(512 * 1024)));
    for (const data of [many, huge]) {
      const records = linearWork(
        "decodePaxRecords",
        data.length,
        () => decodePaxRecords(countedBytes(data)),
        PAX_WORK_PER_BYTE,
      );
      assert.ok(records !== undefined && Object.keys(records).length === 1);
    }
    // Few records: every byte the quadratic one reads goes through the counting view.
    const records = (n: number) => new TextEncoder().encode("6 a=b\n".repeat(n));
    const lines = assertQuadraticCaught({
      what: "decodePaxRecords",
      inputs: [records(512), records(1024)],
      size: (data) => data.length,
      parser: (data) => ({ ...decodePaxRecords(countedBytes(data)) }),
      quadratic: (data) => quadraticPaxRecords(countedBytes(data)),
      perUnit: PAX_WORK_PER_BYTE,
    });
    console.log(lines.join("\n"));
  });

  it(
    "archive paths: normalised paths never leave the root",
    { timeout: testTimeout(5) },
    async () => {
      const part = fc.oneof(fc.constantFrom("..", ".", "", "a", "b"), fc.string({ maxLength: 5 }));
      const path = fc.array(part, { maxLength: 12 }).map((p) => p.join("/"));
      await check(
        "normalize",
        fc.property(fc.oneof(path, path.map((p) => `/${p}`)), path, (text, target) => {
          const normal = typed(() => normalizeArchivePath(text));
          if (normal === undefined) return;
          assert.ok(typeof normal === "string");
          assert.ok(!normal.startsWith("/"));
          if (normal !== "") {
            assert.ok(!normal.split("/").some((c) => c === ".." || c === "." || c === ""));
          }
          assert.equal(normalizeArchivePath(normal), normal, "idempotent");
          const resolved = resolveSymlinkTarget(archiveDirname(normal), target);
          if (resolved !== undefined) {
            assert.ok(!resolved.startsWith("/") && !resolved.split("/").includes(".."));
          }
        }),
      );
    },
  );
});

/** The decimal length at the start of the pax record at `pos`, read byte by byte; -1 if none. */
function paxLengthAt(data: Uint8Array, pos: number, end: number): number {
  let length = 0;
  for (let i = pos; i < end; i++) {
    const byte = data[i]; // each byte read once: on a counted view, every read counts
    if (byte === 0x20) return i > pos ? length : -1;
    if (byte < 0x30 || byte > 0x39) return -1;
    length = length * 10 + byte - 0x30;
  }
  return -1;
}

/**
 * `decodePaxRecords` written badly on purpose: the start of the k-th record is found by
 * walking the lengths of all records before it again (quadratic in the number of
 * records). It gives the same answers for well-formed records.
 */
function quadraticPaxRecords(data: Uint8Array): Record<string, string> | undefined {
  const records: Record<string, string> = {};
  const end = data.length;
  for (let k = 0;; k++) {
    let pos = 0;
    for (let i = 0; i < k; i++) pos += paxLengthAt(data, pos, end);
    if (pos >= end) return records;
    const length = paxLengthAt(data, pos, end);
    if (length <= 0 || pos + length > end) return undefined;
    const record = new TextDecoder().decode(data.subarray(pos, pos + length));
    const space = record.indexOf(" ");
    const eq = record.indexOf("=");
    if (!record.endsWith("\n") || eq < space) return undefined;
    records[record.slice(space + 1, eq)] = record.slice(eq + 1, -1);
  }
}
