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
 * The entry of an index for a platform: one of exactly that platform first, else one of its
 * OS and CPU that names no variant (or any variant when none is asked for). Names are
 * compared as {@linkcode normalizePlatform} writes them.
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
  const asked = normalizePlatform(wanted);
  const exact = manifests.find((d) =>
    d.platform && samePlatform(normalizePlatform(d.platform), asked)
  );
  return exact ?? manifests.find((d) => platformMatches(d.platform, wanted));
}

/**
 * Whether an image's platform (an index entry's, a config's) can serve for the one asked
 * for: the same OS and CPU, and the same variant when both name one (an image that names
 * none may serve for any; containerd would take `arm` alone for `arm/v7` only). Names are compared as
 * {@linkcode normalizePlatform} writes them.
 *
 * @example
 * ```ts
 * import { platformMatches } from "./platform.ts";
 * platformMatches({ os: "linux", architecture: "aarch64" }, { os: "linux", architecture: "arm64", variant: "v8" }); // true
 * platformMatches({ os: "linux", architecture: "arm", variant: "v6" }, { os: "linux", architecture: "arm", variant: "v7" }); // false
 * ```
 */
export function platformMatches(candidate: Platform | undefined, wanted: Platform): boolean {
  if (!candidate) return false;
  const own = normalizePlatform(candidate);
  const asked = normalizePlatform(wanted);
  if (own.os !== asked.os || own.architecture !== asked.architecture) return false;
  return own.variant === undefined || asked.variant === undefined ||
    own.variant === asked.variant;
}

/** Other names of CPUs, as `uname -m` and some tools write them, to their OCI names. */
const ARCHITECTURE_ALIASES: Readonly<Record<string, string>> = {
  aarch64: "arm64",
  x86_64: "amd64",
  "x86-64": "amd64",
  i386: "386",
  i686: "386",
  armhf: "arm",
  armel: "arm",
};

/**
 * A platform in the words the OCI image spec uses, so that two ways of naming one platform
 * compare equal: lowercase, CPU aliases resolved (`aarch64` → `arm64`), a variant written
 * `v7` (not `7`), and the baseline variant that naming none means dropped (`arm64/v8`,
 * `amd64/v1`). An empty variant counts as none.
 *
 * @example
 * ```ts
 * import { normalizePlatform } from "./platform.ts";
 * normalizePlatform({ os: "Linux", architecture: "aarch64", variant: "8" }); // { os: "linux", architecture: "arm64" }
 * ```
 */
export function normalizePlatform(platform: Platform): Platform {
  const os = platform.os.toLowerCase();
  const lower = platform.architecture.toLowerCase();
  const architecture = ARCHITECTURE_ALIASES[lower] ?? lower;
  let variant = platform.variant?.toLowerCase();
  if (variant && /^\d/.test(variant)) variant = `v${variant}`;
  if (
    !variant ||
    (architecture === "arm64" && /^v8(\.0)?$/.test(variant)) ||
    (architecture === "amd64" && variant === "v1")
  ) {
    return { os, architecture };
  }
  return { os, architecture, variant };
}

/** Whether two normalized platforms are the same, variant included. */
function samePlatform(a: Platform, b: Platform): boolean {
  return a.os === b.os && a.architecture === b.architecture && a.variant === b.variant;
}
