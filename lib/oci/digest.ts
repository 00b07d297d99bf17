/**
 * Content digests: parsing, computing and verifying SHA-256 while bytes stream.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { DigestMismatchError, ImagesError } from "../errors.ts";

const DIGEST_PATTERN = /^sha256:[a-f0-9]{64}$/;

/**
 * Whether `text` is a SHA-256 content digest (`sha256:` and 64 lower-case hex digits).
 *
 * @example
 * ```ts
 * import { isDigest } from "./digest.ts";
 * isDigest("sha256:" + "0".repeat(64)); // true
 * isDigest("md5:abc"); // false
 * ```
 */
export function isDigest(text: string): boolean {
  return DIGEST_PATTERN.test(text);
}

/**
 * Returns `text` if it is a SHA-256 digest, otherwise throws an error naming `where`.
 *
 * @example
 * ```ts
 * import { checkDigest } from "./digest.ts";
 * const d = checkDigest("sha256:" + "a".repeat(64), "index.json manifests[0]");
 * ```
 */
export function checkDigest(text: unknown, where: string): string {
  if (typeof text !== "string" || !isDigest(text)) {
    throw new ImagesError(
      `${where}: expected a sha256 digest (sha256:<64 hex digits>), got ${
        JSON.stringify(text)?.slice(0, 100)
      }`,
      "DIGEST_INVALID",
    );
  }
  return text;
}

/**
 * The 64 hex digits of a `sha256:` digest.
 *
 * @example
 * ```ts
 * import { digestHex } from "./digest.ts";
 * digestHex("sha256:" + "ab".repeat(32)); // "abab…"
 * ```
 */
export function digestHex(digest: string): string {
  return digest.slice("sha256:".length);
}

/**
 * The SHA-256 digest of a byte array, as `sha256:<hex>`.
 *
 * @example
 * ```ts
 * import { sha256Digest } from "./digest.ts";
 * sha256Digest(new TextEncoder().encode("")); // "sha256:e3b0c442…"
 * ```
 */
export function sha256Digest(bytes: Uint8Array): string {
  return "sha256:" + createHash("sha256").update(bytes).digest("hex");
}

/**
 * Counts and hashes bytes as they pass; the result is read once the stream ends.
 *
 * @example
 * ```ts
 * import { DigestCounter } from "./digest.ts";
 * const counter = new DigestCounter();
 * counter.update(new Uint8Array([1, 2, 3]));
 * console.log(counter.size, counter.digest());
 * ```
 */
export class DigestCounter {
  #hash?: Hash;
  #digest?: string;
  /** Bytes seen so far. */
  size = 0;

  /**
   * @param vouched the digest the bytes are already known to have (that of a
   * {@linkcode VerifiedStream}, from {@linkcode vouchedDigest}, the only way to get
   * one): they are then only counted, not hashed again
   */
  constructor(vouched?: VouchedDigest) {
    if (vouched === undefined) this.#hash = createHash("sha256");
    else this.#digest = vouched;
  }

  /** Adds bytes to the hash. */
  update(chunk: Uint8Array): void {
    this.#hash?.update(chunk);
    this.size += chunk.byteLength;
  }

  /**
   * The digest of every byte seen (for vouched bytes, the digest vouched for); call once
   * all bytes have been seen.
   */
  digest(): string {
    this.#digest ??= "sha256:" + this.#hash!.digest("hex");
    return this.#digest;
  }
}

const VERIFIED_DIGEST = Symbol("verified digest");

/**
 * A stream whose maker checks every byte against `digest` on the way: it fails before
 * its end unless its bytes have that digest. It carries the digest itself, so a consumer
 * that would hash the same bytes again to check the same digest can trust it
 * ({@linkcode vouchedDigest}): a pull then hashes each layer once. Only the stream object
 * itself is verified, never one piped from it or wrapped around it: a wrapper is a plain
 * `ReadableStream`, and returning one where a `VerifiedStream` is promised (an
 * `ImageSource`'s `fetchBlob`) is a type error. Trust holds only for a consumer that
 * reads it from its first byte to its end. Made by {@linkcode verifiedStream}.
 *
 * @example
 * ```ts
 * import { verifiedStream, type VerifiedStream } from "./digest.ts";
 * const digest = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
 * const checked: VerifiedStream = verifiedStream(new Blob(["hello"]).stream(), { digest, what: "x" });
 * ```
 */
export type VerifiedStream = ReadableStream<Uint8Array> & { readonly [VERIFIED_DIGEST]: string };

/**
 * Marks `stream` as verified against `digest` by whoever made it: only for a maker that
 * checks every byte itself (a byte-for-byte pass-through of a {@linkcode VerifiedStream},
 * or a stream piped through {@linkcode verifyingStream}); {@linkcode verifiedStream} does
 * both steps.
 *
 * @example
 * ```ts
 * import { verifyingStream, vouch } from "./digest.ts";
 * const digest = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
 * const checked = vouch(new Blob(["hello"]).stream().pipeThrough(verifyingStream({ digest, what: "x" })), digest);
 * ```
 */
export function vouch(stream: ReadableStream<Uint8Array>, digest: string): VerifiedStream {
  Object.defineProperty(stream, VERIFIED_DIGEST, { value: digest });
  return stream as VerifiedStream;
}

/**
 * `stream` checked against `expected` as it flows ({@linkcode verifyingStream}), as a
 * {@linkcode VerifiedStream} of `expected.digest`.
 *
 * @example
 * ```ts
 * import { verifiedStream } from "./digest.ts";
 * const digest = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
 * const checked = verifiedStream(new Blob(["hello"]).stream(), { digest, size: 5, what: "x" });
 * await new Response(checked).text(); // "hello"
 * ```
 */
export function verifiedStream(
  stream: ReadableStream<Uint8Array>,
  expected: Expectation & { digest: string },
  onProgress?: (bytes: number) => void,
): VerifiedStream {
  return vouch(
    stream.pipeThrough(verifyingStream(expected, undefined, onProgress)),
    expected.digest,
  );
}

/**
 * The digest a {@linkcode VerifiedStream} is checked against.
 *
 * @example
 * ```ts
 * import { verifiedDigest, verifiedStream } from "./digest.ts";
 * const digest = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
 * verifiedDigest(verifiedStream(new Blob(["hello"]).stream(), { digest, what: "x" })) === digest; // true
 * ```
 */
export function verifiedDigest(stream: VerifiedStream): string {
  return stream[VERIFIED_DIGEST];
}

/**
 * The digest `stream` is verified against, if it is a {@linkcode VerifiedStream} and
 * `expected` is that digest; otherwise undefined (the consumer hashes the bytes itself).
 *
 * @example
 * ```ts
 * import { DigestCounter, vouchedDigest } from "./digest.ts";
 * const stream = new Blob(["x"]).stream();
 * const counter = new DigestCounter(vouchedDigest(stream, "sha256:…")); // not verified: hashes
 * ```
 */
export function vouchedDigest(
  stream: ReadableStream<Uint8Array>,
  expected: string | undefined,
): VouchedDigest | undefined {
  const verified = (stream as Partial<VerifiedStream>)[VERIFIED_DIGEST];
  return expected !== undefined && verified === expected ? expected as VouchedDigest : undefined;
}

declare const vouchedBrand: unique symbol;

/**
 * A digest read from a {@linkcode VerifiedStream} by {@linkcode vouchedDigest}: what a
 * {@linkcode DigestCounter} takes to count without hashing, so that skipping the hash
 * needs a stream that was checked.
 */
export type VouchedDigest = string & { readonly [vouchedBrand]: true };

/**
 * Why bytes failed their {@linkcode Expectation}: more bytes than the size, fewer, or
 * another digest.
 */
export type VerifyFailure =
  | { kind: "longer"; size: number }
  | { kind: "shorter"; size: number; got: number }
  | { kind: "digest"; expected: string; actual: string };

/** What {@linkcode Verifier} and {@linkcode verifyingStream} check. */
export interface Expectation {
  /** The digest the bytes must have. */
  digest?: string;
  /** The number of bytes expected. */
  size?: number;
  /** Names the blob in errors, e.g. `layer sha256:… of image.tar`. */
  what: string;
  /**
   * The error for a failure, for an owner with its own wording (an archive names its
   * entry); by default a `SIZE_INVALID` {@linkcode ImagesError} or a
   * {@linkcode DigestMismatchError} naming `what`.
   */
  failure?: (failure: VerifyFailure) => Error;
}

/**
 * Checks bytes against an {@linkcode Expectation} as they pass, for a loop that reads a
 * stream itself (a destination writing each chunk): the one digest and size check every
 * reader and writer of blobs uses. More bytes than `size` fail at once, so a source that
 * streams forever is stopped.
 *
 * @example
 * ```ts
 * import { Verifier } from "./digest.ts";
 * const check = new Verifier({ what: "greeting", size: 5 });
 * check.update(new TextEncoder().encode("hello"));
 * console.log(check.end()); // sha256:2cf24dba…
 * ```
 */
export class Verifier {
  readonly #expected: Expectation;
  readonly #counter: DigestCounter;

  /**
   * A check of bytes to come against what they must be.
   *
   * @param expected what the bytes must be
   * @param counter counts and hashes them (one that trusts a vouched digest only counts)
   */
  constructor(expected: Expectation, counter: DigestCounter = new DigestCounter()) {
    this.#expected = expected;
    this.#counter = counter;
  }

  /** Bytes seen so far. */
  get size(): number {
    return this.#counter.size;
  }

  /** Counts and hashes a chunk; throws when the bytes are now more than the size. */
  update(chunk: Uint8Array): void {
    this.#counter.update(chunk);
    const { size } = this.#expected;
    if (size !== undefined && this.#counter.size > size) this.#fail({ kind: "longer", size });
  }

  /** Checks the size and digest once every byte was seen; returns the digest. */
  end(): string {
    const { size, digest } = this.#expected;
    const got = this.#counter.size;
    if (size !== undefined && got !== size) this.#fail({ kind: "shorter", size, got });
    const actual = this.#counter.digest();
    if (digest !== undefined && actual !== digest) {
      this.#fail({ kind: "digest", expected: digest, actual });
    }
    return actual;
  }

  #fail(failure: VerifyFailure): never {
    if (this.#expected.failure) throw this.#expected.failure(failure);
    const { what } = this.#expected;
    switch (failure.kind) {
      case "longer":
        throw new ImagesError(
          `${what}: more data than the expected ${failure.size} bytes`,
          "SIZE_INVALID",
        );
      case "shorter":
        throw new ImagesError(
          `${what}: truncated: expected ${failure.size} bytes, got ${failure.got}`,
          "SIZE_INVALID",
        );
      case "digest":
        throw new DigestMismatchError(what, failure.expected, failure.actual);
    }
  }
}

/**
 * A pass-through stream that checks what flows through it with a {@linkcode Verifier}:
 * it fails the stream (before its end is seen downstream) when the digest or size is
 * not the one expected. `onProgress` is told the bytes passed so far.
 *
 * @example
 * ```ts
 * import { verifyingStream } from "./digest.ts";
 * const body = new Blob(["hello"]).stream();
 * const checked = body.pipeThrough(verifyingStream({ what: "greeting", size: 5 }));
 * await new Response(checked).arrayBuffer();
 * ```
 */
export function verifyingStream(
  expected: Expectation,
  counter: DigestCounter = new DigestCounter(),
  onProgress?: (bytes: number) => void,
): TransformStream<Uint8Array, Uint8Array> {
  const check = new Verifier(expected, counter);
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      check.update(chunk);
      onProgress?.(check.size);
      controller.enqueue(chunk);
    },
    flush() {
      check.end();
    },
  });
}

/**
 * The SHA-256 digest of everything a stream yields, read to its end.
 *
 * @example
 * ```ts
 * import { streamDigest } from "./digest.ts";
 * await streamDigest(new Blob(["hello"]).stream()); // "sha256:2cf24dba…"
 * ```
 */
export async function streamDigest(stream: ReadableStream<Uint8Array>): Promise<string> {
  const counter = new DigestCounter();
  for await (const chunk of stream) counter.update(chunk);
  return counter.digest();
}
