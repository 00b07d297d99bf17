/**
 * A `docker save` or OCI archive read once, front to back, from a stream (standard
 * input, or a gzip-compressed archive), with no temporary file: every layer is handed to
 * `sendLayer` (which compresses and uploads it) as it passes, the small files (configs,
 * manifests, `manifest.json`, `index.json`) are kept in memory, and when the stream ends
 * the archive is an {@linkcode LocalSource} like any other, whose layers the destination
 * already holds.
 *
 * `docker save` (Docker 24 and older) writes `manifest.json` last, so which image a
 * layer belongs to is known only at the end: every layer of the archive is sent, and the
 * push commits once the catalog has arrived and checked out (a layer's bytes against its
 * name or diffID, as for a file).
 *
 * @module
 */

import { ArchiveError } from "../errors.ts";
import type { Descriptor } from "../oci/manifest.ts";
import { MAX_MANIFEST_BYTES } from "../oci/manifest.ts";
import { DigestCounter, verifyingStream } from "../oci/digest.ts";
import { concatBytes, readAll, streamOf } from "../streams.ts";
import { detectCompression } from "../oci/media_types.ts";
import type { EntryStore, StoredFile } from "./entry_store.ts";
import { blobPath, digestFromBlobPath } from "./layout_files.ts";
import { LocalSource } from "./local_source.ts";
import {
  archiveDirname,
  normalizeArchivePath,
  resolveSymlinkTarget,
  showPath,
} from "./tar_path.ts";
import { readTarStream } from "./tar_stream.ts";

/** Options of {@linkcode readArchiveStream}. */
export interface ArchiveStreamOptions {
  /** Names the stream in messages, e.g. `standard input`. */
  location: string;
  /**
   * Sends one layer on as its bytes pass (`head` holds its first bytes, to tell its
   * compression; `entry` names it and gives its size, for progress); resolves with the
   * descriptor it has where it went.
   */
  sendLayer(
    data: ReadableStream<Uint8Array>,
    head: Uint8Array,
    entry: { name: string; size: number },
  ): Promise<Descriptor>;
  /** Cancels the reading. */
  signal?: AbortSignal;
}

/** What reading the stream gave. */
export interface StreamedArchive {
  /** The archive as a source (its layers cannot be read again: the destination has them). */
  source: LocalSource;
  /** Each layer sent: its digest as it was in the archive → where it went. */
  sent: Map<string, Descriptor>;
}

const GZIP = [0x1f, 0x8b];
const HEAD = 512;
const MAX_LINK_HOPS = 64;

type Entry =
  | { kind: "bytes"; bytes: Uint8Array }
  | { kind: "sent"; size: number; digest: string; head: Uint8Array }
  | { kind: "skipped"; size: number }
  | { kind: "link"; target: string };

/** Whether the first bytes of an entry are a layer: compressed, or a tar. */
function looksLikeLayer(head: Uint8Array, size: number): boolean {
  if (detectCompression(head) !== "none") return true;
  const magic = new TextDecoder().decode(head.subarray(257, 262));
  if (magic === "ustar") return true;
  // An empty layer: the two zero blocks that end a tar, and nothing else.
  return size === 1024 && head.length >= 512 && head.every((b) => b === 0);
}

/** The first `n` bytes of a stream, and a stream of all of it (those bytes included). */
async function peek(
  stream: ReadableStream<Uint8Array>,
  n: number,
): Promise<{ head: Uint8Array; whole: ReadableStream<Uint8Array> }> {
  const reader = stream.getReader();
  const parts: Uint8Array[] = [];
  let have = 0;
  let ended = false;
  while (have < n) {
    const { done, value } = await reader.read();
    if (done) {
      ended = true;
      break;
    }
    parts.push(value);
    have += value.length;
  }
  const head = concatBytes(parts);
  const whole = new ReadableStream<Uint8Array>({
    start(controller) {
      if (head.length > 0) controller.enqueue(head);
      if (ended) controller.close();
    },
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
  return { head: head.subarray(0, n), whole };
}

/**
 * Reads an archive from a stream (gzip-compressed or not), sending its layers on as they
 * pass; see the module documentation.
 *
 * @example
 * ```ts ignore
 * import { readArchiveStream } from "./stream_input.ts";
 * const { source } = await readArchiveStream(stdin, {
 *   location: "standard input",
 *   sendLayer: (data) => destination.putBlob(data, { mediaType: "application/octet-stream" }),
 * });
 * console.log(await source.names());
 * ```
 */
export async function readArchiveStream(
  input: ReadableStream<Uint8Array>,
  options: ArchiveStreamOptions,
): Promise<StreamedArchive> {
  const file = options.location;
  let { head, whole } = await peek(input, 2);
  if (head[0] === GZIP[0] && head[1] === GZIP[1]) {
    whole = whole.pipeThrough(
      new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
    );
  }
  const entries = new Map<string, Entry>();
  const sent = new Map<string, Descriptor>();
  for await (const entry of readTarStream(whole, file)) {
    if (options.signal?.aborted) throw options.signal.reason;
    entries.delete(entry.name); // a later entry replaces an earlier one, as `tar x` does
    if (entry.type === "symlink") {
      const target = resolveSymlinkTarget(archiveDirname(entry.name), entry.linkname ?? "");
      if (target === undefined) {
        throw new ArchiveError(
          file,
          showPath(entry.name),
          `symlink -> ${showPath(entry.linkname ?? "")} points outside the archive`,
        );
      }
      entries.set(entry.name, { kind: "link", target });
      continue;
    }
    if (entry.type === "hardlink") {
      entries.set(entry.name, { kind: "link", target: entry.linkname! });
      continue;
    }
    if (entry.type !== "file") continue;
    const peeked = await peek(entry.data, HEAD);
    if (looksLikeLayer(peeked.head, entry.size)) {
      const counter = new DigestCounter();
      const counted = peeked.whole.pipeThrough(verifyingStream({ what: entry.name }, counter));
      const stored = await options.sendLayer(counted, peeked.head, entry);
      const digest = counter.digest();
      if (counter.size !== entry.size) {
        throw new ArchiveError(file, showPath(entry.name), "was not read to its end");
      }
      const named = digestFromBlobPath(entry.name);
      if (named !== undefined && named !== digest) {
        throw new ArchiveError(
          file,
          showPath(entry.name),
          `SHA-256 is ${digest}, not the ${named} its name says (corrupt archive?)`,
        );
      }
      sent.set(digest, stored);
      entries.set(entry.name, { kind: "sent", size: entry.size, digest, head: peeked.head });
    } else if (entry.size <= MAX_MANIFEST_BYTES) {
      const bytes = await readAll(peeked.whole, MAX_MANIFEST_BYTES, showPath(entry.name));
      entries.set(entry.name, { kind: "bytes", bytes });
    } else {
      await peeked.whole.cancel();
      entries.set(entry.name, { kind: "skipped", size: entry.size });
    }
  }
  const store = new StreamedEntryStore(file, entries);
  return { source: await LocalSource.fromStore(store), sent };
}

/** The entries of a streamed archive, as an {@linkcode EntryStore}. */
class StreamedEntryStore implements EntryStore {
  readonly location: string;
  readonly kind = "tar" as const;
  #entries: Map<string, Entry>;

  constructor(location: string, entries: Map<string, Entry>) {
    this.location = location;
    this.#entries = entries;
  }

  /** The entry a name leads to (links followed) and its name. */
  #find(asked: string): { name: string; entry: Entry } | undefined {
    let name = normalizeArchivePath(asked);
    if (name === undefined) {
      throw new ArchiveError(this.location, showPath(asked), "path leaves the archive");
    }
    for (let hops = 0; hops <= MAX_LINK_HOPS; hops++) {
      const entry = this.#entries.get(name);
      if (!entry) {
        if (hops === 0) return undefined;
        throw new ArchiveError(
          this.location,
          showPath(asked),
          `is a link to ${showPath(name)}, which is not in the archive`,
        );
      }
      if (entry.kind !== "link") return { name, entry };
      name = entry.target;
    }
    throw new ArchiveError(this.location, showPath(asked), "too many levels of links");
  }

  stat(name: string): Promise<StoredFile | undefined> {
    const found = this.#find(name);
    if (!found) return Promise.resolve(undefined);
    const { entry } = found;
    const normal = normalizeArchivePath(name)!;
    if (entry.kind === "bytes") {
      return Promise.resolve({ name: normal, resolved: found.name, size: entry.bytes.length });
    }
    // A layer sent on is known by its digest, as a layout names it: that is what a
    // reader checks it against (its diffID, or the digest its name says).
    const size = entry.kind === "link" ? 0 : entry.size;
    const resolved = entry.kind === "sent" ? blobPath(entry.digest) : found.name;
    return Promise.resolve({ name: normal, resolved, size });
  }

  #bytes(name: string): Uint8Array {
    const found = this.#find(name);
    if (!found) throw new ArchiveError(this.location, showPath(name), "not in the archive");
    if (found.entry.kind === "bytes") return found.entry.bytes;
    throw new ArchiveError(
      this.location,
      showPath(name),
      found.entry.kind === "sent"
        ? "was sent on as the stream passed and cannot be read again"
        : "is too large to be kept from a stream",
    );
  }

  read(name: string, maxBytes: number): Promise<Uint8Array> {
    const bytes = this.#bytes(name);
    if (bytes.length > maxBytes) {
      throw new ArchiveError(this.location, showPath(name), `is over ${maxBytes} bytes`);
    }
    return Promise.resolve(bytes);
  }

  head(name: string, length: number): Promise<Uint8Array> {
    const found = this.#find(name);
    if (found?.entry.kind === "sent") return Promise.resolve(found.entry.head.subarray(0, length));
    return Promise.resolve(this.#bytes(name).subarray(0, length));
  }

  stream(name: string): Promise<ReadableStream<Uint8Array>> {
    return Promise.resolve(streamOf(this.#bytes(name)));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
