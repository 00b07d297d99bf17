/**
 * Where local images live: an archive file or an OCI layout directory the user names,
 * or by default a layout directory in the user's data folder.
 *
 * @module
 */

import { homedir } from "node:os";
import { join } from "node:path";
import { env } from "node:process";

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
  const data = environment.XDG_DATA_HOME || join(homedir(), ".local", "share");
  return join(data, "apolo-images", "store");
}
