/**
 * Runs tasks a few at a time, stopping the rest when one fails.
 *
 * @module
 */

/**
 * Maps `items` through `task` keeping order, starting them in order while the costs of
 * those running add up to at most `limit` (each costs 1 unless `cost` says otherwise;
 * one always runs, whatever its cost). When a task fails, the signal handed to the
 * others is aborted and the first error is thrown once every started task has settled
 * (so nothing runs on behind the caller).
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
  cost: (item: T) => number = () => 1,
): Promise<R[]> {
  const stop = new AbortController();
  const onAbort = () => stop.abort(signal?.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  if (signal?.aborted) onAbort();
  const results = new Array<R>(items.length);
  let next = 0;
  let load = 0;
  let failure: { error: unknown } | undefined;
  const running = new Set<Promise<void>>();
  const start = (index: number) => {
    const share = cost(items[index]);
    load += share;
    // Begun a microtask later, so `run` is set when it ends even if `task` throws at once.
    const run: Promise<void> = Promise.resolve().then(async () => {
      try {
        results[index] = await task(items[index], index, stop.signal);
      } catch (error) {
        failure ??= { error };
        stop.abort(error);
      } finally {
        load -= share;
        running.delete(run);
      }
    });
    running.add(run);
  };
  try {
    for (;;) {
      while (
        next < items.length && !stop.signal.aborted &&
        (running.size === 0 || load + cost(items[next]) <= Math.max(1, limit) + 1e-9)
      ) start(next++);
      if (running.size === 0) break;
      await Promise.race(running);
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  if (failure) throw failure.error;
  if (signal?.aborted) throw signal.reason;
  return results;
}
