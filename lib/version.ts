/**
 * The version of this package, as `apolo-images --version` prints it (kept equal to
 * deno.json's by a test).
 *
 * @module
 */

/** This package's version. */
export const VERSION = "0.1.0";
