/**
 * Choosing a local destination by format: a docker-loadable archive, an OCI layout
 * archive or an OCI layout directory.
 *
 * @module
 */

import type { ImageDestination } from "../ends.ts";
import { openArchiveDestination } from "./archive_destination.ts";
import { openOciLayoutDestination } from "./layout_destination.ts";

/** The local formats images can be written in. */
export type LocalDestinationFormat = "docker-archive" | "oci-archive" | "oci-layout";

/**
 * Opens a destination writing `path` in `format` (default `docker-archive`).
 *
 * @example
 * ```ts
 * import { openLocalDestination } from "./local_destination.ts";
 * const dest = await openLocalDestination("/tmp/image.tar", "docker-archive");
 * await dest.abort();
 * ```
 */
export async function openLocalDestination(
  path: string,
  format: LocalDestinationFormat = "docker-archive",
): Promise<ImageDestination> {
  switch (format) {
    case "docker-archive":
      return await openArchiveDestination(path, { format: "docker" });
    case "oci-archive":
      return await openArchiveDestination(path, { format: "oci" });
    case "oci-layout":
      return await openOciLayoutDestination(path);
  }
}
