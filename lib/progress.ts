/**
 * Progress reports of push and pull, shaped like the Apolo SDK's
 * `AbstractDockerImageProgress` and its `ImageProgress*` data classes.
 *
 * @module
 */

import type { LocalImage } from "./reference/local_image.ts";
import type { RemoteImage } from "./reference/remote_image.ts";

/** A push has started: from a local image to a remote one. */
export interface ImageProgressPush {
  /** The local image being pushed. */
  readonly src: LocalImage;
  /** Where it goes. */
  readonly dst: RemoteImage;
}

/** A pull has started: from a remote image to a local one. */
export interface ImageProgressPull {
  /** The remote image being pulled. */
  readonly src: RemoteImage;
  /** Where it goes. */
  readonly dst: LocalImage;
}

/** What a layer (or the config, or the manifest) is doing, as `docker push` words it. */
export type StepStatus =
  | "Waiting"
  | "Preparing"
  | "Pushing"
  | "Resuming"
  | "Mounted"
  | "Layer already exists"
  | "Pushed"
  | "Downloading"
  | "Verifying"
  | "Download complete"
  | "Already exists"
  | "Failed";

/** One step of a transfer: a layer's state and the bytes moved so far. */
export interface ImageProgressStep {
  /** Short id of the layer: the first 12 hex digits of its digest. */
  readonly layerId: string;
  /** A line a person can read, e.g. `Pushing 12.0MB/40.1MB`. */
  readonly message: string;
  /** The layer's state. */
  readonly status: StepStatus;
  /** Bytes moved so far. */
  readonly current: number;
  /** Bytes to move in all, when known. */
  readonly total?: number;
}

/**
 * Receives progress of push and pull. Subclass it and override what you need;
 * every method does nothing by default.
 *
 * @example
 * ```ts
 * import { AbstractDockerImageProgress, type ImageProgressStep } from "./progress.ts";
 * class Printer extends AbstractDockerImageProgress {
 *   override step(data: ImageProgressStep): void {
 *     console.log(data.layerId, data.status, data.current, data.total);
 *   }
 * }
 * ```
 */
export abstract class AbstractDockerImageProgress {
  /** A push has started. */
  push(_data: ImageProgressPush): void {}
  /** A pull has started. */
  pull(_data: ImageProgressPull): void {}
  /** A layer changed state or moved bytes. */
  step(_data: ImageProgressStep): void {}
}

/** Milliseconds between two byte-count steps of one layer. */
const STEP_INTERVAL_MS = 250;

/**
 * Passes steps on to a progress receiver, at most a few per second per layer for byte
 * counts, but every change of state at once.
 *
 * @example
 * ```ts
 * import { StepThrottle } from "./progress.ts";
 * const throttle = new StepThrottle((s) => console.log(s.message));
 * throttle.report({ layerId: "abc", status: "Pushing", message: "Pushing", current: 1, total: 2 });
 * ```
 */
export class StepThrottle {
  readonly #emit: (step: ImageProgressStep) => void;
  readonly #last = new Map<string, { status: StepStatus; at: number }>();

  /** @param emit receives the steps that pass */
  constructor(emit: (step: ImageProgressStep) => void) {
    this.#emit = emit;
  }

  /** Reports a step; byte-count updates within the interval of the last one are dropped. */
  report(step: ImageProgressStep): void {
    const now = Date.now();
    const last = this.#last.get(step.layerId);
    const changed = last?.status !== step.status;
    const finished = step.total !== undefined && step.current === step.total;
    if (!changed && !finished && now - last.at < STEP_INTERVAL_MS) return;
    this.#last.set(step.layerId, { status: step.status, at: now });
    this.#emit(step);
  }
}

/**
 * Formats a byte count as `docker` does (decimal units), e.g. `12.3MB`.
 *
 * @example
 * ```ts
 * import { formatBytes } from "./progress.ts";
 * formatBytes(1_234_567); // "1.23MB"
 * ```
 */
export function formatBytes(bytes: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  const digits = unit === 0 ? 0 : value < 10 ? 2 : value < 100 ? 1 : 0;
  return `${value.toFixed(digits)}${units[unit]}`;
}
