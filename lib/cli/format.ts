/**
 * How the command line prints sizes and image names.
 *
 * @module
 */

import type { RemoteImage } from "../reference/remote_image.ts";

/**
 * A size in bytes as a person reads it, in decimal units as `apolo image size` prints
 * them, e.g. `12.3 MB`.
 *
 * @example
 * ```ts
 * import { humanSize } from "./format.ts";
 * humanSize(12_300_000); // "12.3 MB"
 * ```
 */
export function humanSize(bytes: number): string {
  const units = ["bytes", "kB", "MB", "GB", "TB", "PB"];
  if (bytes < 1000) return bytes === 1 ? "1 byte" : `${bytes} bytes`;
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** What "current" means when shortening an image URI. */
export interface CurrentContext {
  /** The current cluster. */
  clusterName: string;
  /** The current org, if any. */
  orgName?: string;
  /** The current owner. */
  owner: string;
}

/**
 * The shortest `image:` form of a platform image relative to the current cluster, org and
 * owner (`image:name:tag`, `image:/owner/name:tag@sha256:…`), else its full URI.
 *
 * @example
 * ```ts
 * import { RemoteImage } from "../../mod.ts";
 * import { shortImageUri } from "./format.ts";
 * const image = RemoteImage.newPlatformImage("app", "registry.example.com", {
 *   clusterName: "default",
 *   owner: "alice",
 *   tag: "1.0",
 * });
 * shortImageUri(image, { clusterName: "default", owner: "alice" }); // "image:app:1.0"
 * ```
 */
export function shortImageUri(image: RemoteImage, current: CurrentContext): string {
  if (!image.owner || image.clusterName !== current.clusterName) return image.toString();
  if ((image.orgName ?? undefined) !== (current.orgName ?? undefined)) return image.toString();
  const end = (image.tag ? `:${image.tag}` : "") + (image.digest ? `@${image.digest}` : "");
  if (image.owner === current.owner) return `image:${image.name}${end}`;
  return `image:/${image.owner}/${image.name}${end}`;
}
