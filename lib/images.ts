/**
 * `Images`: the Apolo SDK's Images API (push, pull, digest, rm, list, tags, size,
 * tagInfo) on the copy engine, the local store and the registry client. No Docker
 * daemon is involved: local images are archives or OCI layouts on disk.
 *
 * @module
 */

import { stat } from "node:fs/promises";
import { ImagesError } from "./errors.ts";
import { parseManifest, type Platform } from "./oci/manifest.ts";
import { copyImage, findPlatform, hostPlatform } from "./copy/copy.ts";
import { BlobCache, defaultCacheDir } from "./copy/blob_cache.ts";
import { UploadRecords } from "./copy/upload_records.ts";
import { CompressorPool } from "./copy/parallel_compress.ts";
import type { GzipEngineChoice } from "./copy/native_gzip.ts";
import type { LayerCompression } from "./copy/compress.ts";
import type { ImageDestination } from "./copy/ends.ts";
import { RegistryDestination, RegistrySource } from "./copy/registry_end.ts";
import { type AbstractDockerImageProgress, StepThrottle } from "./progress.ts";
import { ImageNameParser, type LocalImage, RemoteImage, Tag } from "./reference.ts";
import { RegistryClient, type UploadMode } from "./registry/mod.ts";
import { openLocalDestination, openLocalSource } from "./archive/mod.ts";
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
  /** The platform to pull from a multi-platform image (default linux and the host's CPU). */
  platform?: Platform;
  /**
   * Write into this file or directory instead of the store: a directory becomes an OCI
   * layout; a file a docker-loadable archive (or an OCI archive with `format: "oci"`).
   */
  output?: string;
  /** Format of an output file (default `docker`). */
  format?: OutputFormat;
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
   * Pushes a local image to the registry. Without `remote`, the image goes to the
   * current cluster, org and owner under the local name (tag `latest` if none).
   */
  async push(
    local: LocalImage,
    remote?: RemoteImage,
    options: PushOptions = {},
  ): Promise<RemoteImage> {
    remote ??= this.parser.localToRemote(local);
    if (!remote.tag) remote = remote.withTag("latest");
    options.progress?.push({ src: local, dst: remote });
    const throttle = new StepThrottle((s) => options.progress?.step(s));
    const source = await openLocalSource(
      options.input ?? this.#options.store ?? defaultStorePath(),
    );
    const compressors = new CompressorPool(undefined, { gzipEngine: this.#options.gzipEngine });
    compressors.acquire();
    try {
      const cacheDir = this.#options.cacheDir ?? defaultCacheDir();
      const uploads = this.#options.resumableUploads && cacheDir !== false
        ? new UploadRecords(cacheDir)
        : undefined;
      const destination = new RegistryDestination(
        this.#client(remote),
        remote.repository,
        [],
        { uploads },
      );
      await copyImage(source, destination, {
        sourceName: local.toString(),
        destinationName: remote.tag,
        platform: "all",
        operation: "push",
        compression: {
          format: this.#options.compression ?? "gzip",
          level: this.#options.compressionLevel,
        },
        compressors,
        concurrency: this.#options.concurrency,
        blobCache: this.#options.cacheDir === false
          ? undefined
          : new BlobCache(this.#options.cacheDir ?? defaultCacheDir()),
        onStep: (s) => throttle.report(s),
        signal: options.signal,
        suspend: options.suspend,
      });
    } finally {
      compressors.release();
      await source.close();
    }
    return remote;
  }

  /**
   * Pulls a remote image into the local store (or into `options.output`). Without
   * `local`, the image keeps its remote name and tag.
   */
  async pull(
    remote: RemoteImage,
    local?: LocalImage,
    options: PullOptions = {},
  ): Promise<LocalImage> {
    local ??= this.parser.remoteToLocal(remote);
    options.progress?.pull({ src: remote, dst: local });
    const throttle = new StepThrottle((s) => options.progress?.step(s));
    const path = options.output ?? this.#options.store ?? defaultStorePath();
    try {
      const destination = await this.#openDestination(options);
      const source = new RegistrySource(this.#client(remote), remote.repository);
      await copyImage(source, destination, {
        sourceName: remote.tag ?? "latest",
        destinationName: local.tag ? local.toString() : `${local.name}:latest`,
        platform: options.platform ?? hostPlatform(),
        compression: false,
        concurrency: this.#options.concurrency,
        onStep: (s) => throttle.report(s),
        signal: options.signal,
      });
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

  /** The digest of an image's manifest (or index), as the registry reports it. */
  async digest(image: RemoteImage): Promise<string> {
    const found = await this.#client(image).headManifest(image.repository, image.tag ?? "latest");
    if (!found) throw new ImagesError(`image ${image} not found`, "NOT_FOUND");
    return found.digest;
  }

  /** Deletes the manifest `digest` of an image's repository (every tag pointing at it goes). */
  async rm(image: RemoteImage, digest: string): Promise<void> {
    await this.#client(image).deleteManifest(image.repository, digest);
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

  /** Every tag of an image's repository, as images with tags. */
  async tags(image: RemoteImage): Promise<RemoteImage[]> {
    const tags = await this.#client(image).listTags(image.repository, { pageSize: 30 });
    return tags.map((tag) => image.withTag(tag));
  }

  /** The size of a tagged image: the sum of its layers' (compressed) sizes. */
  async size(image: RemoteImage): Promise<number> {
    return (await this.tagInfo(image)).size;
  }

  /** A tag's name and size. */
  async tagInfo(image: RemoteImage): Promise<Tag> {
    const tag = image.tag ?? "latest";
    const client = this.#client(image);
    let got = await client.getManifest(image.repository, tag);
    let parsed = parseManifest(got.bytes, `manifest of ${image}`, got.mediaType);
    if (parsed.kind === "index") {
      // The host's platform, else the first: the size a pull here would download.
      const child = findPlatform(parsed.index.manifests, hostPlatform()) ??
        parsed.index.manifests[0];
      if (!child) {
        return new Tag(tag, 0);
      }
      got = await client.getManifest(image.repository, child.digest);
      parsed = parseManifest(got.bytes, `manifest ${child.digest} of ${image}`, child.mediaType);
    }
    const layers = parsed.kind === "manifest" ? parsed.manifest.layers : [];
    return new Tag(tag, layers.reduce((sum, l) => sum + l.size, 0));
  }
}
