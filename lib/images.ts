/**
 * `Images`: the Apolo SDK's Images API (push, pull, digest, rm, list, tags, size,
 * tagInfo) on the copy engine, the local store and the registry client. No Docker
 * daemon is involved: local images are archives or OCI layouts on disk.
 *
 * @module
 */

import { stat } from "node:fs/promises";
import {
  ImageNotFoundError,
  ImagesError,
  InvalidReferenceError,
  PinnedDigestError,
} from "./errors.ts";
import { parseManifest, type Platform } from "./oci/manifest.ts";
import { copyImage } from "./copy/copy.ts";
import { findPlatform, hostPlatform } from "./oci/platform.ts";
import { BlobCache, defaultCacheDir } from "./blobcache/blob_cache.ts";
import { UploadRecords } from "./blobcache/upload_records.ts";
import { mapConcurrent } from "./copy/pool.ts";
import { isStreamedInput, openStreamedInput } from "./copy/streamed_input.ts";
import { CompressorPool } from "./compression/parallel_compress.ts";
import type { GzipEngineChoice, LayerCompression } from "./compression/engines.ts";
import type { ImageDestination, ImageSource, ResolvedImage } from "./ends.ts";
import { RegistryDestination, RegistrySource } from "./registry/registry_end.ts";
import { type AbstractDockerImageProgress, StepThrottle } from "./progress.ts";
import { ImageNameParser } from "./reference/parser.ts";
import { LocalImage } from "./reference/local_image.ts";
import { RemoteImage } from "./reference/remote_image.ts";
import { Tag } from "./reference/tag.ts";
import {
  ManifestNotFoundError,
  RegistryClient,
  RepositoryNotFoundError,
  type UploadMode,
} from "./registry/mod.ts";
import { type LocalSource, openLocalDestination, openLocalSource } from "./archive/mod.ts";
import { writeFailure } from "./archive/file_io.ts";
import { defaultStorePath, type OutputFormat } from "./store.ts";

/** Options of {@linkcode Images}. */
export interface ImagesOptions {
  /** The registry of each cluster, e.g. `{ default: "https://registry.example.com" }`. */
  registries: Record<string, string>;
  /** The current cluster: `image:` short forms and `push` without a remote use it. */
  clusterName: string;
  /** The current organisation, if any. */
  orgName?: string;
  /** The current user (or project): owner of images pushed without a remote. */
  owner: string;
  /**
   * Organisations known per cluster besides `orgName`: in a listed repository
   * `<a>/<b>/<c>`, an `<a>` named here is read as an org (see `ImageNameParser`).
   */
  orgNames?: Record<string, string[]>;
  /** User name for the registry (Apolo: the user name). */
  username?: string;
  /** Password or token for the registry (Apolo: the user's token). Never printed. */
  password?: string;
  /** May read credentials from `docker-credential-*` helpers named in Docker's config. */
  allowCredentialHelpers?: boolean;
  /** Allows plain http (and credentials over it) to non-loopback registries. */
  insecure?: boolean;
  /**
   * The local store: a `docker save` archive, an OCI archive or an OCI layout directory.
   * Default: {@linkcode defaultStorePath}.
   */
  store?: string;
  /**
   * Cache folder remembering what uncompressed layers became when compressed, so a
   * re-push skips them (default {@linkcode defaultCacheDir}); `false` disables it.
   */
  cacheDir?: string | false;
  /** Layers transferred at once (default 3). */
  concurrency?: number;
  /** How blobs are uploaded (default `auto`). */
  uploadMode?: UploadMode;
  /** Chunk size of chunked uploads, in bytes. */
  chunkSize?: number;
  /**
   * Makes pushes resumable: layers of more than two chunks go in chunks, and their
   * upload sessions are saved in the cache folder after every chunk, so a push stopped
   * part-way (see {@linkcode PushOptions.suspend}, or a killed process) and run again
   * continues them where the registry stands. Needs the cache folder. Default false.
   */
  resumableUploads?: boolean;
  /** Compression of uncompressed layers on push (default gzip). */
  compression?: LayerCompression;
  /**
   * Compression level (gzip 1–9, zstd 1–19). Default: each gzip engine's own (ISA-L 3,
   * libdeflate 1, both about zlib level 6's ratio; zlib 2), zstd 3.
   */
  compressionLevel?: number;
  /**
   * What compresses gzip: `auto` (default) takes the first that runs of the system's
   * ISA-L (`libisal.so.2`, 2.7 times zlib's speed), libdeflate (`libdeflate.so.0`, 1.4
   * times) and zlib. Native libraries load through FFI: Deno needs `--allow-ffi`, else
   * zlib is used. Naming a native engine that cannot run is an error.
   */
  gzipEngine?: GzipEngineChoice;
  /** Retries of a failed request, or of a transfer that made no progress (default 5). */
  maxRetries?: number;
  /** First backoff between retries, ms, doubling each time (default 250). */
  retryBaseDelayMs?: number;
  /** Longest backoff between retries, ms (default 10 s). */
  retryMaxDelayMs?: number;
  /** How long to wait for an answer (or for the network to take a body), ms (default 30 s). */
  connectTimeoutMs?: number;
  /** Longest pause of a body that flows, in either direction, ms (default 60 s). */
  stallTimeoutMs?: number;
  /** Debug log lines (credentials redacted). */
  log?: (line: string) => void;
}

/** Options of {@linkcode Images.push}. */
export interface PushOptions {
  /** Receives progress. */
  progress?: AbstractDockerImageProgress;
  /** Cancels the push; upload sessions are cancelled and no tag is changed. */
  signal?: AbortSignal;
  /**
   * Stops the push gracefully: no new layer or chunk is started, chunks in flight
   * finish, and upload sessions are kept (with `resumableUploads`, a later push resumes
   * them). The push then rejects with an `ImagesError` of code `SUSPENDED`.
   */
  suspend?: AbortSignal;
  /** Read the image from this archive or layout instead of the store. */
  input?: string;
}

/** Options of {@linkcode Images.pull}. */
export interface PullOptions {
  /** Receives progress. */
  progress?: AbstractDockerImageProgress;
  /** Cancels the pull; nothing half-written is left. */
  signal?: AbortSignal;
  /**
   * The platform to pull from a multi-platform image (default linux and the host's CPU),
   * or `"all"` to keep the index whole. An image of one platform only is refused when it
   * is not of the platform given (without one, it is pulled whatever its platform).
   */
  platform?: Platform | "all";
  /**
   * Write into this file or directory instead of the store: a directory becomes an OCI
   * layout; a file a docker-loadable archive (or an OCI archive with `format: "oci"`).
   */
  output?: string;
  /** Format of an output file (default `docker`). */
  format?: OutputFormat;
  /**
   * Told the digest of the manifest (or index) written, and the registry's: they differ
   * when an OCI output got OCI media types for a Docker manifest (same image ID).
   */
  onWritten?: (written: string, registry: string) => void;
}

/**
 * The Images API of the Apolo SDK, without a Docker daemon.
 *
 * @example
 * ```ts ignore
 * import { Images, LocalImage } from "@apolo/images";
 * const images = new Images({
 *   registries: { default: "https://registry.example.com" },
 *   clusterName: "default",
 *   owner: "alice",
 *   username: "alice",
 *   password: Deno.env.get("APOLO_TOKEN"),
 * });
 * const remote = await images.push(new LocalImage("app", "1.0"), undefined, {
 *   input: "app.tar",
 * });
 * console.log(remote.toString()); // image://default/alice/app:1.0
 * ```
 */
export class Images {
  readonly #options: ImagesOptions;
  readonly #clients = new Map<string, RegistryClient>();
  /** Parses image references against the current cluster, org and owner. */
  readonly parser: ImageNameParser;

  /**
   * Creates the API object; nothing is contacted until a method is called.
   *
   * @param options registries, current cluster/org/owner, credentials and tuning
   */
  constructor(options: ImagesOptions) {
    if (!options.registries[options.clusterName]) {
      throw new ImagesError(
        `no registry configured for the current cluster ${JSON.stringify(options.clusterName)}`,
        "CONFIG_INVALID",
      );
    }
    this.#options = options;
    this.parser = new ImageNameParser({
      clusterName: options.clusterName,
      orgName: options.orgName,
      owner: options.owner,
      registries: options.registries,
      orgNames: options.orgNames,
    });
  }

  /** The registry host of a cluster (default: the current one), as image references name it. */
  registryHost(clusterName: string = this.#options.clusterName): string {
    return this.parser.registryOf(clusterName);
  }

  /** The client of the registry an image lives in. */
  #client(image: RemoteImage): RegistryClient {
    const host = image.registry ?? "registry-1.docker.io";
    let client = this.#clients.get(host);
    if (!client) {
      // The configured URL (with its scheme) of the cluster whose registry this is, so
      // the hosts compare the way the parser normalised them.
      const cluster = Object.keys(this.#options.registries)
        .find((c) => this.parser.registryOf(c) === host);
      const configured = cluster === undefined ? undefined : this.#options.registries[cluster];
      const { username, password } = this.#options;
      client = new RegistryClient({
        url: configured ?? host,
        credentials: configured && username && password ? { username, password } : undefined,
        allowCredentialHelpers: this.#options.allowCredentialHelpers,
        insecure: this.#options.insecure,
        uploadMode: this.#options.uploadMode,
        chunkSize: this.#options.chunkSize,
        maxRetries: this.#options.maxRetries,
        retryBaseDelayMs: this.#options.retryBaseDelayMs,
        retryMaxDelayMs: this.#options.retryMaxDelayMs,
        connectTimeoutMs: this.#options.connectTimeoutMs,
        stallTimeoutMs: this.#options.stallTimeoutMs,
        log: this.#options.log,
      });
      this.#clients.set(host, client);
    }
    return client;
  }

  /**
   * What a remote reference names in its registry, the one way every method reads it:
   * its digest when it has one (a tag beside it must be that manifest in the registry,
   * else {@linkcode PinnedDigestError}); else its tag, `latest` when it has none.
   */
  async #resolve(image: RemoteImage): Promise<Resolved> {
    const client = this.#client(image);
    if (image.digest === undefined) return { client, reference: image.tag ?? "latest" };
    if (image.tag !== undefined) {
      const tagged = await client.headManifest(image.repository, image.tag);
      if (!tagged) throw new ImageNotFoundError(image.toString());
      if (tagged.digest !== image.digest) {
        throw new PinnedDigestError(image.toString(), image.tag, image.digest, tagged.digest);
      }
    }
    return { client, reference: image.digest };
  }

  /**
   * Pushes a local image to the registry. Without `remote`, the image goes to the
   * current cluster, org and owner under the local name (tag `latest` if none).
   *
   * A local image with a digest is picked by it (its image ID, or its manifest digest in
   * an OCI archive or layout); a tag beside the digest must name the same image. The
   * remote cannot have a digest: a digest is what a push produces, not where it goes
   * ({@linkcode InvalidReferenceError}, before anything is sent).
   */
  async push(
    local: LocalImage,
    remote?: RemoteImage,
    options: PushOptions = {},
  ): Promise<RemoteImage> {
    if (remote?.digest !== undefined) {
      throw new InvalidReferenceError(
        "a push goes to a name and tag; a digest is what the push produces, not a target",
        remote.toString(),
      );
    }
    remote ??= this.parser.localToRemote(local);
    if (!remote.tag) remote = remote.withTag("latest");
    const input = options.input ?? this.#options.store ?? defaultStorePath();
    // `-` and gzip archives are read once, as a stream: their layers go up as they pass,
    // and the image is picked when the stream has ended.
    const streamed = await isStreamedInput(input);
    let source: LocalSource | undefined;
    let sourceName: string | undefined;
    if (!streamed) {
      source = await openLocalSource(input);
      try {
        sourceName = await localReference(source, local, input);
      } catch (e) {
        await source.close();
        throw e;
      }
    }
    options.progress?.push({ src: local, dst: remote });
    const throttle = new StepThrottle((s) => options.progress?.step(s));
    const compressors = new CompressorPool(undefined, { gzipEngine: this.#options.gzipEngine });
    compressors.acquire();
    try {
      const cacheDir = this.#options.cacheDir ?? defaultCacheDir();
      const uploads = this.#options.resumableUploads && cacheDir !== false
        ? new UploadRecords(cacheDir)
        : undefined;
      const blobCache = cacheDir === false ? undefined : new BlobCache(cacheDir);
      const destination = new RegistryDestination(
        this.#client(remote),
        remote.repository,
        [],
        { uploads, blobCache },
      );
      const compression = {
        format: this.#options.compression ?? "gzip",
        level: this.#options.compressionLevel,
      };
      let layerCache: Pick<BlobCache, "lookup" | "store"> | undefined = blobCache;
      if (!source) {
        const opened = await openStreamedInput(input, destination, {
          compression,
          compressors,
          blobCache,
          signal: options.signal,
          onStep: (s) => throttle.report(s),
        }).catch(async (e) => {
          await destination.abort().catch(() => {});
          throw e;
        });
        source = opened.source;
        layerCache = opened.blobCache;
        sourceName = await localReference(source, local, input);
      }
      await copyImage(source, destination, {
        sourceName,
        destinationName: remote.tag,
        platform: "all",
        operation: "push",
        compression,
        compressors,
        concurrency: this.#options.concurrency,
        blobCache: layerCache,
        onStep: (s) => throttle.report(s),
        signal: options.signal,
        suspend: options.suspend,
      });
    } finally {
      compressors.release();
      await source?.close();
    }
    return remote;
  }

  /**
   * Pulls a remote image into the local store (or into `options.output`). Without
   * `local`, the image keeps its remote name and tag (`latest` when it has none).
   *
   * A remote with a digest pulls that manifest (a tag pinned beside it is checked first:
   * {@linkcode PinnedDigestError}, nothing written). The local image cannot have a
   * digest: what is written gets its own.
   */
  async pull(
    remote: RemoteImage,
    local?: LocalImage,
    options: PullOptions = {},
  ): Promise<LocalImage> {
    if (local?.digest !== undefined) {
      throw new InvalidReferenceError(
        "a pulled image is written under a name and tag; a digest cannot be given to it",
        local.toString(),
      );
    }
    local ??= this.parser.remoteToLocal(remote);
    // The name the image is written under, and the one returned: a missing tag (an image
    // pulled by digest alone) means `latest`, as everywhere.
    local = new LocalImage(local.name, local.tag ?? "latest");
    const { client, reference } = await found(remote, () => this.#resolve(remote));
    options.progress?.pull({ src: remote, dst: local });
    const throttle = new StepThrottle((s) => options.progress?.step(s));
    const path = options.output ?? this.#options.store ?? defaultStorePath();
    try {
      const destination = await this.#openDestination(options);
      // Where the blobs were pulled from, for later pushes to mount (a hint: no cache
      // folder, no record).
      let cacheDir: string | false = false;
      try {
        cacheDir = this.#options.cacheDir ?? defaultCacheDir();
      } catch { /* no HOME nor XDG_CACHE_HOME */ }
      const source = new ImageRegistrySource(client, remote, {
        blobCache: cacheDir === false ? undefined : new BlobCache(cacheDir),
      });
      const copied = await copyImage(source, destination, {
        sourceName: reference,
        destinationName: local.toString(),
        platform: options.platform, // else the host's, from an index
        compression: false,
        concurrency: this.#options.concurrency,
        onStep: (s) => throttle.report(s),
        signal: options.signal,
      });
      options.onWritten?.(copied.descriptor.digest, copied.sourceDescriptor.digest);
    } catch (e) {
      // A full disk, a quota, a read-only folder: say so, naming the output.
      throw writeFailure(path, e);
    }
    return local;
  }

  async #openDestination(options: PullOptions): Promise<ImageDestination> {
    const path = options.output ?? this.#options.store ?? defaultStorePath();
    const isDirectory = path.endsWith("/") ||
      await stat(path).then((s) => s.isDirectory(), () => options.output === undefined);
    if (isDirectory) return await openLocalDestination(path, "oci-layout");
    return await openLocalDestination(
      path,
      options.format === "oci" ? "oci-archive" : "docker-archive",
    );
  }

  /**
   * The digest of an image's manifest (or index), as the registry reports it: of its
   * digest if it has one (checked to exist, and against a tag beside it), else of its
   * tag (`latest` when none). Throws {@linkcode ImageNotFoundError} when missing.
   */
  async digest(image: RemoteImage): Promise<string> {
    return await found(image, async () => {
      const { client, reference } = await this.#resolve(image);
      const head = await client.headManifest(image.repository, reference);
      if (!head) throw new ImageNotFoundError(image.toString());
      return head.digest;
    });
  }

  /**
   * Deletes exactly the manifest `digest` of an image's repository (the SDK's
   * `rm(image, digest)`); the registry drops the tags pointing at it, and no other.
   * A digest in `image` must be `digest`, and a tag pinned beside it is checked first;
   * the tag of an image without a digest plays no part.
   */
  async rm(image: RemoteImage, digest: string): Promise<void> {
    if (image.digest !== undefined && image.digest !== digest) {
      throw new InvalidReferenceError(
        `it names ${image.digest}, but rm was asked to delete ${digest}`,
        image.toString(),
      );
    }
    // The tag of an image without a digest is not a pin (`image:app` parses as
    // `app:latest`): only the repository and `digest` count then.
    const target = image.digest === undefined ? image.withTag(undefined).withDigest(digest) : image;
    await found(target, async () => {
      const { client } = await this.#resolve(target);
      await client.deleteManifest(image.repository, digest);
    });
  }

  /** Repositories of a cluster's registry (default: the current cluster), without tags. */
  async list(clusterName: string = this.#options.clusterName): Promise<RemoteImage[]> {
    const host = this.registryHost(clusterName);
    const probe = RemoteImage.newPlatformImage("probe", host, {
      owner: this.#options.owner,
      clusterName,
    });
    const repositories = await this.#client(probe).listRepositories({ pageSize: 30 });
    return repositories.map((repository) =>
      this.parser.parseRemote(`image://${clusterName}/${repository}`, { tagOption: "deny" })
    );
  }

  /**
   * The tags of an image's repository, as images with tags (a tag of `image` is
   * ignored). With a digest, only the tags whose manifest is that digest.
   */
  async tags(image: RemoteImage): Promise<RemoteImage[]> {
    const repository = image.withTag(undefined).withDigest(undefined);
    const client = this.#client(image);
    const names = await found(
      image.withTag(undefined),
      () => client.listTags(image.repository, { pageSize: 30 }),
    );
    const tagged = names.map((tag) => repository.withTag(tag));
    if (image.digest === undefined) return tagged;
    const digests = await mapConcurrent(
      tagged,
      TAG_LOOKUPS_AT_ONCE,
      async (t) => (await client.headManifest(image.repository, t.tag!))?.digest,
    );
    return tagged.filter((_, i) => digests[i] === image.digest);
  }

  /** The size of an image: the sum of its layers' (compressed) sizes; see `tagInfo`. */
  async size(image: RemoteImage): Promise<number> {
    return (await this.tagInfo(image)).size;
  }

  /**
   * An image's tag and size: the sum of the layers' (compressed) sizes of its manifest,
   * found by digest or tag as every method does; of an index, the host platform's
   * manifest (else the first). An image asked for by digest alone is named by it.
   */
  async tagInfo(image: RemoteImage): Promise<Tag> {
    const name = image.tag ?? image.digest ?? "latest";
    return await found(image, async () => {
      const { client, reference } = await this.#resolve(image);
      let got = await client.getManifest(image.repository, reference);
      let parsed = parseManifest(got.bytes, `manifest of ${image}`, got.mediaType);
      if (parsed.kind === "index") {
        // The host's platform, else the first: the size a pull here would download.
        const child = findPlatform(parsed.index.manifests, hostPlatform()) ??
          parsed.index.manifests[0];
        if (!child) return new Tag(name, 0);
        got = await client.getManifest(image.repository, child.digest);
        parsed = parseManifest(
          got.bytes,
          `manifest ${child.digest} of ${image}`,
          child.mediaType,
        );
      }
      const layers = parsed.kind === "manifest" ? parsed.manifest.layers : [];
      return new Tag(name, layers.reduce((sum, l) => sum + l.size, 0));
    });
  }
}

/** Manifests looked up at once when finding the tags of a digest. */
const TAG_LOOKUPS_AT_ONCE = 4;

/** A remote reference resolved: its registry, and the digest or tag to ask it for. */
interface Resolved {
  client: RegistryClient;
  reference: string;
}

/**
 * Runs `work` on `image`, turning the registry's "no such manifest" or "no such
 * repository" into the one {@linkcode ImageNotFoundError} every method throws.
 */
async function found<T>(image: RemoteImage, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    throw asImageNotFound(image, e);
  }
}

function asImageNotFound(image: RemoteImage, error: unknown): unknown {
  if (error instanceof ManifestNotFoundError || error instanceof RepositoryNotFoundError) {
    return new ImageNotFoundError(image.toString(), { cause: error });
  }
  return error;
}

/**
 * A registry repository as a pull's source, whose top manifest missing is the image
 * missing ({@linkcode ImageNotFoundError}); a missing blob or child manifest stays what
 * it is, a broken image.
 */
class ImageRegistrySource extends RegistrySource {
  readonly #image: RemoteImage;

  constructor(client: RegistryClient, image: RemoteImage, options: { blobCache?: BlobCache } = {}) {
    super(client, image.repository, options);
    this.#image = image;
  }

  override async resolve(name?: string): Promise<ResolvedImage> {
    return await found(this.#image, () => super.resolve(name));
  }
}

/**
 * The name a local source knows the image by: its digest when it has one (a tag beside
 * it must pick the same image), else `name[:tag]`.
 */
async function localReference(
  source: ImageSource,
  local: LocalImage,
  input: string,
): Promise<string> {
  if (local.digest === undefined) return local.toString();
  if (local.tag !== undefined) {
    const [picked, tagged] = await Promise.all([
      source.resolve(local.digest),
      source.resolve(`${local.name}:${local.tag}`),
    ]);
    if (picked.descriptor.digest !== tagged.descriptor.digest) {
      // A docker archive picks by config digest: the manifests compared are not it.
      throw new PinnedDigestError(local.toString(), local.tag, local.digest, undefined, input);
    }
  }
  return local.digest;
}
