/**
 * Progress on the command line: live bars on a terminal, plain lines when piped,
 * JSON lines for programs, or nothing.
 *
 * On a terminal, like `docker push`: one line per layer, redrawn in place, each cut to
 * the terminal's width (read again at every redraw, so a resize is followed) so that no
 * line wraps and the redraw always lands on the rows it drew; below them one line saying
 * what runs, erased at the end, so the final screen holds one line per layer and the
 * result the command prints. Piped (CI logs): a line per change of state, and per layer
 * a progress line every tenth of it (at most one a second) or every 15 s, so a long
 * layer shows movement.
 *
 * @module
 */

import {
  AbstractDockerImageProgress,
  formatBytes,
  type ImageProgressPull,
  type ImageProgressPush,
  type ImageProgressStep,
  type StepStatus,
} from "../progress.ts";

/** How progress is shown. */
export type ProgressMode = "tty" | "plain" | "json" | "none";

/** Something progress lines are written to (stderr). */
export interface LineSink {
  /** Writes text as it is. */
  write(text: string): void;
  /** The terminal's width in columns, when it is a terminal (read at every redraw). */
  columns?(): number | undefined;
}

/** What a finished push or pull reports (the `--progress json` final event). */
export interface TransferResult {
  /** The image written: the remote reference of a push, the local name of a pull. */
  image: string;
  /** Its manifest (or index) digest. */
  digest?: string;
  /** Any other fields to report. */
  [field: string]: unknown;
}

interface LayerState {
  step: ImageProgressStep;
  /** When the current status began, ms. */
  started: number;
  /** Piped: when its last line was printed, ms, and the tenth of the layer it showed. */
  printedAt: number;
  printedTenth: number;
  printedBytes: number;
  /** Bytes moved by this layer (the most a transfer status counted). */
  moved: number;
}

/** Statuses during which bytes move. */
const MOVING: ReadonlySet<StepStatus> = new Set(["Pushing", "Downloading", "Resuming"]);

/** Piped: a layer's progress line at most this often, ms… */
const PLAIN_MIN_INTERVAL_MS = 1_000;
/** …and at least this often while its bytes move, ms. */
const PLAIN_MAX_INTERVAL_MS = 15_000;

/** Width when the terminal does not say. */
const DEFAULT_COLUMNS = 80;
/** Narrowest width laid out for (a narrower terminal gets lines cut). */
const MIN_COLUMNS = 20;

/**
 * Shows push and pull progress in one of the {@linkcode ProgressMode}s.
 *
 * @example
 * ```ts
 * import { CliProgress } from "./progress_view.ts";
 * const progress = new CliProgress("plain", { write: (t) => console.error(t.trimEnd()) });
 * progress.step({ layerId: "abc", status: "Pushing", message: "", current: 0, total: 10 });
 * progress.finish({ image: "image://default/alice/app:1.0" });
 * ```
 */
export class CliProgress extends AbstractDockerImageProgress {
  readonly #mode: ProgressMode;
  readonly #out: LineSink;
  readonly #now: () => number;
  readonly #layers = new Map<string, LayerState>();
  /** The line under the layers saying what runs (terminal only). */
  #activity = "";
  /** Terminal rows the last redraw left above the cursor. */
  #drawnLines = 0;
  #finished = false;

  /**
   * @param mode how to show progress
   * @param out where to write it (stderr)
   * @param now the clock, ms (for tests)
   */
  constructor(mode: ProgressMode, out: LineSink, now: () => number = Date.now) {
    super();
    this.#mode = mode;
    this.#out = out;
    this.#now = now;
  }

  /** Bytes the layers moved so far (sent by a push, received by a pull). */
  get bytesMoved(): number {
    let sum = 0;
    for (const layer of this.#layers.values()) sum += layer.moved;
    return sum;
  }

  /** A push started. */
  override push(data: ImageProgressPush): void {
    this.#started("push", "Pushing", data.src.toString(), data.dst.toString());
  }

  /** A pull started. */
  override pull(data: ImageProgressPull): void {
    this.#started("pull", "Pulling", data.src.toString(), data.dst.toString());
  }

  #started(event: string, verb: string, src: string, dst: string): void {
    this.#event({ event, src, dst });
    if (this.#mode === "plain") this.#out.write(`${verb} ${src} to ${dst}\n`);
    if (this.#mode === "tty") {
      this.#activity = `${verb} ${src} to ${dst}`;
      this.#redraw();
    }
  }

  /** A layer changed state or moved bytes. */
  override step(data: ImageProgressStep): void {
    if (this.#finished) return;
    const now = this.#now();
    const previous = this.#layers.get(data.layerId);
    const changed = previous?.step.status !== data.status;
    const layer: LayerState = previous ?? {
      step: data,
      started: now,
      printedAt: 0,
      printedTenth: 0,
      printedBytes: 0,
      moved: 0,
    };
    if (changed) layer.started = now;
    layer.step = data;
    if (MOVING.has(data.status)) layer.moved = Math.max(layer.moved, data.current);
    this.#layers.set(data.layerId, layer);
    switch (this.#mode) {
      case "json":
        this.#event({ event: "step", ...data });
        break;
      case "plain":
        this.#plainLine(layer, changed, now);
        break;
      case "tty":
        this.#redraw();
        break;
    }
  }

  /**
   * Ends the display: on a terminal the layers are drawn in their final state and the
   * activity line is erased; with `--progress json` a last `done` event carries `result`.
   * Called once the command ends, however it ends (`result` only on success).
   */
  finish(result?: TransferResult): void {
    if (this.#finished) return;
    if (this.#mode === "tty") {
      this.#activity = "";
      this.#redraw();
    }
    this.#finished = true;
    if (result) this.#event({ event: "done", ...result });
  }

  #event(record: Record<string, unknown>): void {
    if (this.#mode === "json") this.#out.write(JSON.stringify(record) + "\n");
  }

  /** Piped: a line per change of state, and progress lines at a steady pace. */
  #plainLine(layer: LayerState, changed: boolean, now: number): void {
    const { step } = layer;
    if (changed) {
      const size = step.total !== undefined ? ` (${formatBytes(step.total)})` : "";
      const text = step.status === "Resuming" ? step.message : `${step.status}${size}`;
      this.#out.write(`${step.layerId}: ${text}\n`);
      layer.printedAt = now;
      layer.printedTenth = tenth(step);
      layer.printedBytes = step.current;
      return;
    }
    if (!MOVING.has(step.status) || step.current === layer.printedBytes) return;
    const since = now - layer.printedAt;
    const further = tenth(step) > layer.printedTenth;
    if (since < PLAIN_MIN_INTERVAL_MS || (!further && since < PLAIN_MAX_INTERVAL_MS)) return;
    const share = step.total ? ` (${Math.floor(100 * step.current / step.total)}%)` : "";
    this.#out.write(`${step.layerId}: ${step.status} ${amount(step)}${share}\n`);
    layer.printedAt = now;
    layer.printedTenth = tenth(step);
    layer.printedBytes = step.current;
  }

  /** Terminal: redraws the layers (and the activity line) over what was drawn last. */
  #redraw(): void {
    if (this.#finished) return;
    const columns = Math.max(MIN_COLUMNS, this.#out.columns?.() || DEFAULT_COLUMNS);
    // One column short of the width: a line filling the last column wraps on some terminals.
    const width = columns - 1;
    const now = this.#now();
    const layers = [...this.#layers.values()];
    // The same room for every layer's byte counts, so that the bars line up.
    const amountWidth = Math.max(0, ...layers.map((l) => amount(l.step).length));
    const lines = layers.map((layer) =>
      fit(layerLine(layer.step, now - layer.started, width, amountWidth), width)
    );
    if (this.#activity) lines.push(fit(this.#activity, width));
    const up = this.#drawnLines > 0 ? `\x1b[${this.#drawnLines}F` : "\r";
    // Each line erased before it is written, and everything below erased after (the
    // activity line, at the end).
    const body = lines.map((line) => `\x1b[2K${line}\n`).join("");
    this.#out.write(`${up}${body}\x1b[J`);
    this.#drawnLines = lines.length;
  }
}

/** Which tenth of its total a step has reached (0–10). */
function tenth(step: ImageProgressStep): number {
  return step.total ? Math.floor(10 * step.current / step.total) : 0;
}

/** `12.6MB/25.0MB`, or `12.6MB` when the total is unknown. */
function amount(step: ImageProgressStep): string {
  const current = formatBytes(step.current);
  return step.total !== undefined ? `${current}/${formatBytes(step.total)}` : current;
}

/** Cuts `text` to `width` columns (an ellipsis marks the cut). */
function fit(text: string, width: number): string {
  const chars = [...text];
  return chars.length <= width ? text : chars.slice(0, Math.max(0, width - 1)).join("") + "…";
}

/** Room kept for the speed and time left, `12.3MB/s 120s`. */
const SPEED_WIDTH = 13;

/**
 * A layer's line in at most `width` columns: `id: Status [===>   ] 12.6MB/25.0MB 3.1MB/s 4s`,
 * the byte counts right-aligned in `amountWidth` columns; when room is short the speed
 * goes first, then the bar.
 */
function layerLine(
  step: ImageProgressStep,
  elapsedMs: number,
  width: number,
  amountWidth: number,
): string {
  const head = `${step.layerId}: ${step.status.padEnd(11)}`;
  if (!MOVING.has(step.status)) return head.trimEnd();
  const bytes = amount(step).padStart(amountWidth);
  let room = width - head.length - 1 - bytes.length;
  const withSpeed = room - (SPEED_WIDTH + 2) >= 20;
  if (withSpeed) room -= SPEED_WIDTH + 2;
  const barWidth = Math.min(40, room - 3);
  const bar = step.total && barWidth >= 8 ? drawBar(step, barWidth) + " " : "";
  const speed = withSpeed ? rate(step, elapsedMs) : "";
  return `${head} ${bar}${bytes}${speed ? "  " + speed : ""}`;
}

/** `[=====>    ]` with `width` cells inside the brackets. */
function drawBar(step: ImageProgressStep, width: number): string {
  const done = Math.min(width, Math.round(width * step.current / step.total!));
  const head = done < width ? ">" : "";
  const filled = "=".repeat(Math.max(0, done - head.length));
  return `[${filled}${head}${" ".repeat(width - Math.max(done, head.length))}]`;
}

/** `3.1MB/s 4s` once a second of the status has passed, else "". */
function rate(step: ImageProgressStep, elapsedMs: number): string {
  const seconds = elapsedMs / 1000;
  if (!step.total || seconds < 0.5 || step.current === 0 || step.current >= step.total) return "";
  const speed = step.current / seconds;
  const eta = Math.ceil((step.total - step.current) / speed);
  return `${formatBytes(speed)}/s ${eta}s`;
}
