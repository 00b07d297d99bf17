/**
 * Loading a native library on Bun: `bun:ffi`, which needs no permission.
 *
 * {@linkcode openBunLibrary} is self-contained (no imports, no outer names): the
 * compression worker embeds its source text, as it cannot import modules by path.
 *
 * @module
 */

/** A library opened by {@linkcode openBunLibrary}. */
export interface BunLibrary {
  /** The opened library: its symbols, and `close`. */
  // deno-lint-ignore no-explicit-any
  library: { symbols: any; close(): void };
  /** Bun's `bun:ffi` module (for `ptr`). */
  // deno-lint-ignore no-explicit-any
  bunFfi: any;
}

/**
 * Opens the first of `names` that loads, with `symbols` in `bun:ffi`'s terms;
 * `undefined` when none loads. Only on Bun (elsewhere `bun:ffi` does not import).
 *
 * @example
 * ```ts ignore
 * import { openBunLibrary } from "./ffi_bun.ts";
 * const opened = await openBunLibrary(["libz.so.1"], {
 *   zlibVersion: { args: [], returns: "cstring" },
 * });
 * opened?.library.close();
 * ```
 */
export async function openBunLibrary(
  names: readonly string[],
  symbols: Record<string, unknown>,
): Promise<BunLibrary | undefined> {
  // Imported by a computed name so Deno's checker leaves it alone.
  const bunFfi = await import(["bun", "ffi"].join(":"));
  for (const name of names) {
    try {
      return { library: bunFfi.dlopen(name, symbols), bunFfi };
    } catch {
      // not there: try the next name
    }
  }
  return undefined;
}
