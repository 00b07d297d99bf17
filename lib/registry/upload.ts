/**
 * Blob uploads that survive faults, in three modes:
 *
 * - `streaming`: one `PATCH` without `Content-Range` (what Docker, skopeo and crane
 *   send), then `PUT ?digest=`. The default: every registry takes it.
 * - `chunked`: `PATCH`es with `Content-Range` of `chunkSize` bytes (raised to the
 *   registry's `OCI-Chunk-Min-Length`, capped at 4 MiB for GHCR, at least 5 MiB for ECR).
 * - `monolithic`: one `PUT ?digest=` with the whole body.
 *
 * In `auto` mode a mode the registry refuses falls back to the next one, and the
 * choice is remembered for the registry. A connection lost part-way asks the session
 * where it stands (`GET` → `Range`) and continues from there in chunks, re-opening the
 * source at that offset and restoring the hash from a snapshot; a session that cannot
 * be resumed is replaced by a new one. On failure or abort the session is cancelled.
 * Memory stays bounded by the chunk size.
 *
 * Each step of a session returns the next (a `Step`), and one bounded loop runs them:
 * what an answer means comes from ./upload_outcome.ts, the modes and chunk sizes from
 * ./upload_policy.ts, resuming from ./upload_resume.ts.
 *
 * @module
 */

import { AbortedError, DigestMismatchError, ImagesError } from "../errors.ts";
import { checkDigest } from "../oci/digest.ts";
import { headBlob } from "./blobs.ts";
import { checkRepository, withQuery } from "./endpoint.ts";
import {
  errorFromResponse,
  type OciErrorEntry,
  readOciErrors,
  RegistryConnectionError,
  RegistryError,
} from "./errors.ts";
import type { HttpResponse } from "./transport.ts";
import type { RegistryHttp, RegistryRequest } from "./registry_http.ts";
import { backoffDelay, sleep } from "./retry.ts";
import { classifyUploadAnswer } from "./upload_outcome.ts";
import { reopenSaved, resumePoint, type UploadResume } from "./upload_resume.ts";
import { type BlobSource, SourceCursor } from "./source_cursor.ts";
import {
  type ChunkSent,
  chunkSizeFor,
  type ConcreteUploadMode,
  learnSizeRule,
  nextMode,
  sizeRuleMayApply,
  type UploadPolicy,
} from "./upload_policy.ts";
import { postWholeBlob, SMALL_BLOB_BYTES, smallBodyWait } from "./small_upload.ts";
import { sha256Digest } from "../oci/digest.ts";
import {
  cancelSession,
  locationOf,
  openSession,
  rangeEnd,
  sessionStatus,
  type UploadSession,
} from "./upload_session.ts";

export type { BlobSource } from "./source_cursor.ts";

/**
 * Options of {@linkcode uploadBlob}.
 *
 * @example
 * ```ts ignore
 * await uploadBlob(http, policy, "app", source, { onProgress: (n) => console.log(n) });
 * ```
 */
export interface UploadOptions {
  /** Cancels the upload; the session is cancelled too. */
  signal?: AbortSignal;
  /** Called with the number of bytes sent so far (it goes back after a resume from an earlier offset). */
  onProgress?: (bytes: number) => void;
  /** A session already open (e.g. from a mount answered 202) to upload into. */
  session?: UploadSession;
  /**
   * Stops the upload between two chunks, leaving the session open at the registry (not
   * cancelled, unlike `signal`) so a later process can resume it: the upload then
   * rejects with an {@linkcode ImagesError} of code `SUSPENDED`. A chunk in flight
   * finishes first; a streamed or monolithic body is not interrupted.
   */
  suspend?: AbortSignal;
  /**
   * Makes the upload resumable by a later process: it goes in chunks (in `auto` mode),
   * the session is saved after every acknowledged chunk, and a saved session is
   * continued from where the registry says it stands.
   */
  resume?: UploadResume;
}

/**
 * Whether an error is the suspension of an upload (see {@linkcode UploadOptions.suspend}).
 *
 * @example
 * ```ts ignore
 * if (isSuspended(error)) console.log("stopped; run again to resume");
 * ```
 */
export function isSuspended(error: unknown): boolean {
  return error instanceof ImagesError && error.code === "SUSPENDED";
}

/**
 * A blob as stored: its digest and size.
 *
 * @example
 * ```ts ignore
 * const stored: UploadedBlob = await uploadBlob(http, policy, "app", source);
 * console.log(stored.digest, stored.size);
 * ```
 */
export interface UploadedBlob {
  /** `sha256:` of the bytes. */
  digest: string;
  /** Number of bytes. */
  size: number;
}

/**
 * Where an upload goes next, within one session: every step returns the next one, until
 * a {@linkcode SessionEnd}.
 *
 * - `attempt`: the whole blob from byte 0 in `mode`;
 * - `continue-saved`: a session an earlier process saved, from the `offset` it holds;
 * - `chunks`: chunks `from` an offset the session holds;
 * - `status`: ask where the session stands and continue there in chunks (`refused`: a
 *   chunk the registry may have refused for its size);
 * - `commit`: `PUT ?digest=` closing the session, which holds every byte.
 */
type Step =
  | { next: "attempt"; mode: ConcreteUploadMode }
  | { next: "continue-saved"; offset: number }
  | { next: "chunks"; from: number }
  | { next: "status"; refused?: ChunkSent }
  | { next: "commit" }
  | SessionEnd;

/**
 * How a session ends: the blob is `stored`; the session cannot go on and a
 * `new-session` starts over (`error`: the failure to report if that is the last); or the
 * registry refuses the mode and the upload may `fall-back` to another.
 */
type SessionEnd =
  | { next: "stored"; blob: UploadedBlob }
  | { next: "new-session"; reason: string; error?: Error }
  | { next: "fall-back"; error: Error };

/**
 * Uploads a blob into `repo` and returns its digest and size. See the module
 * documentation for modes, resuming and fallbacks.
 *
 * @example
 * ```ts ignore
 * import { uploadBlob } from "./upload.ts";
 * import { uploadPolicyFor } from "./upload_policy.ts";
 * const bytes = new TextEncoder().encode("hello");
 * const stored = await uploadBlob(http, uploadPolicyFor(http.host, {}), "app", {
 *   open: (offset) => new Blob([bytes.subarray(offset)]).stream(),
 *   size: bytes.byteLength,
 * });
 * ```
 */
export async function uploadBlob(
  http: RegistryHttp,
  policy: UploadPolicy,
  repo: string,
  source: BlobSource,
  options: UploadOptions = {},
): Promise<UploadedBlob> {
  checkRepository(repo);
  if (source.digest !== undefined) checkDigest(source.digest, `upload to ${http.host}/${repo}`);
  if (source.size !== undefined && (!Number.isSafeInteger(source.size) || source.size < 0)) {
    throw new ImagesError(
      `upload to ${http.host}/${repo}: invalid size ${source.size}`,
      "SIZE_INVALID",
    );
  }
  return await new BlobUpload(http, policy, repo, source, options).run();
}

/** How long a cancelled upload lets its request in flight finish, ms. */
export const CANCEL_GRACE_MS = 30_000;

/**
 * `body`, ended cleanly (not failed) once `signal` aborts: the request carrying it then
 * completes with the bytes sent so far and gets its answer. A read failing after the
 * abort (the source closing) ends it too.
 */
function endsOnAbort(
  body: ReadableStream<Uint8Array>,
  signal: AbortSignal,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let end = () => {};
  return new ReadableStream<Uint8Array>({
    start(controller) {
      end = () => {
        try {
          controller.close();
        } catch {
          // closed already
        }
      };
      if (signal.aborted) end();
      else signal.addEventListener("abort", end, { once: true });
    },
    async pull(controller) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (e) {
        if (signal.aborted) return end();
        signal.removeEventListener("abort", end);
        throw e;
      }
      if (signal.aborted) return; // ended: these bytes stay unsent
      if (result.done) {
        signal.removeEventListener("abort", end);
        controller.close();
      } else controller.enqueue(result.value);
    },
    cancel(reason) {
      signal.removeEventListener("abort", end);
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

class BlobUpload {
  readonly #http: RegistryHttp;
  readonly #policy: UploadPolicy;
  readonly #repo: string;
  readonly #source: BlobSource;
  readonly #options: UploadOptions;
  readonly #cursor: SourceCursor;
  readonly #what: string;
  readonly #operation: string;
  #session?: UploadSession;
  #failures = 0;
  #confirmed = 0;
  #confirmedAtFailure = -1;
  #restarts = 0;
  #lastCause?: Error;
  /** Chunked only because the upload is resumable (`auto` would have streamed). */
  #chunkedForResume = false;
  /** A small blob's bytes and digest, sent whole (`auto` mode): see ./small_upload.ts. */
  #whole?: { body: Uint8Array; digest: string };

  constructor(
    http: RegistryHttp,
    policy: UploadPolicy,
    repo: string,
    source: BlobSource,
    options: UploadOptions,
  ) {
    this.#http = http;
    this.#policy = policy;
    this.#repo = repo;
    this.#source = source;
    this.#options = options;
    this.#session = options.session;
    const name = source.digest ??
      (source.size === undefined ? "(size not known yet)" : `of ${source.size} bytes`);
    this.#what = `blob ${name} to ${http.host}/${repo}`;
    this.#operation = `upload ${this.#what}`;
    this.#cursor = new SourceCursor(source, this.#what);
  }

  async run(): Promise<UploadedBlob> {
    const auto = this.#policy.mode === "auto";
    let mode: ConcreteUploadMode = auto
      ? this.#policy.learnedMode ?? "streaming"
      : this.#policy.mode as ConcreteUploadMode;
    if (auto && mode === "streaming" && this.#options.resume) {
      mode = "chunked";
      this.#chunkedForResume = true;
    }
    try {
      this.#checkSuspended();
      let start = 0;
      if (!this.#session && this.#options.resume) {
        const saved = await reopenSaved(this.#http, this.#repo, this.#options.resume, {
          size: this.#source.size,
          operation: this.#operation,
          signal: this.#options.signal,
          log: (line) => this.#log(line),
        });
        if (saved) {
          this.#session = saved.session;
          start = saved.offset;
        }
      }
      if (auto && start === 0 && !this.#session && !this.#options.resume) {
        const stored = await this.#sendWhole();
        if (stored) return stored;
        if (this.#whole) mode = "monolithic";
      }
      for (;;) {
        this.#session ??= await openSession(
          this.#http,
          this.#repo,
          this.#operation,
          this.#options.signal,
        );
        const from = start;
        start = 0;
        let end: SessionEnd;
        try {
          end = await this.#drive(
            from > 0 ? { next: "continue-saved", offset: from } : { next: "attempt", mode },
          );
          if (end.next === "stored") {
            await this.#options.resume?.forget();
            return end.blob;
          }
        } catch (e) {
          this.#stopIfAborted();
          throw e;
        }
        this.#stopIfAborted();
        // Bounded: a fall-back moves down a finite list of modes, a new session is counted.
        if (end.next === "fall-back") mode = await this.#fallBack(mode, end.error);
        else await this.#startOver(end.reason, end.error);
      }
    } catch (e) {
      // A suspended upload keeps its session (and its record) for a later resume; so
      // does a resumable one that gave up on the network (the next run asks the session).
      const keep = isSuspended(e) ||
        (this.#options.resume !== undefined && e instanceof RegistryConnectionError &&
          !this.#options.signal?.aborted);
      if (!keep) await this.#dropSession();
      throw e;
    } finally {
      await this.#cursor.close();
    }
  }

  /**
   * Runs one session's steps until it ends. Every step that does not move the upload
   * forward follows a counted failure (which gives up after the retry bound); the count
   * of steps without progress is bounded besides, so no answer can loop it for ever.
   */
  async #drive(first: Step): Promise<SessionEnd> {
    const bound = 4 * (this.#http.retry.maxRetries + 2);
    let step = first;
    let idle = 0;
    let highest = this.#confirmed;
    for (;;) {
      if (this.#confirmed > highest) {
        highest = this.#confirmed;
        idle = 0;
      }
      if (++idle > bound) {
        throw new RegistryError(
          `${this.#operation}: no progress after ${bound} steps at byte ${this.#confirmed}`,
          { cause: this.#lastCause },
        );
      }
      switch (step.next) {
        case "attempt":
          step = await this.#attempt(step.mode);
          break;
        case "continue-saved":
          step = await this.#continueSaved(step.offset);
          break;
        case "chunks":
          step = await this.#chunked(step.from);
          break;
        case "status":
          step = await this.#resume(step.refused);
          break;
        case "commit":
          step = await this.#finish();
          break;
        default:
          return step;
      }
    }
  }

  /**
   * The mode to try after the registry refused `mode` (with `error`), the session
   * cancelled; throws `error` when there is none.
   */
  async #fallBack(mode: ConcreteUploadMode, error: Error): Promise<ConcreteUploadMode> {
    let next: ConcreteUploadMode | undefined;
    if (this.#whole) {
      // One PUT for a small blob was our choice: the registry's way, and remember.
      this.#log(`one-request upload refused (${error.message}); as usual`);
      this.#whole = undefined;
      this.#policy.smallPut = false;
      next = this.#policy.learnedMode ?? "streaming";
    } else if (this.#chunkedForResume) {
      // Chunks were our choice, not the registry's: stream, and learn nothing.
      this.#log(`chunked upload refused (${error.message}); streaming (not resumable)`);
      this.#chunkedForResume = false;
      next = "streaming";
    } else {
      next = this.#policy.mode === "auto" ? nextMode(mode) : undefined;
      if (!next) throw error;
      this.#log(`${mode} upload refused (${error.message}); trying ${next}`);
      this.#policy.learnedMode = next;
    }
    await this.#dropSession();
    return next;
  }

  /**
   * Drops the session for a new one (after a backoff), or gives up once there were more
   * new sessions than retries.
   */
  async #startOver(reason: string, error?: Error): Promise<void> {
    this.#restarts++;
    if (this.#restarts > this.#http.retry.maxRetries) {
      const cause = error ?? this.#lastCause;
      const message = `${this.#operation}: gave up after ${this.#restarts} upload sessions ` +
        `(${reason})${cause ? `; last failure: ${cause.message}` : ""}`;
      if (cause instanceof RegistryConnectionError) {
        throw new RegistryConnectionError(message, { cause });
      }
      throw error ?? new RegistryError(message, { cause });
    }
    this.#log(`starting over with a new session: ${reason}`);
    await this.#dropSession();
    this.#confirmed = 0;
    this.#failures = 0;
    this.#confirmedAtFailure = -1;
    await sleep(
      backoffDelay(this.#http.retry, this.#restarts) ?? 0,
      this.#options.signal,
      this.#operation,
    );
  }

  /**
   * A small blob goes up whole: in the `POST` where the registry takes that (done), else
   * in one `PUT` to the session it opened (`#whole` is set, the upload goes on).
   */
  async #sendWhole(): Promise<UploadedBlob | undefined> {
    const size = this.#source.size;
    if (size !== undefined && size > SMALL_BLOB_BYTES) return undefined;
    if (this.#policy.smallPut === false) return undefined;
    await this.#cursor.seek(0);
    const body = await this.#cursor.peekWhole(SMALL_BLOB_BYTES);
    if (!body || (size !== undefined && body.byteLength !== size)) return undefined;
    const digest = sha256Digest(body);
    // A wrong source fails as usual, by the cursor's checks.
    if (this.#source.digest !== undefined && digest !== this.#source.digest) return undefined;
    this.#whole = { body, digest };
    const outcome = await postWholeBlob(
      (request) => this.#sendBytes(request),
      this.#policy.singlePost,
      this.#repo,
      body,
      digest,
      this.#operation,
    );
    if (!outcome.stored) {
      this.#session = outcome.session; // cancelled on the way out if the upload was
      this.#stopIfAborted();
      return undefined;
    }
    this.#progress(body.byteLength);
    return { digest, size: body.byteLength };
  }

  #checkSuspended(): void {
    if (this.#options.suspend?.aborted) {
      throw new ImagesError(
        `${this.#operation}: suspended at byte ${this.#confirmed}; the session is kept`,
        "SUSPENDED",
      );
    }
  }

  /** Continues a saved session at `offset`: the bytes before it are read and hashed, not sent. */
  async #continueSaved(offset: number): Promise<Step> {
    this.#confirmed = offset;
    try {
      await this.#cursor.seek(offset);
    } catch (e) {
      if (!this.#sourceFailed() || !(e instanceof ImagesError) || e.code !== "SIZE_INVALID") {
        throw e;
      }
      this.#cursor.failure = undefined;
      return {
        next: "new-session",
        reason: `the source is shorter than the ${offset} bytes the session holds`,
      };
    }
    this.#progress(offset);
    return { next: "chunks", from: offset };
  }

  #log(line: string): void {
    const prefix = `${this.#operation}: `;
    this.#http.transport.log(prefix + line.split(prefix).join(""));
  }

  async #dropSession(): Promise<void> {
    const session = this.#session;
    this.#session = undefined;
    if (!session) return;
    await cancelSession(this.#http, this.#repo, session.location, this.#operation);
    await this.#options.resume?.forget();
  }

  #progress(bytes: number): void {
    this.#options.onProgress?.(bytes);
  }

  async #attempt(mode: ConcreteUploadMode): Promise<Step> {
    await this.#cursor.seek(0);
    if (this.#source.size === 0 && await this.#cursor.atEnd()) return { next: "commit" };
    if (mode === "monolithic") return await this.#monolithic();
    if (mode === "chunked") return { next: "chunks", from: 0 };
    return await this.#streaming();
  }

  #chunkSize(): number {
    return chunkSizeFor(this.#policy, this.#session?.minChunk);
  }

  /** Counts a failure; after too many without progress, gives up with `cause`. */
  async #failed(cause: Error, retryAfter?: string | null): Promise<void> {
    this.#lastCause = cause;
    if (this.#confirmed > this.#confirmedAtFailure) this.#failures = 0;
    this.#confirmedAtFailure = this.#confirmed;
    this.#failures++;
    if (this.#failures > this.#http.retry.maxRetries) {
      if (cause instanceof RegistryConnectionError || !(cause instanceof ImagesError)) {
        throw new RegistryConnectionError(
          `${this.#operation}: gave up after ${
            this.#failures - 1
          } retries at byte ${this.#confirmed}: ${cause.message}`,
          { cause },
        );
      }
      throw cause;
    }
    const delay = backoffDelay(this.#http.retry, this.#failures, retryAfter) ??
      this.#http.retry.maxRetryAfterMs;
    this.#log(
      `retry ${this.#failures} in ${delay} ms at byte ${this.#confirmed}: ${cause.message}`,
    );
    await sleep(delay, this.#options.signal, this.#operation);
  }

  /**
   * After a failure: where does the session stand? Continue from there, in chunks.
   * `refused` is a chunk the registry may have refused for its size: when the session
   * holds exactly what came before it, that was the reason.
   */
  async #resume(refused?: ChunkSent): Promise<Step> {
    const status = await sessionStatus(
      this.#http,
      this.#repo,
      this.#session!.location,
      this.#operation,
      this.#options.signal,
    );
    if (status.state === "open") this.#session!.location = status.location;
    const point = resumePoint(status, this.#cursor.position, this.#confirmed, refused);
    if (point.next === "new-session") return point;
    if (point.refusedForSize) {
      const learnt = learnSizeRule(this.#policy, point.refusedForSize);
      if (learnt) this.#log(learnt);
    }
    this.#log(`the session holds ${point.from} bytes; continuing from there`);
    this.#confirmed = point.from;
    return { next: "chunks", from: point.from };
  }

  /** Whether a failed request failed because the source did (never worth a retry). */
  #sourceFailed(): boolean {
    return this.#cursor.failure !== undefined;
  }

  /** Throws the abort once the upload was cancelled (after a request it let finish). */
  #stopIfAborted(): void {
    if (this.#options.signal?.aborted) throw new AbortedError(this.#operation);
  }

  /**
   * Sends a request carrying the blob's bytes. A cancel does not cut it: a streamed body
   * is ended where it stands and a byte body finishes (for at most
   * {@linkcode CANCEL_GRACE_MS}), so the registry answers with the session's latest state,
   * which the cancel (`DELETE`) needs: distribution refuses a stale one ("upload resumed
   * at wrong offset") and keeps the bytes it received.
   */
  async #sendBytes(request: Omit<RegistryRequest, "signal">): Promise<HttpResponse> {
    const cancel = this.#options.signal;
    if (cancel?.aborted) throw new AbortedError(this.#operation);
    const hard = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const onCancel = () => timer = setTimeout(() => hard.abort(), CANCEL_GRACE_MS);
    cancel?.addEventListener("abort", onCancel, { once: true });
    const body = request.body instanceof ReadableStream && cancel
      ? endsOnAbort(request.body, cancel)
      : request.body;
    try {
      return await this.#http.send({ ...request, body, signal: hard.signal });
    } finally {
      cancel?.removeEventListener("abort", onCancel);
      clearTimeout(timer);
    }
  }

  /** The rest of the source as a streamed request body. */
  #body(): ReadableStream<Uint8Array> {
    return this.#cursor.stream(
      this.#chunkSize(),
      (n) => this.#progress(n),
      this.#http.transport.freesSentChunks,
    );
  }

  async #streaming(): Promise<Step> {
    const session = this.#session!;
    const body = this.#body();
    let res: HttpResponse;
    try {
      res = await this.#sendBytes({
        method: "PATCH",
        url: session.location,
        headers: { "content-type": "application/octet-stream" },
        body,
        scopes: this.#scopes(),
        operation: this.#operation,
        retry: false,
      });
    } catch (e) {
      if (this.#sourceFailed()) throw this.#cursor.failure;
      if (!(e instanceof RegistryConnectionError)) throw e;
      await this.#failed(e);
      return { next: "status" };
    }
    if (res.ok) {
      await res.discard();
      if (res.headers.has("location")) session.location = locationOf(res, this.#operation);
      this.#stopIfAborted();
      const sent = this.#cursor.position;
      const end = rangeEnd(res.headers.get("range"));
      if (this.#cursor.ended && (end === undefined || end === sent || (end === 0 && sent === 1))) {
        this.#confirmed = sent;
        return { next: "commit" };
      }
      await this.#failed(
        new RegistryError(`${this.#operation}: the registry took ${end ?? "?"} of ${sent} bytes`),
      );
      return { next: "status" };
    }
    // Sizes play no part in refusing a streamed body: length 0 keeps the chunk rules out.
    return await this.#afterFailedWrite(res, { offset: 0, length: 0, last: true });
  }

  /**
   * The step after a failed PATCH of `chunk` (see ./upload_outcome.ts): a new session, a
   * fall-back, or (a failure counted, after a wait) the session's status, with the chunk
   * when the registry may have refused it for its size, so the status can tell.
   */
  async #afterFailedWrite(res: HttpResponse, chunk: ChunkSent): Promise<Step> {
    const errors = await readOciErrors(res.toResponse());
    const error = await this.#error(res, errors);
    const outcome = classifyUploadAnswer(
      {
        kind: "patch",
        atStart: chunk.offset === 0,
        mayBreakSizeRule: sizeRuleMayApply(this.#policy, chunk),
      },
      res.status,
      errors.map((e) => e.code),
    );
    switch (outcome.outcome) {
      case "session-gone":
        return { next: "new-session", reason: `the session is gone (${res.status})` };
      case "fall-back":
        return { next: "fall-back", error };
      case "resume":
        await this.#failed(error, outcome.retryAfter ? res.headers.get("retry-after") : undefined);
        return { next: "status", refused: outcome.sizeRule ? chunk : undefined };
      default:
        throw error;
    }
  }

  async #error(res: HttpResponse, errors: OciErrorEntry[]): Promise<Error> {
    const body = JSON.stringify({ errors });
    return await errorFromResponse(
      new Response(body, { status: res.status, headers: res.headers }),
      this.#operation,
      "upload",
    );
  }

  #scopes(): string[] {
    return [`repository:${this.#repo}:pull,push`];
  }

  async #chunked(start: number): Promise<Step> {
    await this.#cursor.seek(start);
    this.#cursor.checkpoint();
    let offset = start;
    for (;;) {
      if (this.#options.suspend?.aborted && !await this.#cursor.atEnd()) this.#checkSuspended();
      const size = this.#chunkSize();
      const chunk = await this.#cursor.fill(size);
      if (chunk.byteLength === 0) break;
      const last = chunk.byteLength < size || await this.#cursor.atEnd();
      const end = offset + chunk.byteLength;
      let res: HttpResponse;
      try {
        res = await this.#sendBytes({
          method: "PATCH",
          url: this.#session!.location,
          headers: {
            "content-type": "application/octet-stream",
            "content-range": `${offset}-${end - 1}`,
          },
          body: chunk,
          scopes: this.#scopes(),
          operation: this.#operation,
          retry: false,
        });
      } catch (e) {
        if (!(e instanceof RegistryConnectionError)) throw e;
        await this.#failed(e);
        return { next: "status" };
      }
      if (!res.ok) {
        return await this.#afterFailedWrite(res, { offset, length: chunk.byteLength, last });
      }
      await res.discard();
      if (res.headers.has("location")) this.#session!.location = locationOf(res, this.#operation);
      this.#stopIfAborted();
      const got = rangeEnd(res.headers.get("range"));
      if (got !== undefined && got !== end && !(got === 0 && end === 1)) {
        await this.#failed(
          new RegistryError(
            `${this.#operation}: sent bytes ${offset}-${end - 1}, the registry holds ${got}`,
          ),
        );
        return { next: "status" };
      }
      offset = end;
      this.#confirmed = end;
      this.#cursor.checkpoint();
      await this.#options.resume?.save({ location: this.#session!.location.href, offset: end });
      this.#progress(end);
    }
    return { next: "commit" };
  }

  async #monolithic(): Promise<Step> {
    const session = this.#session!;
    const known = this.#source.size;
    let digest = this.#source.digest;
    let body: Uint8Array | ReadableStream<Uint8Array>;
    // A small blob whose size was unknown was read whole before: it has that size.
    const length = known ?? this.#whole?.body.byteLength;
    if (length !== undefined && length <= this.#policy.chunkSize) {
      body = await this.#cursor.fill(length);
      if (!await this.#cursor.atEnd()) {
        if (known === undefined) {
          throw new ImagesError(`${this.#what}: the source grew between two reads`, "SIZE_INVALID");
        }
        await this.#cursor.read(1); // fails: more than size
      }
      digest = this.#checkedDigest();
    } else {
      if (digest === undefined) {
        // The digest must be in the URL: hash the whole source first, then send it.
        while (await this.#cursor.read() !== null) { /* hashing */ }
        digest = this.#cursor.digest();
        await this.#cursor.seek(0);
      }
      body = this.#body();
    }
    let res: HttpResponse;
    try {
      res = await this.#sendBytes({
        method: "PUT",
        url: withQuery(session.location, "digest", digest),
        headers: { "content-type": "application/octet-stream" },
        body,
        scopes: this.#scopes(),
        operation: this.#operation,
        // A small blob sent whole is answered like a chunk: within the stall timeout, and
        // a request that failed is counted here (not retried blindly below).
        retry: body instanceof Uint8Array && !this.#whole,
        headersTimeoutMs: this.#whole && body instanceof Uint8Array
          ? smallBodyWait(body)
          : this.#policy.commitTimeoutMs,
      });
    } catch (e) {
      if (this.#sourceFailed()) throw this.#cursor.failure;
      if (!(e instanceof RegistryConnectionError)) throw e;
      await this.#failed(e);
      if (await this.#exists(digest)) return await this.#storedAnyway(digest);
      return { next: "new-session", reason: `the connection failed: ${e.message}` };
    }
    if (res.ok) this.#session = undefined; // committed: no session left to cancel
    else this.#stopIfAborted(); // the body was cut short: the registry drops the session
    if (!(body instanceof Uint8Array)) {
      const sent = this.#checkedDigest();
      if (sent !== digest) throw new DigestMismatchError(this.#what, digest, sent);
    }
    if (res.ok) {
      await res.discard();
      return this.#done(digest, res);
    }
    const errors = await readOciErrors(res.toResponse());
    const error = await this.#error(res, errors);
    const codes = errors.map((e) => e.code);
    switch (classifyUploadAnswer({ kind: "put-whole" }, res.status, codes).outcome) {
      case "fall-back":
        return { next: "fall-back", error };
      case "restart":
        return { next: "new-session", reason: error.message, error };
      default:
        throw error;
    }
  }

  /** The digest of the bytes read, checked against the size and digest announced. */
  #checkedDigest(): string {
    const digest = this.#cursor.digest();
    const { size, digest: expected } = this.#source;
    if (size !== undefined && this.#cursor.position !== size) {
      throw new ImagesError(
        `${this.#what}: expected ${size} bytes, the source had ${this.#cursor.position}`,
        "SIZE_INVALID",
      );
    }
    if (expected !== undefined && digest !== expected) {
      throw new DigestMismatchError(this.#what, expected, digest);
    }
    return digest;
  }

  async #exists(digest: string): Promise<boolean> {
    try {
      const head = await headBlob(this.#http, this.#repo, digest, this.#options.signal);
      return head !== undefined && (head.size === undefined || head.size === this.#cursor.position);
    } catch {
      return false;
    }
  }

  /**
   * The blob is at the registry although the commit failed on the way: stored by that
   * commit, whose answer was lost, or by another upload of the same bytes. In the second
   * case this session is still open, so it is cancelled (in the first, it is gone).
   */
  async #storedAnyway(digest: string): Promise<Step> {
    await this.#dropSession();
    return this.#done(digest);
  }

  #done(digest: string, res?: HttpResponse): Step {
    const stored = res?.headers.get("docker-content-digest");
    if (stored && stored.startsWith("sha256:") && stored !== digest) {
      throw new DigestMismatchError(`${this.#what}: the registry stored`, digest, stored);
    }
    this.#session = undefined;
    this.#progress(this.#cursor.position);
    return { next: "stored", blob: { digest, size: this.#cursor.position } };
  }

  /** Commits the session: `PUT <location>?digest=`. */
  async #finish(): Promise<Step> {
    if (!this.#cursor.ended && !await this.#cursor.atEnd()) {
      throw new ImagesError(`${this.#what}: internal error: finishing before the end`, "INTERNAL");
    }
    const digest = this.#checkedDigest();
    let res: HttpResponse;
    try {
      res = await this.#http.send({
        method: "PUT",
        url: withQuery(this.#session!.location, "digest", digest),
        headers: { "content-type": "application/octet-stream" },
        body: new Uint8Array(0),
        scopes: this.#scopes(),
        operation: this.#operation,
        retry: false,
        signal: this.#options.signal,
        headersTimeoutMs: this.#policy.commitTimeoutMs,
      });
    } catch (e) {
      if (!(e instanceof RegistryConnectionError)) throw e;
      await this.#failed(e);
      if (await this.#exists(digest)) return await this.#storedAnyway(digest);
      return { next: "status" };
    }
    if (res.ok) {
      await res.discard();
      return this.#done(digest, res);
    }
    const errors = await readOciErrors(res.toResponse());
    const error = await this.#error(res, errors);
    const outcome = classifyUploadAnswer({ kind: "commit" }, res.status, errors.map((e) => e.code));
    switch (outcome.outcome) {
      case "restart":
        return {
          next: "new-session",
          reason: `the registry computed another digest than ${digest}`,
          error: new DigestMismatchError(
            `${this.#what} as received by ${this.#http.host}`,
            digest,
            "another digest",
          ),
        };
      case "session-gone":
        if (await this.#exists(digest)) return this.#done(digest);
        return { next: "new-session", reason: `the session is gone (${res.status})` };
      case "resume":
        await this.#failed(error, outcome.retryAfter ? res.headers.get("retry-after") : undefined);
        return { next: "status" };
      case "retry":
        await this.#failed(error, res.headers.get("retry-after"));
        return { next: "commit" };
      default:
        throw error;
    }
  }
}
