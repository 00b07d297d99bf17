/**
 * When to try a request again and how long to wait: exponential backoff with jitter,
 * bounded, honouring the registry's `Retry-After`.
 *
 * @module
 */

import { AbortedError } from "../errors.ts";
import { parseRetryAfter } from "./errors.ts";

/**
 * How often and how patiently to retry.
 *
 * @example
 * ```ts
 * import type { RetryPolicy } from "./retry.ts";
 * const policy: RetryPolicy = { maxRetries: 3, baseDelayMs: 100, maxDelayMs: 2000, maxRetryAfterMs: 10_000 };
 * ```
 */
export interface RetryPolicy {
  /** Retries after the first attempt. Default 5. */
  maxRetries: number;
  /** The first backoff; doubles each retry. Default 250 ms. */
  baseDelayMs: number;
  /** The longest backoff. Default 10 s. */
  maxDelayMs: number;
  /**
   * The longest `Retry-After` honoured; a registry asking for more gets no retry.
   * Default 10 s: with 5 retries one request waits at most 50 s on the registry's word.
   */
  maxRetryAfterMs: number;
}

/**
 * The defaults of {@linkcode RetryPolicy}.
 *
 * @example
 * ```ts
 * import { DEFAULT_RETRY_POLICY } from "./retry.ts";
 * const patient = { ...DEFAULT_RETRY_POLICY, maxRetries: 10 };
 * ```
 */
export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxRetries: 5,
  baseDelayMs: 250,
  maxDelayMs: 10_000,
  maxRetryAfterMs: 10_000,
};

/**
 * Statuses that a repeat of the same request may cure.
 *
 * @example
 * ```ts
 * import { RETRYABLE_STATUSES } from "./retry.ts";
 * RETRYABLE_STATUSES.has(503); // true
 * ```
 */
export const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([408, 429, 500, 502, 503, 504]);

/**
 * How long to wait before retry number `attempt` (1 for the first retry): the
 * registry's `Retry-After` when it sent one (undefined when that is over
 * `maxRetryAfterMs`: do not retry), else exponential backoff with full jitter
 * between half and all of `baseDelayMs * 2^(attempt-1)`, capped at `maxDelayMs`.
 *
 * @example
 * ```ts
 * import { backoffDelay, DEFAULT_RETRY_POLICY } from "./retry.ts";
 * backoffDelay(DEFAULT_RETRY_POLICY, 1); // between 125 and 250
 * backoffDelay(DEFAULT_RETRY_POLICY, 1, "3"); // 3000
 * ```
 */
export function backoffDelay(
  policy: RetryPolicy,
  attempt: number,
  retryAfter?: string | null,
): number | undefined {
  const asked = parseRetryAfter(retryAfter ?? null);
  if (asked !== undefined) return asked > policy.maxRetryAfterMs ? undefined : asked;
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

/**
 * Waits `ms`, or rejects with {@linkcode AbortedError} naming `operation` when `signal` fires.
 *
 * @example
 * ```ts
 * import { sleep } from "./retry.ts";
 * await sleep(10, undefined, "retry");
 * ```
 */
export function sleep(
  ms: number,
  signal: AbortSignal | undefined,
  operation: string,
): Promise<void> {
  if (signal?.aborted) return Promise.reject(new AbortedError(operation));
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(new AbortedError(operation));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
