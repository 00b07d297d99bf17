/**
 * Reading blobs: `HEAD` for existence and size; `GET` streamed, its SHA-256 verified
 * on the fly, resumed with `Range` from the last byte received when the connection
 * drops, redirects to storage on another origin followed without `Authorization`.
 *
 * @module
 */

import { ImagesError } from "../errors.ts";
import { checkDigest, type VerifiedStream, verifiedStream } from "../oci/digest.ts";
import { checkRepository } from "./endpoint.ts";
import { errorFromResponse, RegistryConnectionError, StalledError } from "./errors.ts";
import type { HttpResponse } from "./http.ts";
import type { RegistryHttp } from "./request.ts";
import { backoffDelay, sleep } from "./retry.ts";
import { noteGarbage } from "../gc.ts";

/**
 * Options of {@linkcode getBlob}.
 *
 * @example
 * ```ts ignore
 * const stream = await getBlob(http, "app", { digest }, { onProgress: (n) => console.log(n) });
 * ```
 */
export interface GetBlobOptions {
  /** Cancels the download; the stream then fails with `AbortedError`. */
  signal?: AbortSignal;
  /** Called with the number of bytes received so far. */
  onProgress?: (bytes: number) => void;
}

/**
 * The size of a blob, or undefined when the repository does not have it.
 *
 * @example
 * ```ts ignore
 * import { headBlob } from "./blobs.ts";
 * const size = await headBlob(http, "app", "sha256:…");
 * ```
 */
export async function headBlob(
  http: RegistryHttp,
  repo: string,
  digest: string,
  signal?: AbortSignal,
): Promise<number | undefined> {
  checkRepository(repo);
  const operation = `check blob ${digest} in ${http.host}/${repo}`;
  checkDigest(digest, operation);
  const res = await http.send({
    method: "HEAD",
    url: `v2/${repo}/blobs/${digest}`,
    scopes: [`repository:${repo}:pull`],
    operation,
    signal,
  });
  await res.discard();
  if (res.status === 404) return undefined;
  if (!res.ok) throw await errorFromResponse(res.toResponse(), operation, "blob");
  const length = Number(res.headers.get("content-length") ?? NaN);
  return Number.isSafeInteger(length) && length >= 0 ? length : -1;
}

/**
 * A blob's bytes as a stream that fails (before its end) when they do not match
 * `descriptor`'s digest (and size, when given). A dropped or stalled connection is
 * resumed with `Range` up to the retry bound. Throws {@linkcode BlobNotFoundError}
 * at once when the repository does not have the blob.
 *
 * @example
 * ```ts ignore
 * import { getBlob } from "./blobs.ts";
 * const stream = await getBlob(http, "app", { digest: "sha256:…", size: 1234 });
 * await stream.pipeTo(file.writable);
 * ```
 */
export async function getBlob(
  http: RegistryHttp,
  repo: string,
  descriptor: { digest: string; size?: number },
  options: GetBlobOptions = {},
): Promise<VerifiedStream> {
  checkRepository(repo);
  const digest = descriptor.digest;
  const what = `blob ${digest} of ${http.host}/${repo}`;
  const operation = `get ${what}`;
  checkDigest(digest, operation);
  const { signal, onProgress } = options;

  const open = async (offset: number): Promise<HttpResponse> => {
    const res = await http.send({
      method: "GET",
      url: `v2/${repo}/blobs/${digest}`,
      headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
      scopes: [`repository:${repo}:pull`],
      operation,
      signal,
    });
    if (!res.ok) throw await errorFromResponse(res.toResponse(), operation, "blob");
    return res;
  };

  let res = await open(0);
  const length = Number(res.headers.get("content-length") ?? NaN);
  const size = descriptor.size ?? (Number.isSafeInteger(length) ? length : undefined);
  let reader = res.body?.getReader();
  let offset = 0;
  let skip = 0;
  let failures = 0;

  const resume = async (cause: Error) => {
    // A second stall without a byte between: one more would cost another stall timeout.
    if (failures >= http.retry.maxRetries || (cause instanceof StalledError && failures >= 1)) {
      throw new RegistryConnectionError(
        `${operation}: gave up after ${failures} retries at byte ${offset}${
          size === undefined ? "" : ` of ${size}`
        }: ${cause.message}`,
        { cause },
      );
    }
    failures++;
    // Not awaited: on Deno, cancelling a stalled fetch body can wait for ever (a loaded run hung
    // here about once in a dozen); the new request does not depend on the old one's end.
    void reader?.cancel().catch(() => {});
    const delay = backoffDelay(http.retry, failures) ?? 0;
    http.transport.log(
      `${operation}: resuming at byte ${offset} in ${delay} ms (${cause.message})`,
    );
    await sleep(delay, signal, operation);
    res = await open(offset);
    skip = 0;
    if (res.status === 206) {
      const start = contentRangeStart(res.headers.get("content-range"));
      if (start === undefined || start > offset) {
        await res.discard();
        throw new ImagesError(
          `${operation}: asked for bytes from ${offset}, the registry sent ${
            JSON.stringify(res.headers.get("content-range"))
          }`,
          "REGISTRY_PROTOCOL",
        );
      }
      skip = offset - start;
    } else skip = offset; // the whole blob again: skip what we have
    reader = res.body?.getReader();
  };

  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (;;) {
        try {
          const next = reader ? await reader.read() : { done: true as const, value: undefined };
          if (next.done) {
            if (size !== undefined && offset < size) {
              throw new RegistryConnectionError(
                `${operation}: the body ended after ${offset} of ${size} bytes`,
              );
            }
            controller.close();
            return;
          }
          let chunk = next.value;
          if (skip > 0) {
            const n = Math.min(skip, chunk.byteLength);
            skip -= n;
            chunk = chunk.subarray(n);
            if (chunk.byteLength === 0) continue;
          }
          offset += chunk.byteLength;
          failures = 0;
          onProgress?.(offset);
          noteGarbage(chunk.byteLength, "response");
          controller.enqueue(chunk);
          return;
        } catch (e) {
          if (!(e instanceof RegistryConnectionError)) throw e;
          await resume(e);
        }
      }
    },
    async cancel(reason) {
      await reader?.cancel(reason).catch(() => {});
    },
  }, { highWaterMark: 0 });
  return verifiedStream(stream, { digest, size, what });
}

function contentRangeStart(value: string | null): number | undefined {
  const m = /^\s*bytes\s+(\d+)-\d+\/(?:\d+|\*)\s*$/i.exec(value ?? "");
  return m ? Number(m[1]) : undefined;
}
