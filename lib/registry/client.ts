/**
 * {@linkcode RegistryClient}: one OCI distribution registry (CNCF distribution, Harbor,
 * GHCR, ECR, Artifact Registry, Quay, Docker Hub, the Apolo registry), with
 * authentication, retries, verified and resumable transfers, and messages that never
 * show a credential.
 *
 * @module
 */

import { NotFoundError } from "../errors.ts";
import type { Descriptor } from "../oci/manifest.ts";
import { Authenticator } from "./auth.ts";
import { getBlob, headBlob } from "./blobs.ts";
import { verifiedDigest, type VerifiedStream, vouch } from "../oci/digest.ts";
import { type Credentials, resolveCredentials } from "./credentials.ts";
import { registryBaseUrl } from "./endpoint.ts";
import {
  AuthenticationError,
  AuthorizationError,
  errorFromResponse,
  RegistryError,
} from "./errors.ts";
import { HttpTransport } from "./transport.ts";
import { listRepositories, listTags } from "./listings.ts";
import {
  deleteManifest,
  type FetchedManifest,
  getManifest,
  headManifest,
  putManifest,
} from "./manifests.ts";
import { mountBlob } from "./mount.ts";
import { SecretSet } from "./redact.ts";
import { RegistryHttp } from "./registry_http.ts";
import { DEFAULT_RETRY_POLICY, type RetryPolicy } from "./retry.ts";
import type { BlobSource } from "./source_cursor.ts";
import { uploadBlob, type UploadedBlob } from "./upload.ts";
import type { UploadResume } from "./upload_resume.ts";
import { type UploadMode, type UploadPolicy, uploadPolicyFor } from "./upload_policy.ts";
import { cancelSession, type UploadSession } from "./upload_session.ts";

/**
 * Options of a {@linkcode RegistryClient}.
 *
 * @example
 * ```ts
 * import { RegistryClient, type RegistryClientOptions } from "./client.ts";
 * const options: RegistryClientOptions = {
 *   url: "registry.example.com",
 *   credentials: { username: "alice", password: "token" },
 *   uploadMode: "auto",
 *   maxRetries: 5,
 * };
 * const client = new RegistryClient(options);
 * ```
 */
export interface RegistryClientOptions {
  /**
   * `https://host[:port]`, `http://127.0.0.1:5000`, or a bare `host[:port]` (https,
   * or http for loopback and for an `insecure` registry).
   */
  url: string;
  /** Explicit credentials; otherwise the environment and Docker's config are searched. */
  credentials?: Credentials;
  /** Environment to read credentials from (default the process environment). */
  env?: Record<string, string | undefined>;
  /** Docker's configuration folder (default `DOCKER_CONFIG` or `~/.docker`). */
  dockerConfigDir?: string;
  /** Allow running `docker-credential-<name>` helpers named in Docker's config. Default false. */
  allowCredentialHelpers?: boolean;
  /** Plain http allowed for a bare host, and credentials may go over it. Default false. */
  insecure?: boolean;
  /** Upload mode (default `auto`: streaming, falling back to chunked, then monolithic). */
  uploadMode?: UploadMode;
  /** Bytes per chunk of a chunked upload (default 8 MiB). */
  chunkSize?: number;
  /** Smallest chunk the registry takes (default: 5 MiB for ECR, else what it says). */
  minChunkSize?: number;
  /** Largest chunk the registry takes (default: 4 MiB for GHCR, else none). */
  maxChunkSize?: number;
  /** Retries of a failed request or transfer without progress (default 5). */
  maxRetries?: number;
  /** First backoff between retries, doubling each time (default 250 ms). */
  retryBaseDelayMs?: number;
  /** Longest backoff between retries (default 10 s). */
  retryMaxDelayMs?: number;
  /** Longest `Retry-After` honoured; longer means no retry (default 10 s). */
  maxRetryAfterMs?: number;
  /** Wait for an answer (or for the network to take a body) before giving up (default 30 s). */
  connectTimeoutMs?: number;
  /** Longest pause of a body that flows, in either direction (default 60 s). */
  stallTimeoutMs?: number;
  /** Wait for the registry to commit an upload (default 5 min). */
  commitTimeoutMs?: number;
  /**
   * The `fetch` to use (tests). With one given here, the memory of an upload's sent
   * chunks is left to the garbage collector (see `HttpTransportOptions.fetch`).
   */
  fetch?: typeof fetch;
  /** Debug log, one line per request; `Authorization` and secrets never appear. */
  log?: (line: string) => void;
}

/**
 * Options of {@linkcode RegistryClient.getBlob}.
 *
 * @example
 * ```ts ignore
 * const stream = await client.getBlob("owner/app", { digest, size }, {
 *   onProgress: (bytes) => console.log(bytes),
 * });
 * ```
 */
export interface GetBlobOptions {
  /** Cancels the download. */
  signal?: AbortSignal;
  /** Called with the number of bytes received so far. */
  onProgress?: (bytes: number) => void;
}

/**
 * Options of {@linkcode RegistryClient.uploadBlob}.
 *
 * @example
 * ```ts ignore
 * await client.uploadBlob("owner/app", source, { mountFrom: ["owner/base"], signal });
 * ```
 */
export interface UploadBlobOptions {
  /** Cancels the upload (its session is cancelled too). */
  signal?: AbortSignal;
  /** Called with the number of bytes sent so far. */
  onProgress?: (bytes: number) => void;
  /** Repositories of the same registry to try mounting the blob from first (needs `digest`). */
  mountFrom?: string[];
  /** Stops the upload between chunks, keeping its session for a later resume. */
  suspend?: AbortSignal;
  /** Saves the session for a later process, and resumes a saved one. */
  resume?: UploadResume;
}

/**
 * Options of the listings.
 *
 * @example
 * ```ts ignore
 * const tags = await client.listTags("owner/app", { pageSize: 30 });
 * ```
 */
export interface ListingOptions {
  /** Entries per page (`n`), default 100. */
  pageSize?: number;
  /** Cancels the listing. */
  signal?: AbortSignal;
}

/**
 * A client of one registry.
 *
 * @example
 * ```ts ignore
 * import { RegistryClient } from "./client.ts";
 * const client = new RegistryClient({
 *   url: "registry.example.com",
 *   credentials: { username: "alice", password: Deno.env.get("TOKEN")! },
 * });
 * await client.ping();
 * const bytes = new TextEncoder().encode("hello");
 * const blob = await client.uploadBlob("alice/app", {
 *   open: (offset) => new Blob([bytes.subarray(offset)]).stream(),
 *   size: bytes.byteLength,
 * });
 * const stream = await client.getBlob("alice/app", blob);
 * console.log(await new Response(stream).text()); // hello
 * ```
 */
export class RegistryClient {
  /** The registry's base URL. */
  readonly url: URL;
  /** `host[:port]` of the registry. */
  readonly host: string;
  readonly #secrets = new SecretSet();
  readonly #http: RegistryHttp;
  readonly #policy: UploadPolicy;
  readonly #log?: (line: string) => void;

  /**
   * Creates a client; nothing is sent before the first call.
   *
   * @param options where the registry is, credentials, upload mode, retries and timeouts
   */
  constructor(options: RegistryClientOptions) {
    this.url = registryBaseUrl(options.url, options.insecure ?? false);
    this.host = this.url.host;
    const explicit = options.credentials;
    if (explicit) {
      if ("password" in explicit) this.#secrets.add(explicit.password);
      else this.#secrets.add(explicit.identityToken);
    }
    const log = options.log;
    this.#log = log ? (line) => log(this.#secrets.redact(line)) : undefined;
    const retry: RetryPolicy = {
      maxRetries: options.maxRetries ?? DEFAULT_RETRY_POLICY.maxRetries,
      baseDelayMs: options.retryBaseDelayMs ?? DEFAULT_RETRY_POLICY.baseDelayMs,
      maxDelayMs: options.retryMaxDelayMs ?? DEFAULT_RETRY_POLICY.maxDelayMs,
      maxRetryAfterMs: options.maxRetryAfterMs ?? DEFAULT_RETRY_POLICY.maxRetryAfterMs,
    };
    const transport = new HttpTransport({
      fetch: options.fetch,
      log: this.#log,
      connectTimeoutMs: options.connectTimeoutMs,
      stallTimeoutMs: options.stallTimeoutMs,
      allowInsecureCredentials: options.insecure ?? false,
    });
    const host = this.host;
    const auth = new Authenticator({
      host,
      credentials: () =>
        resolveCredentials(host, {
          credentials: explicit,
          env: options.env,
          dockerConfigDir: options.dockerConfigDir,
          allowCredentialHelpers: options.allowCredentialHelpers,
        }),
      transport,
      retry,
      secrets: this.#secrets,
      insecure: options.insecure ?? false,
    });
    this.#http = new RegistryHttp(this.url, transport, auth, retry);
    this.#policy = uploadPolicyFor(host, {
      mode: options.uploadMode,
      chunkSize: options.chunkSize,
      minChunkSize: options.minChunkSize,
      maxChunkSize: options.maxChunkSize,
      commitTimeoutMs: options.commitTimeoutMs,
    });
  }

  /** Writes a line to the debug log, if there is one (secrets are scrubbed). */
  debug(line: string): void {
    this.#log?.(line);
  }

  /** How uploads go to this registry, including what was learnt from its answers. */
  get uploadPolicy(): Readonly<UploadPolicy> {
    return this.#policy;
  }

  async #guard<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (e) {
      throw this.#secrets.redactError(await this.#explain(e));
    }
  }

  /** Says so when an authentication error happened without any credentials. */
  async #explain(e: unknown): Promise<unknown> {
    const denied = e instanceof AuthenticationError ||
      (e instanceof AuthorizationError && e.status === 401);
    if (!denied || await this.#http.auth.credentials().catch(() => undefined)) return e;
    const base = e.message.replace(
      / \((authentication failed or required|the credentials do not grant this access)\)$/,
      "",
    );
    return new AuthenticationError(
      `${base} (no credentials were found for ${this.host}: pass them as options, set ` +
        `APOLO_REGISTRY/APOLO_USERNAME/APOLO_TOKEN, or log in with Docker)`,
      { status: e.status, errors: e.errors, cause: e.cause },
    );
  }

  /**
   * Checks that the registry answers `GET /v2/` and accepts the credentials (if any).
   * Throws {@linkcode AuthenticationError} when it wants credentials it did not get.
   */
  ping(signal?: AbortSignal): Promise<void> {
    return this.#guard(async () => {
      const operation = `ping ${this.host}`;
      const res = await this.#http.send({
        method: "GET",
        url: "v2/",
        scopes: [],
        operation,
        signal,
      });
      if (!res.ok) {
        const error = await errorFromResponse(res.toResponse(), operation, "registry");
        if (error instanceof NotFoundError) {
          throw new RegistryError(`${operation}: not an OCI registry (GET /v2/ answered 404)`, {
            status: 404,
          });
        }
        throw error;
      }
      await res.discard();
    });
  }

  /** A manifest's descriptor from `HEAD`, or undefined when there is no such tag or digest. */
  headManifest(
    repo: string,
    reference: string,
    signal?: AbortSignal,
  ): Promise<Descriptor | undefined> {
    return this.#guard(() => headManifest(this.#http, repo, reference, signal));
  }

  /**
   * A manifest's bytes, media type and digest, verified. Throws
   * {@linkcode ManifestNotFoundError} when there is no such tag or digest.
   */
  getManifest(repo: string, reference: string, signal?: AbortSignal): Promise<FetchedManifest> {
    return this.#guard(() => getManifest(this.#http, repo, reference, signal));
  }

  /** Puts a manifest under a tag or its digest; returns its digest. */
  putManifest(
    repo: string,
    reference: string,
    bytes: Uint8Array,
    mediaType: string,
    signal?: AbortSignal,
  ): Promise<string> {
    return this.#guard(() =>
      putManifest(this.#http, repo, reference, { bytes, mediaType }, signal)
    );
  }

  /**
   * Deletes a manifest by digest. Throws {@linkcode ManifestNotFoundError} or
   * {@linkcode UnsupportedError} (deleting disabled).
   */
  deleteManifest(repo: string, digest: string, signal?: AbortSignal): Promise<void> {
    return this.#guard(() => deleteManifest(this.#http, repo, digest, signal));
  }

  /**
   * A blob's size, or undefined when the repository does not have it (or, rarely, has
   * it but did not say its size): to know whether it is there, ask {@linkcode hasBlob}.
   */
  headBlob(repo: string, digest: string, signal?: AbortSignal): Promise<number | undefined> {
    return this.#guard(async () => (await headBlob(this.#http, repo, digest, signal))?.size);
  }

  /** Whether the repository has a blob (a registry may leave its size unsaid). */
  hasBlob(repo: string, digest: string, signal?: AbortSignal): Promise<boolean> {
    return this.#guard(async () =>
      (await headBlob(this.#http, repo, digest, signal)) !== undefined
    );
  }

  /**
   * A blob's bytes, verified against the descriptor while they stream (the stream
   * fails before its end on a mismatch), resumed with `Range` when the connection drops.
   */
  getBlob(
    repo: string,
    descriptor: { digest: string; size?: number },
    options: GetBlobOptions = {},
  ): Promise<VerifiedStream> {
    return this.#guard(async () => {
      const stream = await getBlob(this.#http, repo, descriptor, options);
      // A pass-through changes no byte: the check getBlob made still holds.
      return vouch(this.#redacting(stream), verifiedDigest(stream));
    });
  }

  #redacting(stream: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
    const reader = stream.getReader();
    const secrets = this.#secrets;
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          const { done, value } = await reader.read();
          if (done) controller.close();
          else controller.enqueue(value);
        } catch (e) {
          throw secrets.redactError(e);
        }
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    }, { highWaterMark: 0 });
  }

  /**
   * Mounts a blob from another repository of the registry. True when mounted; false
   * when the registry would not (the session it opened instead is cancelled).
   */
  mountBlob(
    repo: string,
    digest: string,
    fromRepo: string,
    signal?: AbortSignal,
  ): Promise<boolean> {
    return this.#guard(async () => {
      const result = await mountBlob(this.#http, repo, digest, fromRepo, signal);
      if (result.mounted) return true;
      if (result.session) {
        await cancelSession(this.#http, repo, result.session.location, `mount into ${repo}`);
      }
      return false;
    });
  }

  /**
   * Uploads a blob (trying `mountFrom` repositories first when its digest is known)
   * and returns its digest and size. `source.open(offset)` must yield the same bytes
   * each time it is called: a resumed upload re-opens it instead of buffering.
   */
  uploadBlob(
    repo: string,
    source: BlobSource,
    options: UploadBlobOptions = {},
  ): Promise<UploadedBlob> {
    return this.#guard(async () => {
      let session: UploadSession | undefined;
      if (source.digest !== undefined) {
        for (const from of options.mountFrom ?? []) {
          if (from === repo) continue;
          let result;
          try {
            result = await mountBlob(this.#http, repo, source.digest, from, options.signal);
          } catch (e) {
            if (!(e instanceof RegistryError || e instanceof NotFoundError)) throw e;
            this.#log?.(`mount from ${from} failed: ${e.message}`);
            continue;
          }
          if (result.mounted) {
            const size = source.size ??
              (await headBlob(this.#http, repo, source.digest, options.signal))?.size ?? -1;
            options.onProgress?.(size);
            if (session) {
              await cancelSession(this.#http, repo, session.location, `mount into ${repo}`);
            }
            return { digest: source.digest, size };
          }
          if (result.session) {
            if (session) {
              await cancelSession(this.#http, repo, session.location, `mount into ${repo}`);
            }
            session = result.session;
          }
        }
      }
      return await uploadBlob(this.#http, this.#policy, repo, source, {
        signal: options.signal,
        onProgress: options.onProgress,
        session,
        suspend: options.suspend,
        resume: options.resume,
      });
    });
  }

  /** Every repository of the registry (`_catalog`), following the pages to the end. */
  listRepositories(options: ListingOptions = {}): Promise<string[]> {
    return this.#guard(() => listRepositories(this.#http, options));
  }

  /** Every tag of a repository, following the pages to the end. */
  listTags(repo: string, options: ListingOptions = {}): Promise<string[]> {
    return this.#guard(() => listTags(this.#http, repo, options));
  }
}
