/**
 * Where the credentials for a registry come from, in order: the caller's options, the
 * environment (`APOLO_USERNAME` + `APOLO_TOKEN` for the host named by `APOLO_REGISTRY`),
 * Docker's `config.json` `auths` (base64 `auth`, `identitytoken`), and then, only when the
 * caller allows running programs, `credHelpers` / `credsStore` helpers
 * (`docker-credential-<name> get`).
 *
 * @module
 */

import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { homeDirectory } from "../home.ts";
import { allowed } from "../permissions.ts";
import { join } from "node:path";
import process from "node:process";
import { ImagesError } from "../errors.ts";

/**
 * A user name with a password (or a token used as one), or an OAuth2 identity (refresh) token.
 *
 * @example
 * ```ts
 * import type { Credentials } from "./credentials.ts";
 * const basic: Credentials = { username: "alice", password: "token" };
 * const oauth: Credentials = { identityToken: "refresh-token" };
 * ```
 */
export type Credentials =
  | { username: string; password: string }
  | { identityToken: string; username?: string };

/**
 * Credentials and a description of where they were found, for messages.
 *
 * @example
 * ```ts
 * import { resolveCredentials, type ResolvedCredentials } from "./credentials.ts";
 * const found: ResolvedCredentials | undefined = await resolveCredentials("r.example.com");
 * console.log(found?.source);
 * ```
 */
export interface ResolvedCredentials {
  /** The credentials. */
  credentials: Credentials;
  /** Where they came from, e.g. `options`, `environment`, `/home/u/.docker/config.json`. */
  source: string;
}

/**
 * Where {@linkcode resolveCredentials} may look.
 *
 * @example
 * ```ts
 * import { resolveCredentials } from "./credentials.ts";
 * const found = await resolveCredentials("r.example.com", {
 *   dockerConfigDir: "/home/alice/.docker",
 *   allowCredentialHelpers: true,
 * });
 * ```
 */
export interface CredentialLookup {
  /** Explicit credentials: used as they are. */
  credentials?: Credentials;
  /** Environment to read (default the process environment). */
  env?: Record<string, string | undefined>;
  /** Docker's configuration folder (default `DOCKER_CONFIG`, else `~/.docker`). */
  dockerConfigDir?: string;
  /** Whether `docker-credential-<name>` programs may be run. Default false. */
  allowCredentialHelpers?: boolean;
  /** How long a helper may take. Default 30 s. */
  helperTimeoutMs?: number;
}

const DOCKER_HUB_HOSTS = new Set(["docker.io", "index.docker.io", "registry-1.docker.io"]);
const DOCKER_HUB_KEY = "https://index.docker.io/v1/";

/**
 * The host (and port) a `config.json` key or a registry address names, in lower case,
 * with Docker Hub's aliases folded into `index.docker.io`.
 *
 * @example
 * ```ts
 * import { configHostKey } from "./credentials.ts";
 * configHostKey("https://index.docker.io/v1/"); // "index.docker.io"
 * configHostKey("Registry.Example.com:5000"); // "registry.example.com:5000"
 * ```
 */
export function configHostKey(text: string): string {
  let host = text.trim().toLowerCase().replace(/^[a-z][a-z0-9+.-]*:\/\//, "");
  host = host.split("/")[0];
  return DOCKER_HUB_HOSTS.has(host) ? "index.docker.io" : host;
}

/**
 * Finds the credentials for a registry host, or undefined for anonymous access.
 *
 * @example
 * ```ts
 * import { resolveCredentials } from "./credentials.ts";
 * const found = await resolveCredentials("registry.example.com", {
 *   env: { APOLO_REGISTRY: "registry.example.com", APOLO_USERNAME: "u", APOLO_TOKEN: "t" },
 * });
 * console.log(found?.source); // "environment (APOLO_USERNAME, APOLO_TOKEN)"
 * ```
 */
export async function resolveCredentials(
  host: string,
  lookup: CredentialLookup = {},
): Promise<ResolvedCredentials | undefined> {
  if (lookup.credentials) return { credentials: lookup.credentials, source: "options" };
  const env = lookup.env ?? permittedEnv();
  const fromEnv = environmentCredentials(host, env);
  if (fromEnv) return fromEnv;
  const home = homeDirectory(env);
  const dir = lookup.dockerConfigDir ?? env.DOCKER_CONFIG ?? (home && join(home, ".docker"));
  if (!dir) return undefined;
  const file = join(dir, "config.json");
  const config = await readDockerConfig(file);
  if (!config) return undefined;
  const key = configHostKey(host);
  const entry = findEntry(config.auths, key);
  if (entry) {
    const found = entryCredentials(entry.value, file, host);
    if (found) return { credentials: found, source: file };
  }
  const helper = findEntry(config.credHelpers, key)?.value ?? config.credsStore;
  if (typeof helper === "string" && helper !== "") {
    if (!lookup.allowCredentialHelpers) return undefined;
    const serverUrl = key === "index.docker.io" ? DOCKER_HUB_KEY : host;
    // the helper gets the whole environment it would get from Docker (keyrings need it)
    const helperEnv = lookup.env ?? safe(() => ({ ...process.env })) ?? env;
    const found = await runHelper(helper, serverUrl, helperEnv, lookup.helperTimeoutMs ?? 30_000);
    if (found) return { credentials: found, source: `docker-credential-${helper}` };
  }
  return undefined;
}

/** Calls `f`, or undefined when it throws (e.g. a permission Deno did not grant). */
function safe<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}

/**
 * The variables this module reads, each undefined when the runtime does not let us
 * read it (Deno without `--allow-env` for it).
 */
function permittedEnv(): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const name of ["APOLO_REGISTRY", "APOLO_USERNAME", "APOLO_TOKEN", "DOCKER_CONFIG", "HOME"]) {
    out[name] = safe(() => process.env[name]);
  }
  const path = safe(() => process.env.PATH);
  if (path !== undefined) out.PATH = path;
  return out;
}

function environmentCredentials(
  host: string,
  env: Record<string, string | undefined>,
): ResolvedCredentials | undefined {
  const registry = env.APOLO_REGISTRY;
  const username = env.APOLO_USERNAME;
  const token = env.APOLO_TOKEN;
  if (!registry || !username || !token) return undefined;
  if (configHostKey(registry) !== configHostKey(host)) return undefined;
  return {
    credentials: { username, password: token },
    source: "environment (APOLO_USERNAME, APOLO_TOKEN)",
  };
}

interface DockerConfig {
  auths?: Record<string, unknown>;
  credHelpers?: Record<string, unknown>;
  credsStore?: unknown;
}

async function readDockerConfig(file: string): Promise<DockerConfig | undefined> {
  // Deno without read permission for it: as if there were no config (asked, not prompted)
  if (!allowed({ name: "read", path: file })) return undefined;
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    // Deno without read permission for it: as if there were no config
    const name = (e as { name?: string }).name;
    if (name === "NotCapable" || name === "PermissionDenied") return undefined;
    throw new ImagesError(
      `cannot read Docker config ${file}: ${(e as Error).message}`,
      "CREDENTIALS_INVALID",
    );
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new ImagesError(`Docker config ${file} is not valid JSON`, "CREDENTIALS_INVALID");
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new ImagesError(`Docker config ${file}: expected a JSON object`, "CREDENTIALS_INVALID");
  }
  return doc as DockerConfig;
}

function findEntry(
  map: Record<string, unknown> | undefined,
  key: string,
): { value: unknown } | undefined {
  if (typeof map !== "object" || map === null) return undefined;
  for (const [k, value] of Object.entries(map)) {
    if (configHostKey(k) === key) return { value };
  }
  return undefined;
}

function entryCredentials(entry: unknown, file: string, host: string): Credentials | undefined {
  if (typeof entry !== "object" || entry === null) return undefined;
  const e = entry as Record<string, unknown>;
  let username = typeof e.username === "string" ? e.username : undefined;
  let password = typeof e.password === "string" ? e.password : undefined;
  if (typeof e.auth === "string" && e.auth !== "") {
    let decoded: string;
    try {
      decoded = new TextDecoder("utf-8", { fatal: true }).decode(
        Uint8Array.from(atob(e.auth), (c) => c.charCodeAt(0)),
      );
    } catch {
      throw new ImagesError(
        `Docker config ${file}: the "auth" of ${host} is not valid base64`,
        "CREDENTIALS_INVALID",
      );
    }
    const colon = decoded.indexOf(":");
    if (colon < 0) {
      throw new ImagesError(
        `Docker config ${file}: the "auth" of ${host} is not base64 of user:password`,
        "CREDENTIALS_INVALID",
      );
    }
    username = decoded.slice(0, colon);
    password = decoded.slice(colon + 1);
  }
  if (typeof e.identitytoken === "string" && e.identitytoken !== "") {
    return { identityToken: e.identitytoken, ...(username ? { username } : {}) };
  }
  if (username !== undefined && password !== undefined && (username !== "" || password !== "")) {
    return { username, password };
  }
  return undefined;
}

/**
 * Runs `docker-credential-<helper> get` with the server URL on its standard input.
 * Undefined when the helper has no credentials for it.
 *
 * @example
 * ```ts ignore
 * import { runHelper } from "./credentials.ts";
 * const creds = await runHelper("pass", "registry.example.com", Deno.env.toObject(), 30_000);
 * ```
 */
export async function runHelper(
  helper: string,
  serverUrl: string,
  env: Record<string, string | undefined>,
  timeoutMs: number,
): Promise<Credentials | undefined> {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(helper)) {
    throw new ImagesError(
      `invalid credential helper name ${JSON.stringify(helper)} in Docker config`,
      "CREDENTIALS_INVALID",
    );
  }
  const program = `docker-credential-${helper}`;
  const { code, stdout, stderr } = await run(program, ["get"], serverUrl, env, timeoutMs);
  if (code !== 0) {
    if (/credentials not found/i.test(stdout + stderr)) return undefined;
    throw new ImagesError(
      `${program} get failed for ${serverUrl} (exit code ${code}): ${
        (stderr || stdout).trim().split("\n")[0].slice(0, 200)
      }`,
      "CREDENTIALS_HELPER",
    );
  }
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(stdout);
  } catch {
    throw new ImagesError(`${program} get printed no JSON for ${serverUrl}`, "CREDENTIALS_HELPER");
  }
  const username = typeof doc.Username === "string" ? doc.Username : "";
  const secret = typeof doc.Secret === "string" ? doc.Secret : "";
  if (secret === "") return undefined;
  if (username === "<token>") return { identityToken: secret };
  return { username, password: secret };
}

function run(
  program: string,
  args: string[],
  input: string,
  env: Record<string, string | undefined>,
  timeoutMs: number,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    let child;
    try {
      child = spawn(program, args, {
        env: Object.fromEntries(
          Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined),
        ),
        stdio: ["pipe", "pipe", "pipe"],
      });
    } catch (e) {
      reject(
        new ImagesError(`cannot run ${program}: ${(e as Error).message}`, "CREDENTIALS_HELPER"),
      );
      return;
    }
    let stdout = "";
    let stderr = "";
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.stdout!.on("data", (d: Uint8Array) => {
      if (stdout.length < 1 << 20) stdout += new TextDecoder().decode(d);
    });
    child.stderr!.on("data", (d: Uint8Array) => {
      if (stderr.length < 1 << 16) stderr += new TextDecoder().decode(d);
    });
    child.on("error", (e: Error) => {
      clearTimeout(timer);
      reject(new ImagesError(`cannot run ${program}: ${e.message}`, "CREDENTIALS_HELPER"));
    });
    child.on("close", (code: number | null) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    child.stdin!.on("error", () => {});
    child.stdin!.end(input);
  });
}
