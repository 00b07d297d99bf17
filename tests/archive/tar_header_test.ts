import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  BLOCK_SIZE,
  decodePaxRecords,
  decodeTarHeader,
  encodePaxRecords,
  encodeTarHeader,
} from "../../lib/archive/tar_header.ts";

describe("tar header codec", () => {
  it("round-trips a header, splitting a long name into prefix and name", () => {
    const name = `${"d".repeat(120)}/${"f".repeat(90)}`;
    const h = decodeTarHeader(encodeTarHeader({ name, size: 12345, mode: 0o600 }));
    assert.ok(typeof h !== "string");
    assert.equal(h.name, name);
    assert.equal(h.size, 12345);
    assert.equal(h.mode, 0o600);
    assert.equal(h.format, "ustar");
  });

  it("encodes sizes over 8 GiB in base-256 and pax records with their own length", () => {
    const size = 9 * 1024 ** 3 + 3;
    const h = decodeTarHeader(encodeTarHeader({ name: "big", size }));
    assert.ok(typeof h !== "string");
    assert.equal(h.size, size);
    const records = encodePaxRecords({ path: "x".repeat(95), size: String(size) });
    assert.deepEqual(decodePaxRecords(records), { path: "x".repeat(95), size: String(size) });
  });

  it("reports a corrupted checksum and an end block", () => {
    const block = encodeTarHeader({ name: "a" });
    block[0] ^= 1;
    assert.equal(decodeTarHeader(block), "checksum");
    assert.equal(decodeTarHeader(new Uint8Array(BLOCK_SIZE)), "zero");
  });
});
