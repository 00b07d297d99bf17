/**
 * Loading a native library with the runtime's FFI: Deno's `Deno.dlopen` (with the
 * `--allow-ffi` permission) or Bun's `bun:ffi`. The two describe symbols differently, so
 * callers give both descriptions.
 *
 * {@linkcode openFirstLibrary} is self-contained (no imports, no outer names): the
 * compression worker embeds its source text, as it cannot import modules by path.
 *
 * @module
 */

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
  const runtime = globalThis as any;
  // Bun's FFI module, imported by a computed name so Deno's checker leaves it alone.
  const bunFfi = runtime.Bun ? await import(["bun", "ffi"].join(":")) : undefined;
  const deno = bunFfi ? undefined : runtime.Deno;
  if (!bunFfi) {
    if (typeof deno?.dlopen !== "function") return undefined;
    if (deno.permissions.querySync({ name: "ffi" }).state !== "granted") return undefined;
  }
  for (const name of names) {
    try {
      const library = bunFfi ? bunFfi.dlopen(name, symbols.bun) : deno.dlopen(name, symbols.deno);
      return { library, bunFfi, deno };
    } catch {
      // not there: try the next name
    }
  }
  return undefined;
}
