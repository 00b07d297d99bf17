/**
 * Reading images from local archives and layouts, with one code path for all of them:
 * `docker save` archives (Docker 24 and older, Docker 25+ with an OCI layout inside,
 * podman/buildah/skopeo `docker-archive:` with symlinked layers, hard links), OCI
 * layout archives (`oci-archive:`) and OCI layout directories (`oci:`).
 *
 * When `index.json` is present it gives the manifest or index as stored (every platform,
 * the manifests' own bytes and digests); otherwise a Docker schema 2 manifest is
 * synthesised for each image of `manifest.json`. Every blob streamed is checked against its digest and size, and an
 * uncompressed layer against its diffID, so a corrupt archive is never pushed.
 *
 * @module
 */

import { ArchiveError, DigestMismatchError, NotFoundError } from "../errors.ts";
import type { ImageSource, ResolvedImage, TransferOptions } from "../ends.ts";
import {
  sha256Digest,
  streamDigest,
  type VerifiedStream,
  verifiedStream,
  type VerifyFailure,
} from "../oci/digest.ts";
import {
  type Descriptor,
  type ImageIndex,
  MAX_MANIFEST_BYTES,
  parseConfig,
  parseManifest,
} from "../oci/manifest.ts";
import { detectCompression, layerMediaType, MediaType } from "../oci/media_types.ts";
import { type EntryStore, openEntryStore } from "./entry_store.ts";
import {
  blobPath,
  CONTAINERD_NAME_ANNOTATION,
  digestFromBlobPath,
  type DockerSaveImage,
  inEntry,
  jsonBytes,
  parseDockerSaveManifest,
  REF_NAME_ANNOTATION,
} from "./layout_files.ts";
import { familiarImageName, parseImageName, sameImageName } from "./names.ts";

/** What kind of local store a {@linkcode LocalSource} reads. */
export type LocalFormat = "docker-archive" | "docker-directory" | "oci-archive" | "oci-layout";

/** One image a local store holds, before it is resolved. */
interface Candidate {
  /** Names as stored, the preferred one first. */
  names: string[];
  /** A digest that also selects it (config digest for docker, manifest digest for OCI). */
  id?: string;
  /** For `docker save`: the `manifest.json` entry. */
  docker?: DockerSaveImage;
  /** For OCI layouts: the `index.json` descriptor. */
  descriptor?: Descriptor;
}

/** A blob the source knows how to serve and check. */
interface KnownBlob {
  /** The entry it is read from (as listed, links are followed by the store). */
  entry: string;
  size: number;
  digest: string;
  /** Says what is wrong when the bytes hash to `actual` instead. */
  problem: (actual: string) => string;
}

const HEAD_BYTES = 8;

/**
 * Opens a local archive or layout directory as an {@linkcode ImageSource}: a directory
 * is read as an OCI layout (or an unpacked `docker save`), a file as a tar archive
 * (`docker save` when it holds `manifest.json`, else an OCI layout archive).
 *
 * @example
 * ```ts ignore
 * import { openLocalSource } from "./local_source.ts";
 * const source = await openLocalSource("nginx.tar");
 * try {
 *   console.log(await source.names()); // ["nginx:latest"]
 *   const image = await source.resolve("nginx:latest");
 *   console.log(image.descriptor.digest);
 * } finally {
 *   await source.close();
 * }
 * ```
 */
export async function openLocalSource(path: string): Promise<LocalSource> {
  const store = await openEntryStore(path);
  try {
    return await LocalSource.fromStore(store);
  } catch (e) {
    await store.close();
    throw e;
  }
}

/**
 * An image source over a local archive or layout directory; see {@linkcode openLocalSource}.
 *
 * @example
 * ```ts ignore
 * import { openLocalSource } from "./local_source.ts";
 * const source = await openLocalSource("oci-dir");
 * console.log(source.format); // "oci-layout"
 * await source.close();
 * ```
 */
export class LocalSource implements ImageSource {
  /** The path of the archive or directory. */
  readonly location: string;
  /** What kind of store it is. */
  readonly format: LocalFormat;
  #store: EntryStore;
  #images: Candidate[];
  #blobs = new Map<string, KnownBlob>();
  #manifests = new Map<string, Uint8Array>();
  #hashed = new Map<string, Promise<string>>();

  private constructor(store: EntryStore, format: LocalFormat, images: Candidate[]) {
    this.#store = store;
    this.location = store.location;
    this.format = format;
    this.#images = images;
  }

  /**
   * Reads the catalog (`manifest.json` or `index.json`) of an opened entry store.
   *
   * @example
   * ```ts ignore
   * import { openEntryStore } from "./entry_store.ts";
   * import { LocalSource } from "./local_source.ts";
   * const source = await LocalSource.fromStore(await openEntryStore("image.tar"));
   * await source.close();
   * ```
   */
  static async fromStore(store: EntryStore): Promise<LocalSource> {
    const file = store.location;
    const tar = store.kind === "tar";
    // index.json first: it holds every platform and the manifests' own bytes, where the
    // manifest.json beside it (Docker 25+, `ctr images export`) describes one platform.
    if (!(await store.stat("index.json")) && await store.stat("manifest.json")) {
      const saved = parseDockerSaveManifest(
        await store.read("manifest.json", MAX_MANIFEST_BYTES),
        file,
      );
      const images = saved.map((docker): Candidate => {
        const hex = /([a-f0-9]{64})(?:\.json)?$/.exec(docker.config)?.[1];
        return { names: docker.repoTags, id: hex && `sha256:${hex}`, docker };
      });
      return new LocalSource(store, tar ? "docker-archive" : "docker-directory", images);
    }
    if (!(await store.stat("index.json"))) {
      // Neither file.
      throw new ArchiveError(
        file,
        "manifest.json",
        "not found, and no index.json either: this is neither a docker save archive nor an OCI layout",
      );
    }
    const bytes = await store.read("index.json", MAX_MANIFEST_BYTES);
    const parsed = inEntry(file, "index.json", () => parseManifest(bytes, "index.json"));
    if (parsed.kind !== "index") {
      throw new ArchiveError(file, "index.json", "is a manifest, expected an image index");
    }
    const images = parsed.index.manifests.map((descriptor): Candidate => {
      const full = descriptor.annotations?.[CONTAINERD_NAME_ANNOTATION];
      const names = [
        // Shown as docker shows it (`app:1`, not `docker.io/library/app:1`); matching
        // compares full names either way.
        full === undefined ? undefined : familiarImageName(full) ?? full,
        descriptor.annotations?.[REF_NAME_ANNOTATION],
      ].filter((n): n is string => typeof n === "string" && n !== "");
      return { names: [...new Set(names)], id: descriptor.digest, descriptor };
    });
    return new LocalSource(store, tar ? "oci-archive" : "oci-layout", images);
  }

  /**
   * The names of the images held, as stored (`RepoTags`, `io.containerd.image.name`, or
   * else `org.opencontainers.image.ref.name`).
   *
   * @example
   * ```ts ignore
   * import { openLocalSource } from "./local_source.ts";
   * const source = await openLocalSource("images.tar");
   * console.log(await source.names());
   * await source.close();
   * ```
   */
  names(): Promise<string[]> {
    const names = this.#images.flatMap((image) =>
      image.docker ? image.names : image.names.slice(0, 1)
    );
    return Promise.resolve([...new Set(names)]);
  }

  #describe(image: Candidate): string {
    if (image.names.length > 0) return image.names.join(" = ");
    return `an unnamed image (${image.docker ? "config" : "manifest"} ${image.id ?? "?"})`;
  }

  #inventory(): string {
    return this.#images.map((i) => this.#describe(i)).join(", ");
  }

  /** Finds the image a name asks for, or the only one. */
  #select(name?: string): Candidate {
    const images = this.#images;
    if (name === undefined || name === "") {
      if (images.length === 1) return images[0];
      if (images.length === 0) throw new ArchiveError(this.location, undefined, "holds no image");
      throw new NotFoundError(
        `${this.location} holds ${images.length} images; say which one: ${this.#inventory()}`,
      );
    }
    // An image ID (`docker save <id>` keeps no name): its hex, or 12+ digits of it.
    const id = /^(?:sha256:)?([a-f0-9]{12,64})(?::latest)?$/.exec(name)?.[1];
    let matches = images.filter((image) =>
      image.id === name || (id !== undefined && image.id?.startsWith(`sha256:${id}`)) ||
      image.names.some((stored) => sameImageName(stored, name))
    );
    if (matches.length === 0) {
      // A tag-only ref name (`v1`, as Docker writes it) matches `anything:v1` when the
      // image has no full name to compare with.
      const tag = parseImageName(name)?.tag;
      matches = images.filter((image) =>
        tag !== undefined && image.descriptor !== undefined &&
        image.descriptor.annotations?.[CONTAINERD_NAME_ANNOTATION] === undefined &&
        image.names.some((n) => n === tag)
      );
    }
    // One image and no name to tell it by (`buildah push IMG oci-archive:F`, `docker save
    // <id>`): the only candidate is the one meant.
    if (matches.length === 0 && images.length === 1 && images[0].names.length === 0) {
      matches = images;
    }
    if (matches.length === 0) {
      throw new NotFoundError(
        `${name} not found in ${this.location}; it holds: ${this.#inventory()}`,
      );
    }
    const distinct = new Set(matches.map((m) => m.descriptor?.digest ?? m.docker?.config));
    if (distinct.size > 1) {
      throw new ArchiveError(
        this.location,
        undefined,
        `${name} is ambiguous: it names ${matches.length} different images (${
          matches.map((m) => m.id).join(", ")
        })`,
      );
    }
    return matches[0];
  }

  /**
   * The manifest or index of the image called `name` (or of the only image). For a
   * `docker save` archive a Docker schema 2 manifest is synthesised from `manifest.json`
   * and the config, after checking the config, the layers' presence and their count
   * against `rootfs.diff_ids`.
   *
   * @example
   * ```ts ignore
   * import { openLocalSource } from "./local_source.ts";
   * const source = await openLocalSource("image.tar");
   * const { descriptor, bytes } = await source.resolve();
   * console.log(descriptor.mediaType, bytes.length);
   * await source.close();
   * ```
   */
  async resolve(name?: string): Promise<ResolvedImage> {
    const image = this.#select(name);
    const chosen = name !== undefined && name !== ""
      ? image.names.find((n) => sameImageName(n, name)) ?? name
      : image.names[0];
    const resolved = image.docker
      ? await this.#resolveDocker(image.docker)
      : await this.#resolveOci(image.descriptor!);
    return chosen === undefined ? resolved : { ...resolved, name: chosen };
  }

  async #resolveDocker(image: DockerSaveImage): Promise<ResolvedImage> {
    const file = this.location;
    const store = this.#store;
    const configFile = await store.stat(image.config);
    if (!configFile) {
      throw new ArchiveError(
        file,
        image.config,
        "config listed in manifest.json is not in the archive",
      );
    }
    const configBytes = await store.read(image.config, MAX_MANIFEST_BYTES);
    const configDigest = sha256Digest(configBytes);
    const named = digestFromBlobPath(configFile.resolved) ?? digestFromBlobPath(configFile.name);
    if (named !== undefined && named !== configDigest) {
      throw new ArchiveError(
        file,
        image.config,
        `SHA-256 is ${configDigest}, not the ${named} its name says (corrupt archive?)`,
      );
    }
    const config = inEntry(file, image.config, () => parseConfig(configBytes, image.config));
    const diffIds = config.rootfs.diff_ids;
    if (diffIds.length !== image.layers.length) {
      throw new ArchiveError(
        file,
        "manifest.json",
        `image ${image.repoTags[0] ?? image.config} lists ${image.layers.length} layers, ` +
          `but its config ${image.config} has ${diffIds.length} rootfs.diff_ids`,
      );
    }
    this.#blobs.set(configDigest, {
      entry: image.config,
      size: configBytes.length,
      digest: configDigest,
      problem: (actual) => `SHA-256 is ${actual}, not the config digest ${configDigest}`,
    });
    const layers: Descriptor[] = [];
    for (const [i, layer] of image.layers.entries()) {
      const found = await store.stat(layer);
      if (!found) {
        throw new ArchiveError(
          file,
          layer,
          `layer ${i} listed in manifest.json is not in the archive`,
        );
      }
      const compression = detectCompression(await store.head(layer, HEAD_BYTES));
      const diffId = diffIds[i];
      const byName = digestFromBlobPath(found.resolved) ?? digestFromBlobPath(found.name);
      let digest: string;
      let problem: (actual: string) => string;
      if (compression === "none") {
        if (byName !== undefined && byName !== diffId) {
          throw new ArchiveError(
            file,
            layer,
            `uncompressed layer is named ${byName}, but its diffID (rootfs.diff_ids[${i}] of ` +
              `${image.config}) is ${diffId}`,
          );
        }
        digest = diffId;
        problem = (actual) =>
          `uncompressed layer's SHA-256 is ${actual}, not its diffID ${diffId} ` +
          `(rootfs.diff_ids[${i}] of ${image.config})`;
      } else if (byName !== undefined) {
        digest = byName;
        problem = (actual) => `SHA-256 is ${actual}, not the ${byName} its name says`;
      } else {
        digest = await this.#hashOnce(layer, found.resolved);
        problem = (actual) => `SHA-256 is ${actual}, was ${digest} when the archive was opened`;
      }
      this.#blobs.set(digest, { entry: layer, size: found.size, digest, problem });
      layers.push({ mediaType: layerMediaType(compression, "docker"), size: found.size, digest });
    }
    const manifest = {
      schemaVersion: 2,
      mediaType: MediaType.DockerManifest,
      config: { mediaType: MediaType.DockerConfig, size: configBytes.length, digest: configDigest },
      layers,
    };
    const bytes = jsonBytes(manifest);
    const digest = sha256Digest(bytes);
    this.#manifests.set(digest, bytes);
    return {
      descriptor: { mediaType: MediaType.DockerManifest, digest, size: bytes.length },
      bytes,
    };
  }

  /** Hashes an entry once (compressed layers not named by their digest). */
  #hashOnce(entry: string, resolved: string): Promise<string> {
    let pending = this.#hashed.get(resolved);
    if (!pending) {
      pending = (async () => {
        return await streamDigest(await this.#store.stream(entry));
      })();
      this.#hashed.set(resolved, pending);
    }
    return pending;
  }

  /** Reads a small blob of a layout by descriptor, checking its size and digest. */
  async #readBlob(descriptor: Descriptor, what: string): Promise<Uint8Array> {
    const entry = blobPath(descriptor.digest);
    const found = await this.#store.stat(entry);
    if (!found) throw new ArchiveError(this.location, entry, `${what} is not in the archive`);
    if (found.size !== descriptor.size) {
      throw new ArchiveError(
        this.location,
        entry,
        `is ${found.size} bytes, but the ${what}'s descriptor says ${descriptor.size}`,
      );
    }
    const bytes = await this.#store.read(entry, MAX_MANIFEST_BYTES);
    const actual = sha256Digest(bytes);
    if (actual !== descriptor.digest) {
      throw new ArchiveError(
        this.location,
        entry,
        `SHA-256 is ${actual}, not the ${descriptor.digest} its name and descriptor say`,
        { cause: new DigestMismatchError(entry, descriptor.digest, actual) },
      );
    }
    return bytes;
  }

  async #resolveOci(descriptor: Descriptor): Promise<ResolvedImage> {
    const file = this.location;
    const entry = blobPath(descriptor.digest);
    const bytes = await this.#readBlob(descriptor, "manifest listed in index.json");
    const parsed = inEntry(file, entry, () => parseManifest(bytes, entry, descriptor.mediaType));
    if (parsed.kind === "manifest") await this.#checkOciManifest(parsed.manifest, entry);
    else return await this.#resolvePresent(descriptor, bytes, parsed.index);
    const { mediaType: _m, digest, size, platform } = descriptor;
    return {
      descriptor: { mediaType: parsed.mediaType, digest, size, ...(platform ? { platform } : {}) },
      bytes,
    };
  }

  /**
   * An index as stored when the archive holds every platform it lists; else the part
   * that is there (`ctr images export` without `--all-platforms` keeps the whole index
   * but one platform's blobs): the one platform manifest as stored, or an index of those
   * present (a new digest), so nothing absent is ever pushed or named.
   */
  async #resolvePresent(
    descriptor: Descriptor,
    bytes: Uint8Array,
    index: ImageIndex,
  ): Promise<ResolvedImage> {
    const held: Descriptor[] = [];
    for (const child of index.manifests) {
      if (await this.#store.stat(blobPath(child.digest))) held.push(child);
    }
    const { digest, size } = descriptor;
    const mediaType = descriptor.mediaType;
    if (held.length === index.manifests.length) {
      return { descriptor: { mediaType, digest, size }, bytes };
    }
    if (held.length === 0) {
      throw new ArchiveError(
        this.location,
        blobPath(digest),
        `none of the ${index.manifests.length} manifests this index lists is in the archive`,
      );
    }
    if (held.length === 1) return await this.#resolveOci(held[0]);
    const reduced = jsonBytes({ ...index, manifests: held });
    const reducedDigest = sha256Digest(reduced);
    this.#manifests.set(reducedDigest, reduced);
    return {
      descriptor: { mediaType, digest: reducedDigest, size: reduced.length },
      bytes: reduced,
    };
  }

  /** Checks that an OCI manifest's config and layers are present and agree. */
  async #checkOciManifest(
    manifest: { config: Descriptor; layers: Descriptor[] },
    entry: string,
  ): Promise<void> {
    const file = this.location;
    const configBytes = await this.#readBlob(manifest.config, `config of ${entry}`);
    const configEntry = blobPath(manifest.config.digest);
    const config = inEntry(file, configEntry, () => parseConfig(configBytes, configEntry));
    if (config.rootfs.diff_ids.length !== manifest.layers.length) {
      throw new ArchiveError(
        file,
        entry,
        `lists ${manifest.layers.length} layers, but its config has ` +
          `${config.rootfs.diff_ids.length} rootfs.diff_ids`,
      );
    }
    for (const [i, layer] of manifest.layers.entries()) {
      const path = blobPath(layer.digest);
      const found = await this.#store.stat(path);
      if (!found) {
        throw new ArchiveError(file, path, `layer ${i} of ${entry} is not in the archive`);
      }
      if (found.size !== layer.size) {
        throw new ArchiveError(
          file,
          path,
          `is ${found.size} bytes, but layer ${i} of ${entry} says ${layer.size}`,
        );
      }
    }
  }

  /**
   * The bytes of a manifest by descriptor (e.g. a platform manifest of an index),
   * checked against the descriptor's digest and size.
   *
   * @example
   * ```ts ignore
   * import { openLocalSource } from "./local_source.ts";
   * import { parseManifest } from "../oci/manifest.ts";
   * const source = await openLocalSource("multi.tar");
   * const top = await source.resolve();
   * const parsed = parseManifest(top.bytes, "index");
   * if (parsed.kind === "index") await source.fetchManifest(parsed.index.manifests[0]);
   * await source.close();
   * ```
   */
  async fetchManifest(descriptor: Descriptor): Promise<Uint8Array> {
    const synthesised = this.#manifests.get(descriptor.digest);
    if (synthesised) return synthesised;
    const entry = blobPath(descriptor.digest);
    const bytes = await this.#readBlob(descriptor, "manifest");
    const parsed = inEntry(
      this.location,
      entry,
      () => parseManifest(bytes, entry, descriptor.mediaType),
    );
    if (parsed.kind === "manifest") await this.#checkOciManifest(parsed.manifest, entry);
    return bytes;
  }

  /**
   * A blob's bytes as stored, read with bounded memory; the stream fails with an
   * {@linkcode ArchiveError} naming the entry when the bytes do not hash to the
   * descriptor's digest (for an uncompressed `docker save` layer: to its diffID).
   *
   * @example
   * ```ts ignore
   * import { openLocalSource } from "./local_source.ts";
   * import { parseManifest } from "../oci/manifest.ts";
   * const source = await openLocalSource("image.tar");
   * const image = await source.resolve();
   * const parsed = parseManifest(image.bytes, "manifest");
   * if (parsed.kind === "manifest") {
   *   const stream = await source.fetchBlob(parsed.manifest.layers[0]);
   *   await stream.pipeTo(new WritableStream());
   * }
   * await source.close();
   * ```
   */
  async fetchBlob(
    descriptor: Descriptor,
    options: TransferOptions = {},
  ): Promise<VerifiedStream> {
    let known = this.#blobs.get(descriptor.digest);
    if (!known) {
      const entry = blobPath(descriptor.digest);
      const found = await this.#store.stat(entry);
      if (!found) {
        throw new ArchiveError(
          this.location,
          entry,
          `blob ${descriptor.digest} is not in the archive`,
        );
      }
      known = {
        entry,
        size: found.size,
        digest: descriptor.digest,
        problem: (actual) => `SHA-256 is ${actual}, not the ${descriptor.digest} its name says`,
      };
    }
    if (known.size !== descriptor.size) {
      throw new ArchiveError(
        this.location,
        known.entry,
        `is ${known.size} bytes, but the descriptor of ${descriptor.digest} says ${descriptor.size}`,
      );
    }
    const stream = await this.#store.stream(known.entry, { signal: options.signal });
    const file = this.location;
    const entry = known.entry;
    const { size, problem } = known;
    // The archive's own wording, naming the entry.
    const failure = (f: VerifyFailure): Error => {
      switch (f.kind) {
        case "longer":
          return new ArchiveError(file, entry, `holds more than its ${size} bytes`);
        case "shorter":
          return new ArchiveError(file, entry, `truncated: ${f.got} of ${size} bytes`);
        case "digest":
          return new ArchiveError(file, entry, problem(f.actual), {
            cause: new DigestMismatchError(`${file}: ${entry}`, f.expected, f.actual),
          });
      }
    };
    return verifiedStream(
      stream,
      { digest: known.digest, size, what: entry, failure },
      options.onProgress,
    );
  }

  /**
   * Closes the archive file.
   *
   * @example
   * ```ts ignore
   * import { openLocalSource } from "./local_source.ts";
   * const source = await openLocalSource("image.tar");
   * await source.close();
   * ```
   */
  close(): Promise<void> {
    return this.#store.close();
  }
}
