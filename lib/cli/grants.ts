/**
 * What each command needs from Deno's permissions, checked before any work starts: a run
 * not granted them stops at once with the flags to add, instead of failing after the
 * download (or making Deno prompt at the terminal) and leaving half an output behind.
 *
 * push: net to the registry, read of the input (the store by default), env.
 * pull: net to the registry, read and write of the folder the output goes in (or of an
 * existing layout directory itself), env.
 * `--help`, `--version`: nothing.
 *
 * @module
 */

import { statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { allowed, requirePermissions } from "../permissions.ts";

/** The Deno net permission host of a registry URL (`host:port`), if it parses. */
function registryHost(registry: string): string | undefined {
  try {
    const url = new URL(
      /^[a-z][a-z0-9+.-]*:\/\//i.test(registry) ? registry : `https://${registry}`,
    );
    const port = url.port || (url.protocol === "http:" ? "80" : "443");
    return `${url.hostname}:${port}`;
  } catch {
    return undefined;
  }
}

/** Fails unless Deno may talk to the registry. */
export function requireRegistryAccess(registry: string): void {
  const host = registryHost(registry);
  if (host === undefined) return; // the client names a URL it cannot use
  requirePermissions([{ name: "net", host }], `the registry ${host}`);
}

/** Fails unless Deno may read the input of a push (a file or a layout directory). */
export function requireInputAccess(input: string): void {
  requirePermissions([{ name: "read", path: resolve(input) }], `the input ${input}`);
}

/**
 * The folder a pull writes in: the folder the output goes in (where an archive's
 * temporary file is made, read back and renamed, or where a new layout is created), or
 * an existing layout directory itself when Deno was granted that.
 */
export function outputFolder(output: string): string {
  const path = resolve(output);
  if (allowed({ name: "read", path }) && allowed({ name: "write", path })) {
    try {
      if (statSync(path).isDirectory()) return path;
    } catch {
      // not there yet: it goes in its folder
    }
  }
  return dirname(path);
}

/** Fails unless Deno may read and write the folder a pull writes in. */
export function requireOutputAccess(output: string): void {
  const folder = outputFolder(output);
  requirePermissions(
    [{ name: "read", path: folder }, { name: "write", path: folder }],
    `the output's folder ${folder}`,
  );
}

/**
 * Whether the blob cache (and the saved upload sessions) in `dir` may be used: Deno
 * granted read and write of it. Without them it is skipped, never prompted for.
 */
export function cacheUsable(dir: string): boolean {
  const path = resolve(dir);
  return allowed({ name: "read", path }) && allowed({ name: "write", path });
}
