/**
 * The copy engine: moves one image from an {@linkcode ImageSource} to an
 * {@linkcode ImageDestination}. Push and pull are both this copy; compression,
 * concurrency, progress, blob reuse and verification live here, once.
 *
 * @module
 */

import process from "node:process";
import { ImagesError, NotFoundError } from "../errors.ts";
import { sha256Digest } from "../oci/digest.ts";
import {
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  MAX_MANIFEST_BYTES,
  parseConfig,
  parseManifest,
  type Platform,
} from "../oci/manifest.ts";
import { findPlatform, formatPlatform, hostPlatform, platformMatches } from "../oci/platform.ts";
import { layerMediaType, MediaType } from "../oci/media_types.ts";
import { hasDockerMediaTypes, ociIndexBytes, ociManifestBytes } from "../oci/convert.ts";
import type { ImageProgressStep, StepStatus } from "../progress.ts";
import { printableList } from "../printable.ts";
import type { BlobCache } from "../blobcache/blob_cache.ts";
import { compressStream } from "../compression/compress.ts";
import { defaultLevel, type LayerCompression } from "../compression/engines.ts";
import {
  type CompressionPlan,
  type CompressorPool,
  parallelCompressStream,
} from "../compression/parallel_compress.ts";
import type { ImageDestination, ImageSource } from "../ends.ts";
import { isSuspended } from "../registry/upload.ts";
import { mapConcurrent } from "./pool.ts";
import { readAll, streamOf } from "../streams.ts";

/** Options of {@linkcode copyImage}. */
export interface CopyOptions {
  /** Which image of the source; without it, the only one. */
  sourceName?: string;
  /** The tag or reference the image gets in the destination. */
  destinationName?: string;
  /**
   * For a multi-platform index: the platform to copy, or `"all"` to copy the index whole.
   * Default: `linux` and the host's architecture. A single image must be of the platform
   * when one is given.
   */
  platform?: Platform | "all";
  /** Which way the copy goes, for the words of progress steps (default `pull`). */
  operation?: "push" | "pull";
  /** Compress uncompressed layers on the way (push); `false` copies blobs as they are. */
  compression?: { format: LayerCompression; level?: number } | false;
  /** Workers that compress on every core; without it, compression runs on this thread. */
  compressors?: CompressorPool;
  /** Remembers compressed forms of uncompressed layers, so re-pushes skip them. */
  blobCache?: Pick<BlobCache, "lookup" | "store">;
  /**
   * Layers of 8 MiB or more moved at once (default 3); a smaller blob takes a share of
   * one by its size, so up to 8 times as many small ones go at once.
   */
  concurrency?: number;
  /** Receives every step of every layer (unthrottled). */
  onStep?: (step: ImageProgressStep) => void;
  /** Cancels the copy; the destination is rolled back. */
  signal?: AbortSignal;
  /**
   * Stops the copy gracefully: no new layer is started, uploads stop between chunks and
   * keep their sessions for a later resume; the copy rejects with an `ImagesError` of
   * code `SUSPENDED` (unless everything was already sent, then it completes).
   */
  suspend?: AbortSignal;
}

/** What a copy wrote. */
export interface CopyResult {
  /** Descriptor of the top-level manifest or index written to the destination. */
  descriptor: Descriptor;
  /** The name the source held the image under, if any. */
  sourceName?: string;
  /**
   * Descriptor of the manifest or index as the source holds it: another digest than
   * `descriptor`'s when the copy changed it (layers compressed, OCI media types).
   */
  sourceDescriptor: Descriptor;
}

/**
 * Copies one image (a manifest, or an index with the platforms asked for) with its
 * config and layers, then commits the destination; any failure aborts it.
 *
 * @example
 * ```ts ignore
 * import { copyImage } from "./copy.ts";
 * const result = await copyImage(source, destination, {
 *   destinationName: "latest",
 *   compression: { format: "gzip" },
 * });
 * console.log(result.descriptor.digest);
 * ```
 */
export async function copyImage(
  source: ImageSource,
  destination: ImageDestination,
  options: CopyOptions = {},
): Promise<CopyResult> {
  try {
    const top = await source.resolve(options.sourceName);
    const copier = new Copier(source, destination, options);
    const descriptor = await copier.copyTop(top.descriptor, top.bytes);
    // Everything is written (for a registry, the manifest put last is the commit): an
    // abort arriving now is too late to undo anything, so the copy completes.
    await destination.commit();
    return { descriptor, sourceName: top.name, sourceDescriptor: top.descriptor };
  } catch (error) {
    await destination.abort().catch(() => {});
    throw error;
  }
}

/** The manifest family an uncompressed layer belongs to, by its media type. */
function dockerOrOci(layer: Descriptor): "docker" | "oci" {
  return layer.mediaType === MediaType.DockerLayer ? "docker" : "oci";
}

/** The first 12 hex digits of a digest, as docker shows layer ids. */
export function shortId(digest: string): string {
  return digest.replace(/^sha256:/, "").slice(0, 12);
}

/** The deepest nesting of indexes followed: an index in an index in an index. */
export const MAX_INDEX_DEPTH = 3;

const encoder = new TextEncoder();
const OCI = MediaType.OciManifest;
const ZSTD = MediaType.OciLayerZstd;

/** Whether a layer is an uncompressed tar (which a push compresses). */
function isUncompressed(layer: Descriptor): boolean {
  return layer.mediaType === MediaType.DockerLayer || layer.mediaType === MediaType.OciLayer;
}

/** A blob of this size or more takes a full share of the copy's concurrency. */
const FULL_SHARE_BYTES = 8 * 1024 * 1024;

/**
 * The share of the concurrency a blob of `size` bytes takes: small blobs cost little to
 * move but a few round trips each, so many of them go at once (up to 8 in one share).
 */
function transferCost(size: number): number {
  return Math.min(1, Math.max(1 / 8, size / FULL_SHARE_BYTES));
}

/** One copy in progress: holds the options so the steps below stay short. */
class Copier {
  readonly #source: ImageSource;
  readonly #destination: ImageDestination;
  readonly #options: CopyOptions;

  constructor(source: ImageSource, destination: ImageDestination, options: CopyOptions) {
    this.#source = source;
    this.#destination = destination;
    this.#options = options;
  }

  #step(layerId: string, status: StepStatus, current = 0, total?: number): void {
    const amount = total === undefined ? "" : ` ${current}/${total}`;
    this.#options.onStep?.({ layerId, status, current, total, message: `${status}${amount}` });
  }

  /** Copies the top-level manifest or index and stores it under the destination name. */
  async copyTop(descriptor: Descriptor, bytes: Uint8Array): Promise<Descriptor> {
    const parsed = parseManifest(
      bytes,
      `manifest of ${this.#source.location}`,
      descriptor.mediaType,
    );
    const name = this.#options.destinationName;
    if (parsed.kind === "manifest") {
      return await this.#copyManifest(descriptor, bytes, parsed.manifest, name, true);
    }
    const wanted = this.#options.platform ?? hostPlatform();
    if (wanted === "all") return await this.#copyIndex(descriptor, bytes, parsed.index, name, 1);
    return await this.#copyPlatform(parsed.index, wanted, name, 1);
  }

  /** Copies the image of the wanted platform from an index (looking into nested indexes). */
  async #copyPlatform(
    index: ImageIndex,
    wanted: Platform,
    name: string | undefined,
    depth: number,
  ): Promise<Descriptor> {
    const child = findPlatform(index.manifests, wanted);
    if (!child) {
      const held = index.manifests.map((d) =>
        d.platform ? formatPlatform(d.platform) : "(no platform)"
      );
      throw new NotFoundError(
        `${this.#source.location}: no image for platform ${
          formatPlatform(wanted)
        }; the index holds ${printableList(held) || "nothing"}`,
      );
    }
    const bytes = await this.#source.fetchManifest(child);
    const parsed = parseManifest(bytes, `manifest ${child.digest}`, child.mediaType);
    if (parsed.kind === "manifest") {
      return await this.#copyManifest(child, bytes, parsed.manifest, name);
    }
    this.#checkDepth(depth + 1);
    return await this.#copyPlatform(parsed.index, wanted, name, depth + 1);
  }

  /**
   * Refuses an image of another platform than the one asked for, before any layer moves:
   * handing an arm64 image over as amd64 only fails later, at run time (Docker's classic
   * store and podman warn; containerd refuses). A config that names no platform is let
   * through; so is a variant the config does not name.
   */
  #checkPlatform(config: ImageConfig, wanted: Platform): void {
    const { os, architecture, variant } = config;
    if (!os || !architecture) return;
    const own: Platform = { os, architecture, variant };
    if (platformMatches(own, wanted)) return;
    throw new NotFoundError(
      `${this.#source.location}: the image is for ${formatPlatform(own)}, not the ${
        formatPlatform(wanted)
      } asked for; it is the only one there`,
    );
  }

  /** An index inside an index inside…: refused past {@linkcode MAX_INDEX_DEPTH}. */
  #checkDepth(depth: number): void {
    if (depth > MAX_INDEX_DEPTH) {
      throw new ImagesError(
        `${this.#source.location}: indexes nested more than ${MAX_INDEX_DEPTH} deep`,
        "MANIFEST_INVALID",
      );
    }
  }

  async #copyChild(child: Descriptor, depth: number): Promise<Descriptor> {
    const bytes = await this.#source.fetchManifest(child);
    const parsed = parseManifest(bytes, `manifest ${child.digest}`, child.mediaType);
    if (parsed.kind === "index") {
      this.#checkDepth(depth + 1);
      return await this.#copyIndex(child, bytes, parsed.index, undefined, depth + 1);
    }
    return await this.#copyManifest(child, bytes, parsed.manifest);
  }

  async #copyIndex(
    descriptor: Descriptor,
    bytes: Uint8Array,
    index: ImageIndex,
    name: string | undefined,
    depth: number,
  ): Promise<Descriptor> {
    const children: Descriptor[] = [];
    for (const child of index.manifests) children.push(await this.#copyChild(child, depth));
    const changed = children.some((c, i) => c.digest !== index.manifests[i].digest);
    // An index over OCI manifests (converted, or zstd) is an OCI index.
    const toOci = (this.#destination.ociOnly || children.some((c) => c.mediaType === OCI)) &&
      hasDockerMediaTypes(index);
    if (changed || toOci) {
      const manifests = children.map((c, i) => ({
        ...index.manifests[i],
        ...c,
        platform: index.manifests[i].platform,
      }));
      bytes = toOci
        ? ociIndexBytes(index, manifests)
        : encoder.encode(JSON.stringify({ ...index, manifests }));
      descriptor = {
        mediaType: toOci ? MediaType.OciIndex : descriptor.mediaType,
        digest: sha256Digest(bytes),
        size: bytes.byteLength,
      };
    }
    await this.#destination.putManifest(bytes, descriptor, name);
    return descriptor;
  }

  /**
   * Copies one image. `alone`: it is the source's only image (no index chose it), so a
   * platform asked for must be its own.
   */
  async #copyManifest(
    descriptor: Descriptor,
    bytes: Uint8Array,
    manifest: ImageManifest,
    name?: string,
    alone = false,
  ): Promise<Descriptor> {
    const { signal } = this.#options;
    const configBytes = await readAll(
      await this.#source.fetchBlob(manifest.config, { signal }),
      MAX_MANIFEST_BYTES,
      `config ${manifest.config.digest}`,
    );
    const isImage = manifest.config.mediaType === MediaType.DockerConfig ||
      manifest.config.mediaType === MediaType.OciConfig;
    if (isImage) {
      const config = parseConfig(configBytes, `config ${manifest.config.digest}`);
      const wanted = this.#options.platform;
      if (alone && wanted && wanted !== "all") this.#checkPlatform(config, wanted);
      if (config.rootfs.diff_ids.length !== manifest.layers.length) {
        throw new ImagesError(
          `${this.#source.location}: the manifest lists ${manifest.layers.length} layers but the config has ${config.rootfs.diff_ids.length} diff_ids`,
          "MANIFEST_INVALID",
        );
      }
    }
    for (const layer of manifest.layers) this.#step(shortId(layer.digest), "Waiting");
    const family = descriptor.mediaType === MediaType.DockerManifest ? "docker" : "oci";
    /** The manifest as written, with the layers as the destination holds them. */
    const rewrite = (layers: Descriptor[]) => {
      const changed = layers.some((l, i) => l.digest !== manifest.layers[i].digest);
      // zstd layers exist in OCI manifests only (podman refuses them in a Docker one); an
      // OCI layout holds OCI types only. The config keeps its bytes, so the image ID stays.
      const toOci = (this.#destination.ociOnly || layers.some((l) => l.mediaType === ZSTD)) &&
        hasDockerMediaTypes({ ...manifest, mediaType: descriptor.mediaType, layers });
      if (!changed && !toOci) return { bytes, descriptor };
      const written = toOci
        ? ociManifestBytes({ ...manifest, layers })
        : encoder.encode(JSON.stringify(
          {
            ...manifest,
            mediaType: family === "docker" ? MediaType.DockerManifest : MediaType.OciManifest,
            layers,
          },
          null,
          2,
        ));
      return {
        bytes: written,
        descriptor: {
          mediaType: toOci ? OCI : descriptor.mediaType,
          digest: sha256Digest(written),
          size: written.byteLength,
        },
      };
    };
    // Every layer's form known: the same manifest written before needs no blob at all.
    const foreseen = await this.#foreseenLayers(manifest.layers);
    if (foreseen && this.#destination.hasManifest) {
      const out = rewrite(foreseen);
      if (await this.#destination.hasManifest(out.descriptor, signal)) {
        for (const layer of manifest.layers) {
          const id = shortId(layer.digest);
          this.#step(id, "Preparing");
          this.#step(id, "Layer already exists", layer.size, layer.size);
        }
        await this.#destination.putManifest(out.bytes, out.descriptor, name);
        return out.descriptor;
      }
    }
    // A suspended layer does not stop the others at once (that would cancel their
    // sessions): each stops at its next chunk, and the suspension is thrown after.
    let suspended: unknown;
    // Largest layers first: the last one to start then is a small one, so the copy does
    // not end with one big layer running alone on a machine built for several at once.
    // The config goes first, alongside them.
    const order = manifest.layers.map((_, i) => i)
      .sort((a, b) => manifest.layers[b].size - manifest.layers[a].size);
    const CONFIG = -1;
    const copied = await mapConcurrent(
      [CONFIG, ...order],
      this.#options.concurrency ?? 3,
      async (i, _k, layerSignal) => {
        if (i === CONFIG) {
          await this.#copyConfig(manifest.config, configBytes, layerSignal);
          return manifest.config;
        }
        const layer = manifest.layers[i];
        try {
          return await this.#copyLayer(layer, layerSignal);
        } catch (e) {
          if (!isSuspended(e)) throw e;
          suspended ??= e;
          return layer;
        }
      },
      signal,
      (i) => transferCost(i === CONFIG ? manifest.config.size : manifest.layers[i].size),
    );
    if (suspended) throw suspended;
    const layers: Descriptor[] = new Array(manifest.layers.length);
    order.forEach((i, k) => layers[i] = copied[k + 1]);
    const out = rewrite(layers);
    await this.#destination.putManifest(out.bytes, out.descriptor, name);
    return out.descriptor;
  }

  /**
   * The descriptors the layers will have in the destination, when each is known without
   * reading it (kept as it is, or its compressed form in the blob cache); else undefined.
   */
  async #foreseenLayers(layers: readonly Descriptor[]): Promise<Descriptor[] | undefined> {
    const compression = this.#options.compression;
    const out: Descriptor[] = [];
    for (const layer of layers) {
      if (!compression || !isUncompressed(layer)) {
        out.push(layer);
        continue;
      }
      const plan = await this.#plan(compression);
      const known = await this.#options.blobCache?.lookup(layer.digest, plan.settings);
      if (!known) return undefined;
      out.push(known);
    }
    return out;
  }

  async #copyConfig(config: Descriptor, bytes: Uint8Array, signal: AbortSignal): Promise<void> {
    if (await this.#destination.hasBlob(config, signal)) return;
    await this.#destination.putBlob(streamOf(bytes), config, {
      signal,
      reopen: () => Promise.resolve(streamOf(bytes)),
    });
  }

  /**
   * How layers are compressed: on the worker pool if there is one (which picks the
   * engine), else zlib streaming on this thread. `settings` names what decides the bytes,
   * for the blob cache and upload resumes.
   */
  #plan(compression: { format: LayerCompression; level?: number }): Promise<CompressionPlan> {
    const pool = this.#options.compressors;
    if (pool) return pool.plan(compression.format, compression.level);
    const level = compression.level ?? defaultLevel(compression.format);
    const settings = `${compression.format}-${level}-stream-zlib-${process.versions.zlib}`;
    return Promise.resolve({ engine: "zlib", level, settings });
  }

  /** A stream compressing a layer as `plan` says. */
  #compressor(format: LayerCompression, plan: CompressionPlan) {
    const pool = this.#options.compressors;
    return pool
      ? parallelCompressStream(pool, format, plan.level, plan.engine)
      : compressStream(format, { level: plan.level });
  }

  /** Copies one layer; returns the descriptor it has in the destination. */
  async #copyLayer(layer: Descriptor, signal: AbortSignal): Promise<Descriptor> {
    const id = shortId(layer.digest);
    const suspend = this.#options.suspend;
    if (suspend?.aborted) {
      throw new ImagesError(`layer ${layer.digest}: suspended before it started`, "SUSPENDED");
    }
    const onResume = (offset: number) =>
      this.#options.onStep?.({
        layerId: id,
        status: "Resuming",
        current: offset,
        total: layer.size,
        message: `Resuming at ${offset} bytes`,
      });
    const compression = this.#options.compression;
    const uncompressed = isUncompressed(layer);
    const pushing = this.#options.operation === "push";
    this.#step(id, "Preparing");
    const plan = uncompressed && compression ? await this.#plan(compression) : undefined;
    const known = plan ? await this.#options.blobCache?.lookup(layer.digest, plan.settings) : layer;
    if (known && await this.#destination.hasBlob(known, signal)) {
      this.#step(id, pushing ? "Layer already exists" : "Already exists", layer.size, layer.size);
      // A cached blob gets the type of this manifest's family (it may have been recorded
      // for the other one).
      return plan && compression
        ? { ...known, mediaType: layerMediaType(compression.format, dockerOrOci(layer)) }
        : known;
    }
    const active: StepStatus = pushing ? "Pushing" : "Downloading";
    const onProgress = (bytes: number) => this.#step(id, active, bytes, layer.size);
    onProgress(0);
    if (plan && compression) {
      const family = dockerOrOci(layer);
      const open = async () =>
        (await this.#source.fetchBlob(layer, { signal, onProgress }))
          .pipeThrough(this.#compressor(compression.format, plan));
      const settings = plan.settings;
      const stored = await this.#destination.putBlob(
        await open(),
        { mediaType: layerMediaType(compression.format, family) },
        {
          signal,
          reopen: open,
          suspend,
          onResume,
          resumeKey: { source: layer.digest, settings, sizeHint: layer.size },
        },
      );
      await this.#options.blobCache?.store(layer.digest, settings, stored);
      this.#step(id, "Pushed", layer.size, layer.size);
      return stored;
    }
    const stream = await this.#source.fetchBlob(layer, { signal, onProgress });
    const reopen = () => this.#source.fetchBlob(layer, { signal, onProgress }); // resend after a drop
    const stored = await this.#destination.putBlob(stream, layer, {
      signal,
      reopen,
      suspend,
      onResume,
      resumeKey: { source: layer.digest, settings: "as-is", sizeHint: layer.size },
    });
    this.#step(id, pushing ? "Pushed" : "Download complete", layer.size, layer.size);
    return { ...layer, ...stored, mediaType: layer.mediaType };
  }
}
