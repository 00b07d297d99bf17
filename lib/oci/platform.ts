/**
 * Platforms (`os/arch[/variant]`): reading and writing their text form, the host's own,
 * and finding an index's entry for one.
 *
 * @module
 */

import { ImagesError } from "../errors.ts";
import type { Descriptor, Platform } from "./manifest.ts";

/**
 * Formats a platform as `os/arch[/variant]`.
 *
 * @example
 * ```ts
 * import { formatPlatform } from "./platform.ts";
 * formatPlatform({ os: "linux", architecture: "arm64", variant: "v8" }); // "linux/arm64/v8"
 * ```
 */
export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join("/");
}

/**
 * Parses `os/arch[/variant]` into a platform.
 *
 * @example
 * ```ts
 * import { parsePlatform } from "./platform.ts";
 * parsePlatform("linux/amd64"); // { os: "linux", architecture: "amd64" }
 * ```
 */
export function parsePlatform(text: string): Platform {
  const parts = text.split("/");
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === "")) {
    throw new ImagesError(
      `invalid platform ${JSON.stringify(text)}: expected OS/ARCH[/VARIANT], e.g. linux/amd64`,
      "PLATFORM_INVALID",
    );
  }
  const [os, architecture, variant] = parts;
  return variant ? { os, architecture, variant } : { os, architecture };
}

/** The host's platform, in OCI words. */
export function hostPlatform(): Platform {
  const arch = ({
    x64: "amd64",
    arm64: "arm64",
    arm: "arm",
    ia32: "386",
    ppc64: "ppc64le",
    s390x: "s390x",
  } as Record<string, string>)[
    globalThis.process?.arch ?? "x64"
  ] ?? "amd64";
  return { os: "linux", architecture: arch };
}

/**
 * The entry of an index for a platform (a variant is matched only when asked for).
 *
 * @example
 * ```ts
 * import { findPlatform, hostPlatform } from "./platform.ts";
 * const entry = (architecture: string, hex: string) => ({
 *   mediaType: "application/vnd.oci.image.manifest.v1+json",
 *   digest: `sha256:${hex.repeat(64)}`,
 *   size: 400,
 *   platform: { os: "linux", architecture },
 * });
 * const manifests = [entry("amd64", "a"), entry("arm64", "b")];
 * const child = findPlatform(manifests, hostPlatform()); // the entry of this machine's platform
 * ```
 */
export function findPlatform(
  manifests: readonly Descriptor[],
  wanted: Platform,
): Descriptor | undefined {
  return manifests.find((d) => platformMatches(d.platform, wanted));
}

/** Whether an index entry's platform matches the one asked for. */
function platformMatches(candidate: Platform | undefined, wanted: Platform): boolean {
  if (!candidate) return false;
  if (candidate.os !== wanted.os || candidate.architecture !== wanted.architecture) return false;
  return wanted.variant === undefined || candidate.variant === wanted.variant;
}
