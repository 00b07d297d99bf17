/**
 * Runs tasks a few at a time, stopping the rest when one fails.
 *
 * @module
 */

/**
 * Maps `items` through `task` with at most `limit` running at once, keeping order.
 * When a task fails, the signal handed to the others is aborted and the first error
 * is thrown once every started task has settled (so nothing runs on behind the caller).
 *
 * @example
 * ```ts
 * import { mapConcurrent } from "./pool.ts";
 * const doubled = await mapConcurrent([1, 2, 3], 2, async (n) => n * 2);
 * console.log(doubled); // [2, 4, 6]
 * ```
 */
export async function mapConcurrent<T, R>(
  items: readonly T[],
  limit: number,
  task: (item: T, index: number, signal: AbortSignal) => Promise<R>,
  signal?: AbortSignal,
): Promise<R[]> {
  const stop = new AbortController();
  const onAbort = () => stop.abort(signal?.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  if (signal?.aborted) onAbort();
  const results = new Array<R>(items.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (next < items.length && !stop.signal.aborted) {
      const index = next++;
      try {
        results[index] = await task(items[index], index, stop.signal);
      } catch (error) {
        failure ??= { error };
        stop.abort(error);
      }
    }
  };
  try {
    const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker);
    await Promise.all(workers);
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  if (failure) throw failure.error;
  if (signal?.aborted) throw signal.reason;
  return results;
}
