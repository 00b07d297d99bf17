/**
 * The two ends of every copy: where an image is read from and where it is written.
 *
 * A `docker save` archive, an OCI layout (directory or tar) and a registry repository
 * are each an {@linkcode ImageSource} and an {@linkcode ImageDestination}; push and
 * pull are one copy between two of them.
 *
 * @module
 */

import type { VerifiedStream } from "./oci/digest.ts";
import type { Descriptor } from "./oci/manifest.ts";

/** The top-level manifest or index of one image held by a source. */
export interface ResolvedImage {
  /** The name it was found under (e.g. `nginx:latest`), if it has one. */
  name?: string;
  /** Descriptor of the manifest or index: media type, digest and size of `bytes`. */
  descriptor: Descriptor;
  /** The manifest or index exactly as stored, so its digest is kept. */
  bytes: Uint8Array;
}

/** Options of a blob transfer. */
export interface TransferOptions {
  /** Cancels the transfer. */
  signal?: AbortSignal;
  /** Called with the number of bytes moved so far. */
  onProgress?: (bytes: number) => void;
  /**
   * Opens the same bytes again from the start, so a destination that lost a transfer
   * part-way (a dropped connection) can resend or recompute them instead of failing.
   */
  reopen?: () => Promise<ReadableStream<Uint8Array>>;
  /**
   * Stops the transfer at a point it can be resumed from by a later process (between
   * two chunks), keeping what the destination holds; it rejects with an `ImagesError`
   * of code `SUSPENDED`. Destinations that cannot resume ignore it.
   */
  suspend?: AbortSignal;
  /**
   * Names the transfer for a destination that saves unfinished uploads (a registry): the
   * digest of the bytes `reopen` recomputes the blob from, how they are turned into it,
   * and about how many bytes there are (to decide whether saving is worth it).
   */
  resumeKey?: { source: string; settings: string; sizeHint?: number };
  /** Told that a saved upload is resumed at `offset` bytes (those are not sent again). */
  onResume?: (offset: number) => void;
}

/**
 * A place images are read from.
 *
 * @example
 * ```ts
 * import type { ImageSource } from "./ends.ts";
 * async function show(source: ImageSource): Promise<void> {
 *   console.log(await source.names());
 *   const image = await source.resolve();
 *   console.log(image.descriptor.digest);
 *   await source.close();
 * }
 * ```
 */
export interface ImageSource {
  /** Where the source is (a path or a URL), for messages. */
  readonly location: string;
  /** The names of the images it holds, e.g. `["nginx:latest"]`. */
  names(): Promise<string[]>;
  /**
   * The manifest or index of the image called `name`; without a name, the only image
   * (an error listing the names when there are several or the name is not found).
   */
  resolve(name?: string): Promise<ResolvedImage>;
  /** The bytes of a manifest an index refers to, verified against its descriptor. */
  fetchManifest(descriptor: Descriptor): Promise<Uint8Array>;
  /**
   * A blob's bytes as stored (a compressed layer stays compressed), failing the stream
   * when the bytes do not match the descriptor's digest and size: a
   * {@linkcode VerifiedStream}, which a destination does not hash again.
   */
  fetchBlob(descriptor: Descriptor, options?: TransferOptions): Promise<VerifiedStream>;
  /** Releases open files and connections. */
  close(): Promise<void>;
}

/** What is known of a blob before it is written. */
export interface BlobInfo {
  /** Media type of the blob. */
  mediaType: string;
  /** Its digest, when known before the bytes are seen. */
  digest?: string;
  /** Its size, when known before the bytes are seen. */
  size?: number;
}

/**
 * A place images are written to. Nothing becomes visible before `commit`; `abort`
 * removes everything written since the destination was opened.
 *
 * @example
 * ```ts
 * import type { ImageDestination } from "./ends.ts";
 * async function store(dest: ImageDestination, config: Uint8Array<ArrayBuffer>): Promise<void> {
 *   const blob = new Blob([config]).stream();
 *   const d = await dest.putBlob(blob, { mediaType: "application/vnd.oci.image.config.v1+json" });
 *   console.log(d.digest);
 *   await dest.commit();
 * }
 * ```
 */
export interface ImageDestination {
  /** Where the destination is (a path or a URL), for messages. */
  readonly location: string;
  /**
   * Holds OCI media types only (an OCI layout or archive): Docker manifests and indexes
   * are converted to OCI ones on the way in (configs and layers keep their bytes).
   */
  readonly ociOnly?: boolean;
  /** Whether the destination already holds this blob (so it need not be sent). */
  hasBlob(descriptor: Descriptor, signal?: AbortSignal): Promise<boolean>;
  /**
   * Whether the destination holds this manifest with every blob it names (so storing it
   * under a name is all a copy has to do). Optional: without it, blobs are checked.
   */
  hasManifest?(descriptor: Descriptor, signal?: AbortSignal): Promise<boolean>;
  /**
   * Stores a blob; the digest and size are computed while the bytes stream and checked
   * against `info` where it gives them. Returns the blob's full descriptor.
   */
  putBlob(
    stream: ReadableStream<Uint8Array>,
    info: BlobInfo,
    options?: TransferOptions,
  ): Promise<Descriptor>;
  /**
   * Stores a manifest or index. `name` (a tag or reference) is given for the image's
   * top-level manifest only; manifests inside an index are stored by digest.
   */
  putManifest(bytes: Uint8Array, descriptor: Descriptor, name?: string): Promise<void>;
  /** Makes everything written visible at once. */
  commit(): Promise<void>;
  /** Discards everything written; the previous state stays in place. */
  abort(): Promise<void>;
}
