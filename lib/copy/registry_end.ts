/**
 * A registry repository as a source and as a destination of the copy engine.
 *
 * @module
 */

import { AbortedError, DigestMismatchError, ImagesError } from "../errors.ts";
import { sha256Digest, type VerifiedStream } from "../oci/digest.ts";
import type { Descriptor } from "../oci/manifest.ts";
import type { RegistryClient } from "../registry/client.ts";
import type { UploadResume } from "../registry/upload.ts";
import { skipBytes } from "../streams.ts";
import type {
  BlobInfo,
  ImageDestination,
  ImageSource,
  ResolvedImage,
  TransferOptions,
} from "./ends.ts";
import type { BlobCache } from "./blob_cache.ts";
import type { UploadKey, UploadRecords } from "./upload_records.ts";

/** Repositories a blob is tried to be mounted from before it is uploaded. */
const MAX_MOUNT_SOURCES = 3;

/**
 * Reads images from one repository of a registry.
 *
 * @example
 * ```ts ignore
 * import { RegistrySource } from "./registry_end.ts";
 * const source = new RegistrySource(client, "alice/app");
 * const image = await source.resolve("latest");
 * ```
 */
export class RegistrySource implements ImageSource {
  readonly #client: RegistryClient;
  readonly #repository: string;
  readonly #cache?: BlobCache;

  /**
   * @param client the registry
   * @param repository the repository path, e.g. `org/owner/name`
   * @param options `blobCache`: told where each blob read was seen (so a later push to
   *   another repository of the registry mounts it)
   */
  constructor(client: RegistryClient, repository: string, options: { blobCache?: BlobCache } = {}) {
    this.#client = client;
    this.#repository = repository;
    this.#cache = options.blobCache;
  }

  /** `host/repository`. */
  get location(): string {
    return `${this.#client.host}/${this.#repository}`;
  }

  /** The repository's tags. */
  async names(): Promise<string[]> {
    return await this.#client.listTags(this.#repository);
  }

  /** The manifest or index under a tag or digest (default `latest`). */
  async resolve(name = "latest"): Promise<ResolvedImage> {
    const got = await this.#client.getManifest(this.#repository, name);
    return {
      name,
      bytes: got.bytes,
      descriptor: { mediaType: got.mediaType, digest: got.digest, size: got.bytes.byteLength },
    };
  }

  /** A manifest by its descriptor's digest, verified. */
  async fetchManifest(descriptor: Descriptor): Promise<Uint8Array> {
    const got = await this.#client.getManifest(this.#repository, descriptor.digest);
    const actual = sha256Digest(got.bytes);
    if (actual !== descriptor.digest) {
      throw new DigestMismatchError(
        `manifest ${descriptor.digest} of ${this.location}`,
        descriptor.digest,
        actual,
      );
    }
    return got.bytes;
  }

  /** A blob's bytes, verified while they stream. */
  async fetchBlob(
    descriptor: Descriptor,
    options: TransferOptions = {},
  ): Promise<VerifiedStream> {
    const stream = await this.#client.getBlob(this.#repository, descriptor, options);
    await this.#cache?.seenAt(descriptor.digest, this.#client.host, this.#repository);
    return stream;
  }

  /** Nothing to release: connections are pooled by `fetch`. */
  async close(): Promise<void> {}
}

/**
 * Writes images to one repository of a registry. Blobs become visible as they are
 * uploaded; the manifest goes last, so a failed push never changes an existing tag.
 *
 * @example
 * ```ts ignore
 * import { RegistryDestination } from "./registry_end.ts";
 * const destination = new RegistryDestination(client, "alice/app");
 * ```
 */
export class RegistryDestination implements ImageDestination {
  readonly #client: RegistryClient;
  readonly #repository: string;
  readonly #mountFrom: string[];
  readonly #uploads?: UploadRecords;
  readonly #cache?: BlobCache;

  /**
   * @param client the registry
   * @param repository the repository path
   * @param mountFrom other repositories of the same registry that may hold the blobs
   * @param options `uploads`: where unfinished uploads of large blobs are saved, so a
   *   later push resumes them (such blobs go in chunks); without it nothing is saved.
   *   `blobCache`: where blobs were seen; a blob seen in another repository of the
   *   registry is mounted from there instead of uploaded, and every blob and manifest
   *   written is recorded
   */
  constructor(
    client: RegistryClient,
    repository: string,
    mountFrom: string[] = [],
    options: { uploads?: UploadRecords; blobCache?: BlobCache } = {},
  ) {
    this.#client = client;
    this.#repository = repository;
    this.#mountFrom = mountFrom.filter((r) => r !== repository);
    this.#uploads = options.uploads;
    this.#cache = options.blobCache;
  }

  /** Records that this repository holds a blob or manifest. */
  async #seen(digest: string): Promise<void> {
    await this.#cache?.seenAt(digest, this.#client.host, this.#repository);
  }

  /**
   * How a blob's upload is saved and resumed: only for blobs of more than two chunks
   * (smaller ones are cheaper to send again than to send in chunks).
   */
  async #resume(options: TransferOptions, info: BlobInfo): Promise<UploadResume | undefined> {
    const uploads = this.#uploads;
    const named = options.resumeKey;
    const size = named?.sizeHint ?? info.size;
    if (!uploads || !named || size === undefined) return undefined;
    if (size <= 2 * this.#client.uploadPolicy.chunkSize) return undefined;
    const key: UploadKey = {
      host: this.#client.host,
      repository: this.#repository,
      source: named.source,
      settings: named.settings,
    };
    return {
      saved: await uploads.load(key),
      save: (state) => uploads.save(key, state),
      forget: () => uploads.remove(key),
      onResume: options.onResume,
    };
  }

  /** `host/repository`. */
  get location(): string {
    return `${this.#client.host}/${this.#repository}`;
  }

  /**
   * Whether the repository has the blob, mounting it from another repository of the
   * registry where it was seen (or one of `mountFrom`): a blob seen here, or nowhere
   * else, is asked for with `HEAD`; one seen elsewhere is mounted at once (the mount
   * answers for both), and asked for only when no mount worked.
   */
  async hasBlob(descriptor: Descriptor, signal?: AbortSignal): Promise<boolean> {
    const { digest } = descriptor;
    const seen = await this.#cache?.whereSeen(digest, this.#client.host) ?? [];
    const sources = [...new Set([...seen, ...this.#mountFrom])]
      .filter((r) => r !== this.#repository).slice(0, MAX_MOUNT_SOURCES);
    let asked = false;
    const head = async () => {
      asked = true;
      return await this.#client.headBlob(this.#repository, digest, signal) !== undefined;
    };
    if ((seen.includes(this.#repository) || sources.length === 0) && await head()) {
      await this.#seen(digest);
      return true;
    }
    for (const from of sources) {
      if (await this.#mount(digest, from, signal)) {
        await this.#seen(digest);
        return true;
      }
    }
    if (!asked && await head()) {
      await this.#seen(digest);
      return true;
    }
    return false;
  }

  /**
   * Whether the repository holds a manifest (a registry stores one only with all its
   * blobs). Asked (`HEAD`) only when the blob cache saw it there: otherwise the answer
   * is most likely no, and the blobs are checked anyway.
   */
  async hasManifest(descriptor: Descriptor, signal?: AbortSignal): Promise<boolean> {
    const seen = await this.#cache?.whereSeen(descriptor.digest, this.#client.host) ?? [];
    if (!seen.includes(this.#repository)) return false;
    const found = await this.#client.headManifest(this.#repository, descriptor.digest, signal);
    return found !== undefined;
  }

  /**
   * Mounts a blob from `from`: false when the registry would not (it no longer has it
   * there, the credentials do not reach `from`, it does not mount), so it is uploaded.
   */
  async #mount(digest: string, from: string, signal?: AbortSignal): Promise<boolean> {
    try {
      return await this.#client.mountBlob(this.#repository, digest, from, signal);
    } catch (e) {
      if (signal?.aborted || e instanceof AbortedError) throw e;
      this.#client.debug(`mount ${digest} from ${from} into ${this.#repository}: ${e}`);
      return false;
    }
  }

  /** Uploads a blob; a transfer lost part-way resumes from what the registry holds. */
  async putBlob(
    stream: ReadableStream<Uint8Array>,
    info: BlobInfo,
    options: TransferOptions = {},
  ): Promise<Descriptor> {
    let first: ReadableStream<Uint8Array> | undefined = stream;
    const open = async (offset: number) => {
      const fresh = first ?? await options.reopen?.();
      first = undefined;
      if (!fresh) {
        throw new ImagesError(
          `cannot resend blob to ${this.location}: its source cannot be reopened`,
          "SOURCE_NOT_REOPENABLE",
        );
      }
      return skipBytes(fresh, offset);
    };
    const stored = await this.#client.uploadBlob(
      this.#repository,
      { open, digest: info.digest, size: info.size },
      {
        signal: options.signal,
        onProgress: options.onProgress,
        suspend: options.suspend,
        resume: await this.#resume(options, info),
      },
    );
    await this.#seen(stored.digest);
    return { mediaType: info.mediaType, digest: stored.digest, size: stored.size };
  }

  /** Puts a manifest under its name (a tag), or under its digest. */
  async putManifest(bytes: Uint8Array, descriptor: Descriptor, name?: string): Promise<void> {
    await this.#client.putManifest(
      this.#repository,
      name ?? descriptor.digest,
      bytes,
      descriptor.mediaType,
    );
    await this.#seen(descriptor.digest);
  }

  /** Nothing to do: the manifest, put last, is the commit. */
  async commit(): Promise<void> {}

  /** Nothing to undo: blobs without a manifest are invisible and collected by the registry. */
  async abort(): Promise<void> {}
}
