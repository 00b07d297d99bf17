/**
 * Loading a native library with the runtime's FFI: Deno's `Deno.dlopen` (with the
 * `--allow-ffi` permission, ./ffi_deno.ts) or Bun's `bun:ffi` (./ffi_bun.ts). The two
 * describe symbols differently, so callers give both descriptions.
 *
 * {@linkcode openFirstLibrary} uses no outer name but {@linkcode openDenoLibrary} and
 * {@linkcode openBunLibrary}: the compression worker embeds the source text of the three,
 * as it cannot import modules by path.
 *
 * @module
 */

import { openBunLibrary } from "./ffi_bun.ts";
import { openDenoLibrary } from "./ffi_deno.ts";

/** A library opened by {@linkcode openFirstLibrary}. */
export interface OpenedLibrary {
  // deno-lint-ignore no-explicit-any
  library: { symbols: any; close(): void };
  /** Bun's `bun:ffi` module when running on Bun (for `ptr`), else undefined. */
  // deno-lint-ignore no-explicit-any
  bunFfi?: any;
  /** The `Deno` namespace when running on Deno (for `UnsafePointer`), else undefined. */
  // deno-lint-ignore no-explicit-any
  deno?: any;
}

/**
 * Opens the first of `names` that loads, with `symbols.bun` on Bun and `symbols.deno` on
 * Deno; resolves `undefined` when none loads, when the runtime has no FFI, or when Deno
 * lacks the FFI permission (asked, never prompted).
 *
 * @example
 * ```ts
 * import { openFirstLibrary } from "./ffi.ts";
 * const opened = await openFirstLibrary(["libz.so.1"], {
 *   bun: { zlibVersion: { args: [], returns: "cstring" } },
 *   deno: { zlibVersion: { parameters: [], result: "pointer" } },
 * });
 * opened?.library.close();
 * ```
 */
export async function openFirstLibrary(
  names: readonly string[],
  symbols: { bun: Record<string, unknown>; deno: Record<string, unknown> },
): Promise<OpenedLibrary | undefined> {
  // deno-lint-ignore no-explicit-any
  return (globalThis as any).Bun
    ? await openBunLibrary(names, symbols.bun)
    : openDenoLibrary(names, symbols.deno);
}
