/**
 * Deno's permissions, asked without prompting: what the library may do without making Deno
 * stop and ask the person at the terminal (or fail), and a clear message when it may not.
 * Bun and Node have no permissions: everything is allowed there.
 *
 * @module
 */

import { ImagesError } from "./errors.ts";

/** A permission the library may need: Deno's names, with the path or host it is for. */
export type PermissionNeed =
  | { name: "read" | "write"; path: string }
  | { name: "net"; host: string }
  | { name: "env"; variable?: string }
  | { name: "sys"; kind: "hostname" }
  | { name: "run" };

interface DenoPermissions {
  querySync(descriptor: Record<string, string | undefined>): { state: string };
}

function denoPermissions(): DenoPermissions | undefined {
  // deno-lint-ignore no-explicit-any
  const runtime = globalThis as any;
  if (runtime.Bun) return undefined;
  return runtime.Deno?.permissions as DenoPermissions | undefined;
}

/**
 * Whether the runtime grants `need` already (Deno), or has no permissions at all (Bun,
 * Node). Never prompts: a Deno run given `--allow-read=/out` is asked nothing more.
 *
 * @example
 * ```ts
 * import { allowed } from "./permissions.ts";
 * if (!allowed({ name: "sys", kind: "hostname" })) console.log("no host name");
 * ```
 */
export function allowed(need: PermissionNeed): boolean {
  const permissions = denoPermissions();
  if (!permissions) return true;
  const descriptor: Record<string, string | undefined> = need.name === "env"
    ? { name: "env", variable: need.variable }
    : { ...need };
  try {
    return permissions.querySync(descriptor).state === "granted";
  } catch {
    return false;
  }
}

/** The Deno flag that grants `need`, e.g. `--allow-read=/out`. */
export function permissionFlag(need: PermissionNeed): string {
  switch (need.name) {
    case "read":
    case "write":
      return `--allow-${need.name}=${need.path}`;
    case "net":
      return `--allow-net=${need.host}`;
    case "env":
      return "--allow-env";
    case "sys":
      return `--allow-sys=${need.kind}`;
    case "run":
      return "--allow-run";
  }
}

/**
 * Fails at once, before anything is fetched or written, when Deno was not granted one of
 * `needs`: one {@linkcode ImagesError} (`PERMISSION_DENIED`) naming every missing flag and
 * what it is for.
 *
 * @example
 * ```ts
 * import { requirePermissions } from "./permissions.ts";
 * requirePermissions([{ name: "read", path: "/tmp" }], "the output's folder");
 * ```
 */
export function requirePermissions(needs: PermissionNeed[], purpose: string): void {
  const missing = needs.filter((need) => !allowed(need)).map(permissionFlag);
  if (missing.length === 0) return;
  throw new ImagesError(
    `Deno was not granted access to ${purpose}: run it with ${missing.join(" ")}`,
    "PERMISSION_DENIED",
  );
}

/**
 * Whether `error` is Deno refusing an operation it was not granted (`NotCapable`,
 * formerly `PermissionDenied`).
 *
 * @example
 * ```ts
 * import { isPermissionRefusal } from "./permissions.ts";
 * console.log(isPermissionRefusal(new Error("x"))); // false
 * ```
 */
export function isPermissionRefusal(error: unknown): boolean {
  const name = (error as { name?: unknown } | null)?.name;
  return name === "NotCapable" || name === "PermissionDenied";
}
