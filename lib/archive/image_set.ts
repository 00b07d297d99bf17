/**
 * Bookkeeping shared by the destinations that write layouts: which manifests were
 * stored, which of them are the named top-level images, and what `index.json` and
 * `manifest.json` must say about them.
 *
 * For an index stored as a top-level image, `index.json` points at the index when every
 * one of its platform manifests was stored, otherwise at the first stored platform
 * manifest (in index order), so the layout never names content it does not hold.
 * `manifest.json` always describes that one platform manifest, since `docker load`
 * reads single-platform images only.
 *
 * @module
 */

import { ImagesError } from "../errors.ts";
import { checkDigest, sha256Digest } from "../oci/digest.ts";
import {
  type Descriptor,
  type ImageManifest,
  type ParsedManifest,
  parseManifest,
} from "../oci/manifest.ts";
import { type DockerSaveRecord, nameAnnotations } from "./layout_files.ts";

/** A top-level image to list in `index.json`. */
export interface TopImage {
  /** Its name, if it was given one. */
  name?: string;
  /** The descriptor `index.json` gets (annotations included). */
  descriptor: Descriptor;
  /** The single-platform manifest it stands for. */
  manifest: ImageManifest;
  /** Digest of that manifest. */
  manifestDigest: string;
}

/**
 * The manifests put into a destination, in order.
 *
 * @example
 * ```ts
 * import { ImageSet } from "./image_set.ts";
 * const set = new ImageSet("out.tar");
 * const bytes = new TextEncoder().encode(JSON.stringify({
 *   schemaVersion: 2,
 *   mediaType: "application/vnd.oci.image.manifest.v1+json",
 *   config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: "sha256:" + "0".repeat(64), size: 2 },
 *   layers: [],
 * }));
 * set.add(bytes, undefined, "example:latest");
 * console.log(set.tops().length); // 1
 * ```
 */
export class ImageSet {
  /** The destination's location, for messages. */
  readonly location: string;
  #parsed = new Map<string, { descriptor: Descriptor; parsed: ParsedManifest }>();
  #puts: { digest: string; name?: string }[] = [];

  /**
   * Starts an empty set.
   *
   * @param location the destination, named in errors
   */
  constructor(location: string) {
    this.location = location;
  }

  /**
   * Checks a manifest against its descriptor (when one is given), parses it and records
   * it; returns its full descriptor.
   *
   * @example
   * ```ts
   * import { ImageSet } from "./image_set.ts";
   * const set = new ImageSet("out");
   * const bytes = new TextEncoder().encode('{"schemaVersion":2,"manifests":[]}');
   * console.log(set.add(bytes).mediaType); // application/vnd.oci.image.index.v1+json
   * ```
   */
  add(bytes: Uint8Array, descriptor?: Descriptor, name?: string): Descriptor {
    const digest = sha256Digest(bytes);
    if (descriptor) {
      checkDigest(descriptor.digest, `manifest for ${this.location}`);
      if (descriptor.digest !== digest || descriptor.size !== bytes.length) {
        throw new ImagesError(
          `manifest for ${this.location}: expected ${descriptor.digest} (${descriptor.size} bytes), ` +
            `got ${digest} (${bytes.length} bytes)`,
          "DIGEST_MISMATCH",
        );
      }
    }
    const parsed = parseManifest(bytes, `manifest ${digest}`, descriptor?.mediaType);
    const full: Descriptor = {
      mediaType: parsed.mediaType,
      digest,
      size: bytes.length,
      ...(descriptor?.platform ? { platform: descriptor.platform } : {}),
    };
    this.#parsed.set(digest, { descriptor: full, parsed });
    this.#puts.push({ digest, name });
    return full;
  }

  /** Whether a manifest with this digest was recorded. */
  has(digest: string): boolean {
    return this.#parsed.has(digest);
  }

  /**
   * The top-level images: every manifest put with a name, or, when none was named,
   * the last one put.
   *
   * @example
   * ```ts
   * import { ImageSet } from "./image_set.ts";
   * console.log(new ImageSet("out").tops()); // []
   * ```
   */
  tops(): TopImage[] {
    let named = this.#puts.filter((p) => p.name !== undefined);
    if (named.length === 0 && this.#puts.length > 0) named = [this.#puts.at(-1)!];
    return named.map(({ digest, name }) => {
      const { descriptor, parsed } = this.#parsed.get(digest)!;
      let top = descriptor;
      let manifestDigest = digest;
      let manifest: ImageManifest;
      if (parsed.kind === "index") {
        const stored = parsed.index.manifests.filter((d) =>
          this.#parsed.get(d.digest)?.parsed.kind === "manifest"
        );
        if (stored.length === 0) {
          throw new ImagesError(
            `${this.location}: none of the platform manifests of index ${digest} was stored`,
            "MANIFEST_INVALID",
          );
        }
        manifestDigest = stored[0].digest;
        const child = this.#parsed.get(manifestDigest)!;
        manifest = (child.parsed as { manifest: ImageManifest }).manifest;
        if (stored.length !== parsed.index.manifests.length) {
          top = {
            ...child.descriptor,
            ...(stored[0].platform ? { platform: stored[0].platform } : {}),
          };
        }
      } else manifest = parsed.manifest;
      const annotations = name === undefined ? undefined : nameAnnotations(name);
      return {
        name,
        descriptor: annotations ? { ...top, annotations } : top,
        manifest,
        manifestDigest,
      };
    });
  }

  /**
   * The `manifest.json` records: one per distinct platform manifest, with every name
   * it was given.
   *
   * @example
   * ```ts
   * import { ImageSet } from "./image_set.ts";
   * const set = new ImageSet("out");
   * console.log(set.dockerRecords(set.tops())); // []
   * ```
   */
  dockerRecords(tops: TopImage[]): DockerSaveRecord[] {
    const records = new Map<string, DockerSaveRecord>();
    for (const top of tops) {
      let record = records.get(top.manifestDigest);
      if (!record) {
        record = {
          config: top.manifest.config.digest,
          layers: top.manifest.layers.map((l) => l.digest),
          names: [],
        };
        records.set(top.manifestDigest, record);
      }
      if (top.name !== undefined) record.names.push(top.name);
    }
    return [...records.values()];
  }

  /**
   * The blobs the listed images need: each stored image manifest's config and layers.
   *
   * @example
   * ```ts
   * import { ImageSet } from "./image_set.ts";
   * console.log(new ImageSet("out").requiredBlobs([]).size); // 0
   * ```
   */
  requiredBlobs(tops: TopImage[]): Map<string, string> {
    const needed = new Map<string, string>();
    const visit = (digest: string): void => {
      const entry = this.#parsed.get(digest);
      if (!entry) return;
      if (entry.parsed.kind === "index") {
        for (const d of entry.parsed.index.manifests) visit(d.digest);
        return;
      }
      const m = entry.parsed.manifest;
      needed.set(m.config.digest, `config of manifest ${digest}`);
      m.layers.forEach((l, i) => needed.set(l.digest, `layer ${i} of manifest ${digest}`));
    };
    for (const top of tops) visit(top.descriptor.digest);
    return needed;
  }
}
