/**
 * The user's home folder, for default paths under it.
 *
 * @module
 */

import { homedir } from "node:os";

/**
 * `$HOME` when set, else what the system says (Deno needs `--allow-sys` for that, so it
 * is asked only when `HOME` is unset); `undefined` when neither is available.
 *
 * @example
 * ```ts
 * import { homeDirectory } from "./home.ts";
 * console.log(homeDirectory({ HOME: "/home/alice" })); // "/home/alice"
 * ```
 */
export function homeDirectory(
  environment: Record<string, string | undefined>,
): string | undefined {
  if (environment.HOME) return environment.HOME;
  try {
    return homedir();
  } catch {
    return undefined;
  }
}
