/**
 * A slow link on 127.0.0.1: a TCP proxy in front of a server (e.g. `docker-registry`)
 * that caps the bandwidth of each direction, shared by all connections, and adds a delay
 * to every chunk, so a transfer takes seconds instead of milliseconds and progress,
 * redraws and interruptions can be watched happening.
 *
 * @example
 * ```ts ignore
 * import { startSlowLink } from "./slow_link.ts";
 * const link = await startSlowLink({ target: registry.host, bytesPerSecond: 2_000_000 });
 * // … point the client at link.url …
 * await link.close();
 * ```
 *
 * @module
 */

import type { Buffer } from "node:buffer";
import { connect, createServer, type Socket } from "node:net";

/** Options of {@linkcode startSlowLink}. */
export interface SlowLinkOptions {
  /** Where to forward: `host:port`. */
  target: string;
  /** Bandwidth of each direction, bytes per second (shared by all connections). */
  bytesPerSecond: number;
  /** Extra delay of every chunk, ms (default 0). */
  latencyMs?: number;
}

/** A running slow link. */
export interface SlowLink {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** `127.0.0.1:<port>`. */
  host: string;
  /** Bytes forwarded client → server so far. */
  readonly bytesUp: number;
  /** Bytes forwarded server → client so far. */
  readonly bytesDown: number;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** Pieces a chunk is cut into, so the pace is smooth. */
const PIECE = 16 * 1024;

/** One direction's budget: when the link is free again, ms. */
class Pacer {
  #freeAt = 0;
  constructor(readonly bytesPerSecond: number, readonly latencyMs: number) {}

  /** How long to wait before sending `bytes`, ms. */
  delay(bytes: number): number {
    const now = Date.now();
    const start = Math.max(now, this.#freeAt);
    this.#freeAt = start + 1000 * bytes / this.bytesPerSecond;
    return this.#freeAt - now + this.latencyMs;
  }
}

/** Forwards `from` to `to` at the pacer's pace; counts bytes. */
function pace(from: Socket, to: Socket, pacer: Pacer, count: (n: number) => void): void {
  let queue = Promise.resolve();
  from.on("data", (chunk: Buffer) => {
    from.pause();
    const pieces: Buffer[] = [];
    for (let at = 0; at < chunk.length; at += PIECE) pieces.push(chunk.subarray(at, at + PIECE));
    queue = queue.then(async () => {
      for (const piece of pieces) {
        await new Promise((resolve) => setTimeout(resolve, pacer.delay(piece.length)));
        if (to.destroyed) return;
        count(piece.length);
        to.write(piece);
      }
      if (!from.destroyed) from.resume();
    });
  });
  from.on("end", () => void queue.then(() => to.end()));
  from.on("error", () => to.destroy());
  from.on("close", () => void queue.then(() => to.destroy()));
}

/** Starts a slow link; see the module documentation. */
export async function startSlowLink(options: SlowLinkOptions): Promise<SlowLink> {
  const [targetHost, targetPort] = options.target.replace(/^https?:\/\//, "").split(":");
  const up = new Pacer(options.bytesPerSecond, options.latencyMs ?? 0);
  const down = new Pacer(options.bytesPerSecond, options.latencyMs ?? 0);
  const sockets = new Set<Socket>();
  let bytesUp = 0;
  let bytesDown = 0;
  const server = createServer((client) => {
    const upstream = connect(Number(targetPort), targetHost);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
    }
    pace(client, upstream, up, (n) => bytesUp += n);
    pace(upstream, client, down, (n) => bytesDown += n);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    get bytesUp() {
      return bytesUp;
    },
    get bytesDown() {
      return bytesDown;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
