/**
 * Loading a native library on Deno: `Deno.dlopen`, with the `--allow-ffi` permission.
 *
 * {@linkcode openDenoLibrary} is self-contained (no imports, no outer names): the
 * compression worker embeds its source text, as it cannot import modules by path.
 *
 * @module
 */

/** A library opened by {@linkcode openDenoLibrary}. */
export interface DenoLibrary {
  /** The opened library: its symbols, and `close`. */
  // deno-lint-ignore no-explicit-any
  library: { symbols: any; close(): void };
  /** The `Deno` namespace (for `UnsafePointer`). */
  // deno-lint-ignore no-explicit-any
  deno: any;
}

/**
 * Opens the first of `names` that loads, with `symbols` in `Deno.dlopen`'s terms;
 * `undefined` when none loads, when this is not Deno, or when Deno lacks the FFI
 * permission (asked, never prompted).
 *
 * @example
 * ```ts
 * import { openDenoLibrary } from "./ffi_deno.ts";
 * const opened = openDenoLibrary(["libz.so.1"], {
 *   zlibVersion: { parameters: [], result: "pointer" },
 * });
 * opened?.library.close();
 * ```
 */
export function openDenoLibrary(
  names: readonly string[],
  symbols: Record<string, unknown>,
): DenoLibrary | undefined {
  // deno-lint-ignore no-explicit-any
  const deno = (globalThis as any).Deno;
  if (typeof deno?.dlopen !== "function") return undefined;
  if (deno.permissions.querySync({ name: "ffi" }).state !== "granted") return undefined;
  for (const name of names) {
    try {
      return { library: deno.dlopen(name, symbols), deno };
    } catch {
      // not there: try the next name
    }
  }
  return undefined;
}
