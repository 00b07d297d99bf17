/**
 * Progress on the command line: live bars on a terminal, plain lines when piped,
 * JSON lines for programs, or nothing.
 *
 * @module
 */

import {
  AbstractDockerImageProgress,
  formatBytes,
  type ImageProgressPull,
  type ImageProgressPush,
  type ImageProgressStep,
} from "../progress.ts";

/** How progress is shown. */
export type ProgressMode = "tty" | "plain" | "json" | "none";

/** Something progress lines are written to (stderr). */
export interface LineSink {
  /** Writes text as it is. */
  write(text: string): void;
}

interface LayerState {
  step: ImageProgressStep;
  started: number;
}

/**
 * Shows push and pull progress in one of the {@linkcode ProgressMode}s.
 *
 * @example
 * ```ts
 * import { CliProgress } from "./progress_view.ts";
 * const progress = new CliProgress("plain", { write: (t) => console.error(t.trimEnd()) });
 * progress.step({ layerId: "abc", status: "Pushing", message: "", current: 0, total: 10 });
 * ```
 */
export class CliProgress extends AbstractDockerImageProgress {
  readonly #mode: ProgressMode;
  readonly #out: LineSink;
  readonly #layers = new Map<string, LayerState>();
  #drawnLines = 0;

  /**
   * @param mode how to show progress
   * @param out where to write it (stderr)
   */
  constructor(mode: ProgressMode, out: LineSink) {
    super();
    this.#mode = mode;
    this.#out = out;
  }

  /** A push started. */
  override push(data: ImageProgressPush): void {
    this.#event({ event: "push", src: data.src.toString(), dst: data.dst.toString() });
    if (this.#mode === "plain" || this.#mode === "tty") {
      this.#out.write(`Pushing ${data.src} to ${data.dst}\n`);
    }
  }

  /** A pull started. */
  override pull(data: ImageProgressPull): void {
    this.#event({ event: "pull", src: data.src.toString(), dst: data.dst.toString() });
    if (this.#mode === "plain" || this.#mode === "tty") {
      this.#out.write(`Pulling ${data.src} to ${data.dst}\n`);
    }
  }

  /** A layer changed state or moved bytes. */
  override step(data: ImageProgressStep): void {
    const previous = this.#layers.get(data.layerId);
    const started = previous && previous.step.status === data.status
      ? previous.started
      : Date.now();
    this.#layers.set(data.layerId, { step: data, started });
    switch (this.#mode) {
      case "json":
        this.#event({ event: "step", ...data });
        break;
      case "plain":
        if (previous?.step.status !== data.status) {
          const size = data.total !== undefined ? ` (${formatBytes(data.total)})` : "";
          const text = data.status === "Resuming" ? data.message : `${data.status}${size}`;
          this.#out.write(`${data.layerId}: ${text}\n`);
        }
        break;
      case "tty":
        this.#redraw();
        break;
    }
  }

  /** Leaves the bars on screen as they are (called when the command ends). */
  finish(): void {
    this.#drawnLines = 0;
  }

  #event(record: Record<string, unknown>): void {
    if (this.#mode === "json") this.#out.write(JSON.stringify(record) + "\n");
  }

  #redraw(): void {
    const up = this.#drawnLines > 0 ? `\x1b[${this.#drawnLines}F` : "";
    const lines = [...this.#layers.values()].map(({ step, started }) => {
      return `\x1b[2K${step.layerId}: ${step.status.padEnd(20)} ${bar(step)}${rate(step, started)}`;
    });
    this.#out.write(up + lines.join("\n") + "\n");
    this.#drawnLines = lines.length;
  }
}

function bar(step: ImageProgressStep): string {
  if (!step.total || step.status !== "Pushing" && step.status !== "Downloading") return "";
  const width = 30;
  const done = Math.min(width, Math.round(width * step.current / step.total));
  const head = done < width ? ">" : "";
  return `[${"=".repeat(Math.max(0, done - head.length))}${head}${" ".repeat(width - done)}] ${
    formatBytes(step.current)
  }/${formatBytes(step.total)}`;
}

function rate(step: ImageProgressStep, started: number): string {
  const seconds = (Date.now() - started) / 1000;
  if (!step.total || seconds < 0.5 || step.current === 0 || step.current >= step.total) return "";
  const speed = step.current / seconds;
  const eta = Math.ceil((step.total - step.current) / speed);
  return `  ${formatBytes(speed)}/s  ${eta}s left`;
}
