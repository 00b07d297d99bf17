/**
 * Writing images into a single archive file: a docker-loadable archive (OCI layout plus
 * `manifest.json` and `repositories`, accepted by `docker load` old and new,
 * `podman load` and `skopeo copy docker-archive:`/`oci-archive:`) or a plain OCI layout
 * archive.
 *
 * Blobs are stored as they are (compressed layers stay compressed) under
 * `blobs/sha256/<hex>`, as real files. A blob whose size and digest are known is
 * written straight into its reserved place, so several can stream in at once; others
 * are spooled first. The archive is written under a temporary name and renamed onto
 * the path only by `commit`; a failure or `abort` leaves any previous file in place.
 *
 * @module
 */

import { AbortedError, ImagesError } from "../errors.ts";
import type { BlobInfo, ImageDestination, TransferOptions } from "../copy/ends.ts";
import { checkDigest, DigestCounter, Verifier, vouchedDigest } from "../oci/digest.ts";
import type { Descriptor } from "../oci/manifest.ts";
import { ImageSet } from "./image_set.ts";
import { blobPath, dockerSaveFiles, jsonBytes, OCI_LAYOUT_BYTES } from "./layout_files.ts";
import { type TarSlot, TarWriter } from "./tar_writer.ts";

/** Which archive to write. */
export type ArchiveFormat = "docker" | "oci";

/** Options of {@linkcode openArchiveDestination}. */
export interface ArchiveDestinationOptions {
  /** `docker` (default): loadable by `docker load`; `oci`: a plain OCI layout archive. */
  format?: ArchiveFormat;
}

/**
 * Creates a destination writing an archive at `path` (created at `commit`).
 *
 * @example
 * ```ts
 * import { openArchiveDestination } from "./archive_destination.ts";
 * const dest = await openArchiveDestination("/tmp/out.tar", { format: "docker" });
 * await dest.abort();
 * ```
 */
export async function openArchiveDestination(
  path: string,
  options: ArchiveDestinationOptions = {},
): Promise<ArchiveDestination> {
  const writer = await TarWriter.create(path);
  try {
    await writer.addFile("oci-layout", OCI_LAYOUT_BYTES);
    await writer.addDirectory("blobs");
    await writer.addDirectory("blobs/sha256");
  } catch (e) {
    await writer.abort();
    throw e;
  }
  return new ArchiveDestination(writer, options.format ?? "docker");
}

/**
 * A destination writing a docker-loadable archive (see {@linkcode openArchiveDestination}).
 *
 * @example
 * ```ts
 * import { openDockerArchiveDestination } from "./archive_destination.ts";
 * const dest = await openDockerArchiveDestination("/tmp/nginx.tar");
 * await dest.abort();
 * ```
 */
export function openDockerArchiveDestination(path: string): Promise<ArchiveDestination> {
  return openArchiveDestination(path, { format: "docker" });
}

/**
 * A destination writing an OCI layout archive (`oci-archive:`).
 *
 * @example
 * ```ts
 * import { openOciArchiveDestination } from "./archive_destination.ts";
 * const dest = await openOciArchiveDestination("/tmp/nginx-oci.tar");
 * await dest.abort();
 * ```
 */
export function openOciArchiveDestination(path: string): Promise<ArchiveDestination> {
  return openArchiveDestination(path, { format: "oci" });
}

/**
 * Writes images into one archive file; see {@linkcode openArchiveDestination}.
 *
 * @example
 * ```ts
 * import { openArchiveDestination } from "./archive_destination.ts";
 * const dest = await openArchiveDestination("/tmp/example.tar");
 * const config = new TextEncoder().encode('{"rootfs":{"type":"layers","diff_ids":[]}}');
 * const d = await dest.putBlob(new Blob([config]).stream(), {
 *   mediaType: "application/vnd.oci.image.config.v1+json",
 * });
 * const manifest = new TextEncoder().encode(JSON.stringify({
 *   schemaVersion: 2,
 *   mediaType: "application/vnd.oci.image.manifest.v1+json",
 *   config: d,
 *   layers: [],
 * }));
 * const { sha256Digest } = await import("../oci/digest.ts");
 * await dest.putManifest(manifest, {
 *   mediaType: "application/vnd.oci.image.manifest.v1+json",
 *   digest: sha256Digest(manifest),
 *   size: manifest.length,
 * }, "example:latest");
 * await dest.commit();
 * ```
 */
export class ArchiveDestination implements ImageDestination {
  /** The archive's final path. */
  readonly location: string;
  /** What kind of archive is written. */
  readonly format: ArchiveFormat;
  /** An OCI archive holds OCI media types only; a docker one keeps what `docker load` reads. */
  readonly ociOnly: boolean;
  #writer: TarWriter;
  #images: ImageSet;
  #done = new Map<string, Descriptor>();
  #inflight = new Map<string, Promise<Descriptor>>();
  #appending = new Set<string>();
  #slots = new Map<string, TarSlot>();
  #state: "open" | "committed" | "aborted" = "open";

  /** Use {@linkcode openArchiveDestination}. */
  constructor(writer: TarWriter, format: ArchiveFormat) {
    this.#writer = writer;
    this.location = writer.path;
    this.format = format;
    this.ociOnly = format === "oci";
    this.#images = new ImageSet(writer.path);
  }

  #checkOpen(): void {
    if (this.#state !== "open") {
      throw new ImagesError(`${this.location}: destination already ${this.#state}`, "STATE");
    }
  }

  /**
   * Whether this archive already holds the blob (written since it was created).
   *
   * @example
   * ```ts
   * import { openArchiveDestination } from "./archive_destination.ts";
   * const dest = await openArchiveDestination("/tmp/has.tar");
   * console.log(await dest.hasBlob({ mediaType: "x", digest: "sha256:" + "0".repeat(64), size: 0 }));
   * await dest.abort();
   * ```
   */
  hasBlob(descriptor: Descriptor): Promise<boolean> {
    return Promise.resolve(this.#done.has(descriptor.digest));
  }

  /**
   * Stores a blob under `blobs/sha256/<hex>`: streamed into its reserved place when
   * `info` gives digest and size, spooled first otherwise; verified in both cases.
   * A blob already stored is not written twice.
   *
   * @example
   * ```ts
   * import { openArchiveDestination } from "./archive_destination.ts";
   * const dest = await openArchiveDestination("/tmp/blob.tar");
   * const d = await dest.putBlob(new Blob(["layer"]).stream(), {
   *   mediaType: "application/vnd.oci.image.layer.v1.tar",
   * });
   * console.log(d.digest, d.size);
   * await dest.abort();
   * ```
   */
  async putBlob(
    stream: ReadableStream<Uint8Array>,
    info: BlobInfo,
    options: TransferOptions = {},
  ): Promise<Descriptor> {
    this.#checkOpen();
    const { digest, size } = info;
    if (digest === undefined || size === undefined) {
      if (digest !== undefined) checkDigest(digest, `blob for ${this.location}`);
      return await this.#putSpooled(stream, info, options);
    }
    checkDigest(digest, `blob for ${this.location}`);
    // Check and register synchronously, so two writers of one blob never both write it.
    for (;;) {
      const done = this.#done.get(digest);
      if (done) {
        await stream.cancel().catch(() => {});
        return { ...done, mediaType: info.mediaType };
      }
      const pending = this.#inflight.get(digest);
      if (!pending) break;
      await pending.catch(() => undefined); // on failure, this writer retries the slot
    }
    const work = this.#putReserved(stream, info.mediaType, digest, size, options);
    this.#inflight.set(digest, work);
    try {
      const descriptor = await work;
      this.#done.set(digest, descriptor);
      return descriptor;
    } finally {
      if (this.#inflight.get(digest) === work) this.#inflight.delete(digest);
    }
  }

  async #putReserved(
    stream: ReadableStream<Uint8Array>,
    mediaType: string,
    digest: string,
    size: number,
    options: TransferOptions,
  ): Promise<Descriptor> {
    let slot = this.#slots.get(digest);
    if (slot) slot.reset(); // a retry after a failed attempt rewrites the same place
    else {
      slot = await this.#writer.reserve(blobPath(digest), size);
      this.#slots.set(digest, slot);
    }
    const what = `blob ${digest} written to ${this.location}`;
    const check = new Verifier(
      { digest, size, what },
      new DigestCounter(vouchedDigest(stream, digest)),
    );
    const reader = stream.getReader();
    try {
      for (;;) {
        if (options.signal?.aborted) throw new AbortedError(`writing ${what}`);
        const { done, value } = await reader.read();
        if (done) break;
        check.update(value);
        await slot.write(value);
        options.onProgress?.(check.size);
      }
    } catch (e) {
      await reader.cancel(e).catch(() => {});
      throw e;
    }
    check.end();
    await slot.finish();
    return { mediaType, digest, size };
  }

  async #putSpooled(
    stream: ReadableStream<Uint8Array>,
    info: BlobInfo,
    options: TransferOptions,
  ): Promise<Descriptor> {
    const what = `blob written to ${this.location}`;
    const check = new Verifier(
      { digest: info.digest, size: info.size, what },
      new DigestCounter(vouchedDigest(stream, info.digest)),
    );
    const signal = options.signal;
    const spooled = await this.#writer.spool(stream, (chunk) => {
      if (signal?.aborted) throw new AbortedError(`writing a blob to ${this.location}`);
      check.update(chunk);
      options.onProgress?.(check.size);
    });
    let digest: string;
    try {
      digest = check.end();
    } catch (e) {
      await spooled.discard();
      throw e;
    }
    const descriptor = { mediaType: info.mediaType, digest, size: spooled.size };
    if (this.#done.has(digest) || this.#appending.has(digest) || this.#slots.has(digest)) {
      await spooled.discard();
      await this.#inflight.get(digest);
      return descriptor;
    }
    this.#appending.add(digest);
    try {
      await spooled.appendAs(blobPath(digest));
      this.#done.set(digest, descriptor);
    } finally {
      this.#appending.delete(digest);
    }
    return descriptor;
  }

  /**
   * Stores a manifest or index (checked against its descriptor) as a blob; with a
   * `name` it becomes a top-level image listed in `index.json` (and `manifest.json`).
   * Put the platform manifests of an index before the index itself.
   *
   * @example
   * ```ts
   * import { openArchiveDestination } from "./archive_destination.ts";
   * const dest = await openArchiveDestination("/tmp/manifest.tar");
   * // ... putBlob the config and layers, then:
   * // await dest.putManifest(bytes, descriptor, "nginx:latest");
   * await dest.abort();
   * ```
   */
  async putManifest(bytes: Uint8Array, descriptor: Descriptor, name?: string): Promise<void> {
    this.#checkOpen();
    const full = this.#images.add(bytes, descriptor, name);
    if (this.#done.has(full.digest) || this.#slots.has(full.digest)) return;
    const slot = await this.#writer.reserve(blobPath(full.digest), bytes.length);
    this.#slots.set(full.digest, slot);
    await slot.write(bytes);
    await slot.finish();
    this.#done.set(full.digest, full);
  }

  /**
   * Writes `index.json` (and, for the docker format, `manifest.json` and
   * `repositories`), ends the archive and renames it onto its path. Fails, leaving
   * nothing, when an image's blob was never written.
   *
   * @example
   * ```ts
   * import { openArchiveDestination } from "./archive_destination.ts";
   * const dest = await openArchiveDestination("/tmp/empty.tar");
   * await dest.commit(); // an archive holding no image
   * ```
   */
  async commit(): Promise<void> {
    this.#checkOpen();
    try {
      const tops = this.#images.tops();
      for (const [digest, what] of this.#images.requiredBlobs(tops)) {
        if (!this.#done.has(digest)) {
          throw new ImagesError(
            `${this.location}: blob ${digest} (${what}) was never written`,
            "BLOB_MISSING",
          );
        }
      }
      const index = {
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: tops.map((t) => t.descriptor),
      };
      await this.#writer.addFile("index.json", jsonBytes(index));
      if (this.format === "docker") {
        const files = dockerSaveFiles(this.#images.dockerRecords(tops));
        await this.#writer.addFile("manifest.json", files.manifest);
        await this.#writer.addFile("repositories", files.repositories);
      }
      await this.#writer.commit();
      this.#state = "committed";
    } catch (e) {
      await this.abort();
      throw e;
    }
  }

  /**
   * Discards the archive being written; a previous file at the path stays as it was.
   *
   * @example
   * ```ts
   * import { openArchiveDestination } from "./archive_destination.ts";
   * const dest = await openArchiveDestination("/tmp/discarded.tar");
   * await dest.abort();
   * ```
   */
  async abort(): Promise<void> {
    if (this.#state === "committed") return;
    this.#state = "aborted";
    await this.#writer.abort();
  }
}
