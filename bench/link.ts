/**
 * A simulated network link on 127.0.0.1: a TCP proxy that delays every byte by a fixed
 * latency in each direction and shares one bandwidth cap per direction among all its
 * connections, so a benchmark through it pays round trips and bytes the way a push over
 * the internet does.
 *
 * Each direction is one lane: a chunk leaves when the lane is free and takes
 * `bytes ÷ rate` to go out (so concurrent connections share the rate), then arrives
 * `delayMs` later. A new connection first pays one round trip (the TCP handshake). A
 * connection whose bytes wait in the lane stops being read beyond about one
 * bandwidth-delay product, so a sender feels the link's pace as backpressure.
 * Simplifications: no loss, no slow start, no TLS.
 *
 * ```sh
 * deno run -A bench/link.ts --target 127.0.0.1:5000 [--delay 25] [--mbit 200]
 * ```
 *
 * @module
 */

import { connect, createServer, type Socket } from "node:net";
import process from "node:process";
import { parseArgs } from "node:util";

/** Options of {@linkcode startLink}. */
export interface LinkOptions {
  /** Where to forward: `host:port`. */
  target: string;
  /** One-way delay, ms (default 25). */
  delayMs?: number;
  /** Bandwidth of each direction, Mbit/s (default 200). */
  mbitPerSecond?: number;
}

/** A running link. */
export interface Link {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** `127.0.0.1:<port>`. */
  host: string;
  /** Bytes carried so far: `up` client → target, `down` back. */
  readonly bytes: { up: number; down: number };
  /** Connections accepted so far. */
  readonly connections: number;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** One direction of the link, shared by every connection. */
class Lane {
  #free = 0;
  carried = 0;

  constructor(readonly bytesPerMs: number, readonly delayMs: number) {}

  /** When a chunk of `size` bytes handed over now (or at `notBefore`) arrives, ms. */
  arrival(size: number, notBefore = 0): number {
    const start = Math.max(performance.now(), this.#free, notBefore);
    this.#free = start + size / this.bytesPerMs;
    this.carried += size;
    return this.#free + this.delayMs;
  }
}

/** Forwards `from` → `to` through `lane`, in order, reading at the lane's pace. */
function carry(from: Socket, to: Socket, lane: Lane, openAt: number, window: number): void {
  const queue: { at: number; chunk: Uint8Array }[] = [];
  let queued = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let ended = false;
  const deliver = () => {
    timer = undefined;
    const now = performance.now();
    while (queue.length > 0 && queue[0].at <= now + 0.5) {
      const { chunk } = queue.shift()!;
      queued -= chunk.byteLength;
      if (!to.destroyed) to.write(chunk);
    }
    if (queued < window && from.isPaused()) from.resume();
    if (queue.length > 0) schedule();
    else if (ended && !to.destroyed) to.end();
  };
  const schedule = () => {
    timer ??= setTimeout(deliver, Math.max(0, queue[0].at - performance.now()));
  };
  from.on("data", (chunk: Uint8Array) => {
    queue.push({ at: lane.arrival(chunk.byteLength, openAt), chunk: new Uint8Array(chunk) });
    queued += chunk.byteLength;
    if (queued >= window) from.pause();
    schedule();
  });
  from.on("end", () => {
    ended = true;
    if (queue.length === 0 && !to.destroyed) to.end();
  });
  from.on("close", () => {
    if (timer === undefined && queue.length === 0) to.end();
  });
}

/**
 * Starts a link to `target` on 127.0.0.1 and a free port.
 *
 * @example
 * ```ts ignore
 * import { startLink } from "./link.ts";
 * const link = await startLink({ target: registry.host, delayMs: 25, mbitPerSecond: 200 });
 * // … point a client at link.url …
 * await link.close();
 * ```
 */
export async function startLink(options: LinkOptions): Promise<Link> {
  const delayMs = options.delayMs ?? 25;
  const bytesPerMs = (options.mbitPerSecond ?? 200) * 1e6 / 8 / 1000;
  const up = new Lane(bytesPerMs, delayMs);
  const down = new Lane(bytesPerMs, delayMs);
  // About one bandwidth-delay product in flight per connection, at least 256 KiB.
  const window = Math.max(256 * 1024, Math.round(bytesPerMs * 2 * delayMs));
  const [host, port] = [
    options.target.slice(0, options.target.lastIndexOf(":")),
    Number(options.target.slice(options.target.lastIndexOf(":") + 1)),
  ];
  const sockets = new Set<Socket>();
  let connections = 0;
  const server = createServer((client) => {
    connections++;
    const upstream = connect({ host, port });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.setNoDelay(true);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    // The handshake: the client's first byte leaves one round trip after it connected.
    const openAt = performance.now() + 2 * delayMs;
    carry(client, upstream, up, openAt, window);
    carry(upstream, client, down, 0, window);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${address.port}`,
    host: `127.0.0.1:${address.port}`,
    get bytes() {
      return { up: up.carried, down: down.carried };
    },
    get connections() {
      return connections;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      target: { type: "string" },
      delay: { type: "string", default: "25" },
      mbit: { type: "string", default: "200" },
    },
  });
  if (!values.target) {
    console.error("usage: deno run -A bench/link.ts --target HOST:PORT [--delay MS] [--mbit N]");
    process.exit(2);
  }
  const link = await startLink({
    target: values.target,
    delayMs: Number(values.delay),
    mbitPerSecond: Number(values.mbit),
  });
  console.log(`${link.url} → ${values.target}, ${values.delay} ms each way, ${values.mbit} Mbit/s`);
}
