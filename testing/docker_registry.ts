/**
 * Starts Debian's `docker-registry` (CNCF distribution 2.8) for tests and benchmarks,
 * on 127.0.0.1 and a free port, with a temporary storage folder and deleting enabled,
 * in one of three configurations:
 *
 * - `none`: no authentication;
 * - `htpasswd`: Basic authentication (`htpasswd -Bbn`), users `tester` and `reader`;
 * - `token`: `auth.token` with a key and self-signed certificate made by `openssl`, and
 *   a token service (./token_server.ts) that signs JWTs the registry verifies;
 *   `tester` may pull, push and delete, `reader` only pull.
 *
 * `stop()` kills the registry and removes every temporary file.
 *
 * @example
 * ```ts ignore
 * import { startRegistry } from "./docker_registry.ts";
 * const registry = await startRegistry({ auth: "htpasswd" });
 * console.log(registry.url, registry.username, registry.password);
 * await registry.stop();
 * ```
 *
 * @module
 */

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { startTokenServer, type TokenServer } from "./token_server.ts";

/** The registry binary. */
export const REGISTRY_BINARY = "/usr/bin/docker-registry";

/** Whether the registry binary is installed (tests skip themselves when it is not). */
export const registryAvailable: boolean = existsSync(REGISTRY_BINARY);

/** Options of {@linkcode startRegistry}. */
export interface StartRegistryOptions {
  /** Authentication: none (default), htpasswd Basic, or token. */
  auth?: "none" | "htpasswd" | "token";
  /** Token auth: how long the registry accepts a token, s (default 300). */
  tokenValidSeconds?: number;
  /** Token auth: `expires_in` told to clients, s (default `tokenValidSeconds`). */
  tokenExpiresIn?: number;
  /** Token auth: identity tokens and the users they stand for. */
  identityTokens?: Record<string, string>;
  /** Token auth: anonymous requests may pull. */
  anonymousPull?: boolean;
  /** Storage folder to use (kept on stop); default a new temporary one (removed on stop). */
  storageDir?: string;
}

/** A running registry. */
export interface RunningRegistry {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** `127.0.0.1:<port>`. */
  host: string;
  /** The user who may do everything (htpasswd and token configs). */
  username?: string;
  /** Their password. */
  password?: string;
  /** A user who may only pull (token config), and who may do everything with htpasswd. */
  readerUsername?: string;
  /** Their password. */
  readerPassword?: string;
  /** The token service (token config). */
  tokenServer?: TokenServer;
  /** Where the registry keeps its data. */
  storageDir: string;
  /** Stops the registry and starts it again on the same port and storage. */
  restart(): Promise<void>;
  /** Stops the registry and removes its temporary files. */
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
let exitHook = false;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

function htpasswdLine(user: string, password: string): string {
  return execFileSync("htpasswd", ["-Bbn", user, password], { encoding: "utf8" }).trim();
}

/**
 * A key and a self-signed certificate made by `openssl` in `dir` (for the token service's
 * signatures, or for a TLS server a test must see refused), with `extensions` such as
 * `["-addext", "subjectAltName=IP:127.0.0.1"]`.
 */
export function makeCertificate(
  dir: string,
  subject = "/CN=test-token-issuer",
  extensions: string[] = [],
): { keyFile: string; certFile: string } {
  const keyFile = join(dir, "token.key");
  const certFile = join(dir, "token.crt");
  execFileSync("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    keyFile,
    "-out",
    certFile,
    "-days",
    "2",
    "-subj",
    subject,
    ...extensions,
  ], { stdio: "ignore" });
  return { keyFile, certFile };
}

function config(
  port: number,
  storage: string,
  auth: string,
): string {
  return [
    "version: 0.1",
    "log:",
    "  level: error",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${storage}`,
    "  delete:",
    "    enabled: true",
    "  maintenance:",
    "    uploadpurging:",
    "      enabled: false",
    "http:",
    `  addr: 127.0.0.1:${port}`,
    `  secret: ${randomBytes(16).toString("hex")}`,
    auth,
  ].join("\n") + "\n";
}

async function waitReady(url: string, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`docker-registry exited with ${child.exitCode}: ${stderr().slice(-2000)}`);
    }
    try {
      const res = await fetch(`${url}/v2/`);
      await res.body?.cancel();
      if (res.status === 200 || res.status === 401) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`docker-registry did not answer on ${url} within 15 s: ${stderr().slice(-2000)}`);
}

/**
 * Starts a registry; see the module documentation.
 *
 * @example
 * ```ts ignore
 * const registry = await startRegistry({ auth: "token", tokenValidSeconds: 5 });
 * await registry.stop();
 * ```
 */
export async function startRegistry(options: StartRegistryOptions = {}): Promise<RunningRegistry> {
  const mode = options.auth ?? "none";
  const dir = await mkdtemp(join(tmpdir(), "apolo-registry-"));
  const storage = options.storageDir ?? join(dir, "storage");
  const username = "tester";
  const password = `pw-${randomBytes(12).toString("hex")}`;
  const readerUsername = "reader";
  const readerPassword = `rd-${randomBytes(12).toString("hex")}`;
  let tokenServer: TokenServer | undefined;
  let authConfig = "";
  try {
    if (mode === "htpasswd") {
      const file = join(dir, "htpasswd");
      await writeFile(
        file,
        htpasswdLine(username, password) + "\n" + htpasswdLine(readerUsername, readerPassword) +
          "\n",
      );
      authConfig = ["auth:", "  htpasswd:", "    realm: test-registry", `    path: ${file}`].join(
        "\n",
      );
    } else if (mode === "token") {
      const { keyFile, certFile } = makeCertificate(dir);
      tokenServer = await startTokenServer({
        keyPem: await readFile(keyFile, "utf8"),
        certPem: await readFile(certFile, "utf8"),
        issuer: "test-token-issuer",
        service: "test-registry",
        users: { [username]: password, [readerUsername]: readerPassword },
        readOnlyUsers: [readerUsername],
        identityTokens: options.identityTokens,
        anonymousPull: options.anonymousPull,
        validSeconds: options.tokenValidSeconds,
        expiresIn: options.tokenExpiresIn,
      });
      authConfig = [
        "auth:",
        "  token:",
        `    realm: ${tokenServer.realm}`,
        "    service: test-registry",
        "    issuer: test-token-issuer",
        `    rootcertbundle: ${certFile}`,
      ].join("\n");
    }
  } catch (e) {
    await tokenServer?.close();
    await rm(dir, { recursive: true, force: true });
    throw e;
  }

  let child: ChildProcess | undefined;
  let port = 0;
  let log = "";
  const launch = async (fixedPort?: number) => {
    for (let attempt = 0;; attempt++) {
      port = fixedPort ?? await freePort();
      const file = join(dir, "config.yml");
      await writeFile(file, config(port, storage, authConfig));
      log = "";
      const proc = spawn(REGISTRY_BINARY, ["serve", file], {
        stdio: ["ignore", "pipe", "pipe"],
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir },
      });
      proc.stdout!.on(
        "data",
        (d: Uint8Array) => log = (log + new TextDecoder().decode(d)).slice(-8000),
      );
      proc.stderr!.on(
        "data",
        (d: Uint8Array) => log = (log + new TextDecoder().decode(d)).slice(-8000),
      );
      running.add(proc);
      proc.on("exit", () => running.delete(proc));
      child = proc;
      try {
        await waitReady(`http://127.0.0.1:${port}`, proc, () => log);
        return;
      } catch (e) {
        proc.kill("SIGKILL");
        if (attempt >= 2 || fixedPort !== undefined) throw e;
      }
    }
  };
  const kill = async () => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    proc.kill("SIGTERM");
    const timer = setTimeout(() => proc.kill("SIGKILL"), 3000);
    await exited;
    clearTimeout(timer);
  };

  if (!exitHook) {
    exitHook = true;
    process.on("exit", () => {
      for (const proc of running) proc.kill("SIGKILL");
    });
  }

  try {
    await launch();
  } catch (e) {
    await tokenServer?.close();
    await rm(dir, { recursive: true, force: true });
    throw e;
  }

  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    ...(mode === "none" ? {} : { username, password, readerUsername, readerPassword }),
    tokenServer,
    storageDir: storage,
    async restart() {
      await kill();
      await launch(port);
    },
    async stop() {
      await kill();
      await tokenServer?.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
