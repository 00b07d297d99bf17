/**
 * An image end held in memory, for tests of the copy engine.
 */

import { NotFoundError } from "../lib/errors.ts";
import {
  DigestCounter,
  sha256Digest,
  type VerifiedStream,
  verifiedStream,
  verifyingStream,
} from "../lib/oci/digest.ts";
import type { Descriptor } from "../lib/oci/manifest.ts";
import type {
  BlobInfo,
  ImageDestination,
  ImageSource,
  ResolvedImage,
  TransferOptions,
} from "../lib/ends.ts";
import { readAll, streamOf } from "../lib/streams.ts";

/** Blobs, manifests and names in memory; both a source and a destination. */
export class MemoryEnd implements ImageSource, ImageDestination {
  readonly location = "memory";
  readonly blobs = new Map<string, Uint8Array>();
  readonly manifests = new Map<string, { bytes: Uint8Array; descriptor: Descriptor }>();
  readonly tags = new Map<string, string>();
  committed = false;
  aborted = false;
  /** Fails putBlob after this many blobs, to test rollback. */
  failAfterBlobs = Infinity;
  #puts = 0;

  addBlob(bytes: Uint8Array): string {
    const digest = sha256Digest(bytes);
    this.blobs.set(digest, bytes);
    return digest;
  }

  addManifest(doc: unknown, mediaType: string, name?: string): Descriptor {
    const bytes = new TextEncoder().encode(JSON.stringify(doc));
    const descriptor = { mediaType, digest: sha256Digest(bytes), size: bytes.byteLength };
    this.manifests.set(descriptor.digest, { bytes, descriptor });
    if (name) this.tags.set(name, descriptor.digest);
    return descriptor;
  }

  names(): Promise<string[]> {
    return Promise.resolve([...this.tags.keys()]);
  }

  resolve(name?: string): Promise<ResolvedImage> {
    const key = name ?? [...this.tags.keys()][0];
    const digest = this.tags.get(key);
    const m = digest && this.manifests.get(digest);
    if (!m) return Promise.reject(new NotFoundError(`${key} not in memory`));
    return Promise.resolve({ name: key, ...m });
  }

  fetchManifest(descriptor: Descriptor): Promise<Uint8Array> {
    const m = this.manifests.get(descriptor.digest);
    if (!m) return Promise.reject(new NotFoundError(`manifest ${descriptor.digest}`));
    return Promise.resolve(m.bytes);
  }

  fetchBlob(
    descriptor: Descriptor,
    options: TransferOptions = {},
  ): Promise<VerifiedStream> {
    const bytes = this.blobs.get(descriptor.digest);
    if (!bytes) return Promise.reject(new NotFoundError(`blob ${descriptor.digest}`));
    return Promise.resolve(
      verifiedStream(
        streamOf(bytes),
        { what: descriptor.digest, ...descriptor },
        options.onProgress,
      ),
    );
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  hasBlob(descriptor: Descriptor): Promise<boolean> {
    return Promise.resolve(this.blobs.has(descriptor.digest));
  }

  async putBlob(
    stream: ReadableStream<Uint8Array>,
    info: BlobInfo,
    options: TransferOptions = {},
  ): Promise<Descriptor> {
    if (this.#puts++ >= this.failAfterBlobs) throw new Error("injected failure");
    const counter = new DigestCounter();
    const bytes = await readAll(
      stream.pipeThrough(
        verifyingStream({ what: "put", digest: info.digest, size: info.size }, counter),
      ),
      1 << 30,
      "blob",
    );
    options.signal?.throwIfAborted();
    this.blobs.set(counter.digest(), bytes);
    return { mediaType: info.mediaType, digest: counter.digest(), size: counter.size };
  }

  putManifest(bytes: Uint8Array, descriptor: Descriptor, name?: string): Promise<void> {
    this.manifests.set(descriptor.digest, { bytes, descriptor });
    if (name) this.tags.set(name, descriptor.digest);
    return Promise.resolve();
  }

  commit(): Promise<void> {
    this.committed = true;
    return Promise.resolve();
  }

  abort(): Promise<void> {
    this.aborted = true;
    return Promise.resolve();
  }
}
