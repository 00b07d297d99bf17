/**
 * Where local images live: an archive file or an OCI layout directory the user names,
 * or by default a layout directory in the user's data folder.
 *
 * @module
 */

import { join } from "node:path";
import { env } from "node:process";
import { ImagesError } from "./errors.ts";
import { homeDirectory } from "./home.ts";

/** Output formats of a pull. */
export type OutputFormat = "docker" | "oci";

/**
 * The default local store: `$APOLO_IMAGES_STORE`, else `apolo-images/store` under
 * `$XDG_DATA_HOME` (default `~/.local/share`).
 *
 * @example
 * ```ts
 * import { defaultStorePath } from "./store.ts";
 * console.log(defaultStorePath());
 * ```
 */
export function defaultStorePath(environment: Record<string, string | undefined> = env): string {
  if (environment.APOLO_IMAGES_STORE) return environment.APOLO_IMAGES_STORE;
  const home = homeDirectory(environment);
  if (!environment.XDG_DATA_HOME && !home) {
    throw new ImagesError(
      "no local store: set APOLO_IMAGES_STORE, XDG_DATA_HOME or HOME, or give an input or output",
      "NO_STORE",
    );
  }
  const data = environment.XDG_DATA_HOME || join(home!, ".local", "share");
  return join(data, "apolo-images", "store");
}
