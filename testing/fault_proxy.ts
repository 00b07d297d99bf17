/**
 * A TCP proxy between a client and a registry (e.g. Debian's `docker-registry` on
 * loopback) that injects network faults into HTTP/1.1 traffic:
 *
 * - `drop`: the connection is closed (FIN both ways) at a random byte of a request or
 *   response — a truncated body, a request the registry only half received;
 * - `reset`: the same, but with a TCP RST;
 * - `stall`: forwarding stops at a random byte for a while (a fraction of the stalls
 *   outlast the client's timeouts), then goes on if both ends are still there.
 *
 * The proxy reads just enough HTTP to find where each request and response starts and
 * ends (`Content-Length`, chunked bodies, HEAD, 1xx/204/304), so a fault can be aimed at
 * one exchange: each request gets a fault with probability `rate`, in its request or in
 * its response, at a byte offset drawn uniformly over that message.
 *
 * Every decision comes from a PRNG seeded with `seed` and keyed by the request's method,
 * its path (upload ids and queries stripped) and how many times that key was seen, so a
 * run with the same seed aims the same faults at the same requests whatever the
 * interleaving of concurrent transfers: a failure replays from its seed.

 *
 * @example
 * ```ts ignore
 * import { startFaultProxy } from "./fault_proxy.ts";
 * const proxy = await startFaultProxy({ target: registry.host, seed: 42, rate: 0.2 });
 * // … point the client at proxy.url …
 * console.log(proxy.counts); // { drop: 3, reset: 2, stall: 4 }
 * await proxy.close();
 * ```
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { connect, createServer, type Server, type Socket } from "node:net";

/** The kinds of fault the proxy injects. */
export type FaultKind = "drop" | "reset" | "stall";

/** All fault kinds. */
export const FAULT_KINDS: readonly FaultKind[] = ["drop", "reset", "stall"];

/** Which message of an exchange a fault hits. */
export type FaultDirection = "request" | "response";

/** A fault aimed at one exchange. */
export interface FaultPlan {
  /** What happens. */
  kind: FaultKind;
  /** In the request (client → registry) or the response. */
  direction: FaultDirection;
  /** Where, as a fraction (0 ≤ f < 1) of the message's length (head + body). */
  at: number;
  /** For `stall`: how long forwarding stops, ms. */
  stallMs?: number;
}

/** The request a decision is made for. */
export interface ProxiedRequest {
  /** HTTP method. */
  method: string;
  /** Path and query as sent. */
  path: string;
  /** The decision key: method and path with upload ids and the query stripped. */
  key: string;
  /** How many requests with this key came before (0 for the first). */
  nth: number;
}

/** Options of {@linkcode startFaultProxy}. */
export interface FaultProxyOptions {
  /** Where to forward: `host:port` or a URL. */
  target: string;
  /** PRNG seed (default 1). */
  seed?: number;
  /** Probability that a request gets a fault (default 0.2). Can be changed later. */
  rate?: number;
  /** Kinds to draw from (default all). */
  kinds?: FaultKind[];
  /** Range of stall durations, ms (default [100, 1500]). */
  stallMs?: [number, number];
  /** Only requests this accepts may get a random fault (default all). */
  filter?: (request: ProxiedRequest) => boolean;
  /**
   * Overrides the random decision: a plan, `null` for no fault, or `undefined` to draw
   * one as usual.
   */
  plan?: (request: ProxiedRequest) => FaultPlan | null | undefined;
  /**
   * Length assumed for a body whose length is not announced (a streamed upload), to
   * aim a fault inside it (default 4 MiB). A fault that lands past the end of such a
   * body hits the response instead.
   */
  unknownBodyBytes?: number;
}

/** One fault injected. */
export interface FaultEvent {
  /** What happened. */
  kind: FaultKind;
  /** In which message. */
  direction: FaultDirection;
  /** The request's method and path (query stripped). */
  request: string;
  /** The decision key and its count, to replay. */
  key: string;
  /** Byte of the message at which it hit. */
  offset: number;
  /** For stalls, how long, ms. */
  stallMs?: number;
}

/** A running proxy. */
export interface FaultProxy {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** `127.0.0.1:<port>`. */
  host: string;
  /** The seed. */
  readonly seed: number;
  /** Probability that a request gets a fault; change it at any time (0 disables). */
  rate: number;
  /** Faults injected so far, by kind. */
  counts: Record<FaultKind, number>;
  /** Every fault injected, in order. */
  events: FaultEvent[];
  /** Requests seen. */
  readonly requests: number;
  /** Every request forwarded: method, path and query, body bytes (chunk framing included). */
  log: { method: string; path: string; bodyBytes: number }[];
  /** Connections accepted. */
  readonly connections: number;
  /** Faults injected in total. */
  total(): number;
  /** Overrides decisions from now on (see {@linkcode FaultProxyOptions.plan}). */
  setPlan(plan: FaultProxyOptions["plan"]): void;
  /** Ends stalls now and closes every connection. */
  dropAll(): void;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------
// Seeded randomness.

/** 32-bit FNV-1a of a string. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * mulberry32: a small, fast PRNG with a 32-bit state; `() => [0, 1)`.
 *
 * @example
 * ```ts ignore
 * const next = seededRandom(42);
 * next(); // the same sequence for the same seed
 * ```
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The decision key of a request: method and path, upload ids and query stripped. */
export function requestKey(method: string, path: string): string {
  const bare = path.replace(/\?.*$/, "").replace(/\/blobs\/uploads\/[^/]+$/, "/blobs/uploads/ID");
  return `${method} ${bare}`;
}

// ---------------------------------------------------------------------------------
// Minimal HTTP/1.1 framing.

/** What the head of a message says about it. */
interface Head {
  /** Request: method; response: status. */
  method?: string;
  path?: string;
  status?: number;
  headers: Map<string, string>;
  bytes: number;
}

type BodyFraming =
  | { type: "none" }
  | { type: "length"; remaining: number }
  | { type: "chunked" }
  | { type: "close" };

/** A piece of a byte stream, tagged with where messages start and end. */
interface Segment {
  bytes: Uint8Array;
  /** The head of a message starts this segment (it holds the whole head). */
  head?: Head;
  /** The announced total length of the message (head + body), when known. */
  length?: number;
  /** The message ends with this segment. */
  end?: boolean;
}

const CRLFCRLF = Buffer.from("\r\n\r\n");
const MAX_HEAD = 64 * 1024;

function parseHead(bytes: Uint8Array, isRequest: boolean): Head | undefined {
  const text = Buffer.from(bytes).toString("latin1");
  const lines = text.split("\r\n");
  const first = lines[0].split(" ");
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const i = line.indexOf(":");
    if (i > 0) headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
  }
  if (isRequest) {
    if (first.length < 3 || !first[2].startsWith("HTTP/")) return undefined;
    return { method: first[0], path: first[1], headers, bytes: bytes.byteLength };
  }
  if (!first[0].startsWith("HTTP/")) return undefined;
  const status = Number(first[1]);
  if (!Number.isInteger(status)) return undefined;
  return { status, headers, bytes: bytes.byteLength };
}

/**
 * Splits one direction of a connection into messages. `framing(head)` says how the
 * body of a message is delimited (responses depend on the request's method).
 * Throws when the bytes are not HTTP/1.1 as expected; the caller then stops parsing.
 */
class HttpFramer {
  #isRequest: boolean;
  #framing: (head: Head) => BodyFraming;
  #buffer: Uint8Array = new Uint8Array(0);
  #state: "head" | "body" = "head";
  #body: BodyFraming = { type: "none" };
  // chunked-body parser state
  #chunk: "size" | "data" | "data-crlf" | "trailer" = "size";
  #chunkLeft = 0;
  #line = "";

  constructor(isRequest: boolean, framing: (head: Head) => BodyFraming) {
    this.#isRequest = isRequest;
    this.#framing = framing;
  }

  feed(input: Uint8Array): Segment[] {
    const out: Segment[] = [];
    let data = input;
    while (data.byteLength > 0) {
      if (this.#state === "head") {
        const joined = this.#buffer.byteLength
          ? new Uint8Array(Buffer.concat([this.#buffer, data]))
          : data;
        const end = Buffer.from(joined.buffer, joined.byteOffset, joined.byteLength).indexOf(
          CRLFCRLF,
        );
        if (end < 0) {
          if (joined.byteLength > MAX_HEAD) throw new Error("head too long");
          this.#buffer = joined.slice();
          return out;
        }
        this.#buffer = new Uint8Array(0);
        const headBytes = joined.subarray(0, end + 4);
        data = joined.subarray(end + 4);
        const head = parseHead(headBytes, this.#isRequest);
        if (!head) throw new Error("not HTTP");
        this.#body = this.#framing(head);
        const segment: Segment = { bytes: headBytes, head };
        if (this.#body.type === "none") {
          segment.length = head.bytes;
          segment.end = true;
        } else {
          if (this.#body.type === "length") segment.length = head.bytes + this.#body.remaining;
          this.#state = "body";
          this.#chunk = "size";
          this.#line = "";
        }
        out.push(segment);
        continue;
      }
      // body
      const body = this.#body;
      if (body.type === "length") {
        const n = Math.min(body.remaining, data.byteLength);
        body.remaining -= n;
        const segment: Segment = { bytes: data.subarray(0, n) };
        data = data.subarray(n);
        if (body.remaining === 0) {
          segment.end = true;
          this.#state = "head";
        }
        out.push(segment);
      } else if (body.type === "close") {
        out.push({ bytes: data });
        data = new Uint8Array(0);
      } else {
        const n = this.#chunked(data);
        const segment: Segment = { bytes: data.subarray(0, n.used) };
        data = data.subarray(n.used);
        if (n.ended) {
          segment.end = true;
          this.#state = "head";
        }
        out.push(segment);
      }
    }
    return out;
  }

  /** Advances the chunked-body parser over `data`; how much it used, whether the body ended. */
  #chunked(data: Uint8Array): { used: number; ended: boolean } {
    let i = 0;
    while (i < data.byteLength) {
      if (this.#chunk === "data") {
        const n = Math.min(this.#chunkLeft, data.byteLength - i);
        i += n;
        this.#chunkLeft -= n;
        if (this.#chunkLeft === 0) {
          this.#chunk = "data-crlf";
          this.#line = "";
        }
        continue;
      }
      // line-oriented states: read up to LF
      const c = data[i++];
      if (c !== 0x0a) {
        this.#line += String.fromCharCode(c);
        if (this.#line.length > 4096) throw new Error("chunk line too long");
        continue;
      }
      const line = this.#line.replace(/\r$/, "");
      this.#line = "";
      if (this.#chunk === "size") {
        const size = parseInt(line.split(";")[0].trim(), 16);
        if (!Number.isFinite(size) || size < 0) throw new Error("bad chunk size");
        if (size === 0) this.#chunk = "trailer";
        else {
          this.#chunk = "data";
          this.#chunkLeft = size;
        }
      } else if (this.#chunk === "data-crlf") {
        if (line !== "") throw new Error("bad chunk end");
        this.#chunk = "size";
      } else if (line === "") {
        return { used: i, ended: true }; // end of trailer
      }
    }
    return { used: i, ended: false };
  }
}

function requestFraming(head: Head): BodyFraming {
  if ((head.headers.get("transfer-encoding") ?? "").toLowerCase().includes("chunked")) {
    return { type: "chunked" };
  }
  const length = Number(head.headers.get("content-length") ?? 0);
  return length > 0 ? { type: "length", remaining: length } : { type: "none" };
}

function responseFraming(method: string | undefined, head: Head): BodyFraming {
  const status = head.status!;
  if (method === "HEAD" || status === 204 || status === 304 || (status >= 100 && status < 200)) {
    return { type: "none" };
  }
  if ((head.headers.get("transfer-encoding") ?? "").toLowerCase().includes("chunked")) {
    return { type: "chunked" };
  }
  const raw = head.headers.get("content-length");
  if (raw === undefined) return { type: "close" };
  const length = Number(raw);
  return length > 0 ? { type: "length", remaining: length } : { type: "none" };
}

// ---------------------------------------------------------------------------------

/**
 * Starts a fault proxy on 127.0.0.1 and a free port; see the module documentation.
 *
 * @example
 * ```ts ignore
 * const proxy = await startFaultProxy({ target: "127.0.0.1:5000", seed: 7, rate: 0.2 });
 * await proxy.close();
 * ```
 */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const target = /^[a-z]+:\/\//i.test(options.target)
    ? new URL(options.target).host
    : options.target;
  const [targetHost, targetPort] = [
    target.slice(0, target.lastIndexOf(":")),
    Number(target.slice(target.lastIndexOf(":") + 1)),
  ];
  const seed = options.seed ?? 1;
  const kinds = options.kinds ?? [...FAULT_KINDS];
  const [stallMin, stallMax] = options.stallMs ?? [100, 1500];
  const unknownBody = options.unknownBodyBytes ?? 4 * 1024 * 1024;
  let plan = options.plan;
  const seen = new Map<string, number>();
  const sockets = new Set<Socket>();
  const stallWakers = new Set<() => void>();
  const state = { requests: 0, connections: 0 };
  const proxy: FaultProxy = {
    url: "",
    host: "",
    seed,
    rate: options.rate ?? 0.2,
    counts: { drop: 0, reset: 0, stall: 0 },
    events: [],
    log: [],
    get requests() {
      return state.requests;
    },
    get connections() {
      return state.connections;
    },
    total() {
      return this.counts.drop + this.counts.reset + this.counts.stall;
    },
    setPlan(p) {
      plan = p;
    },
    dropAll() {
      for (const wake of stallWakers) wake();
      for (const s of sockets) s.destroy();
    },
    close: async () => {},
  };

  const decide = (method: string, path: string): { plan?: FaultPlan; key: string } => {
    const key = requestKey(method, path);
    const nth = seen.get(key) ?? 0;
    seen.set(key, nth + 1);
    const request = { method, path, key, nth };
    const tag = `${key}#${nth}`;
    const forced = plan?.(request);
    if (forced !== undefined) return { plan: forced ?? undefined, key: tag };
    if (options.filter && !options.filter(request)) return { key: tag };
    const next = seededRandom(fnv1a(`${seed}\n${tag}`) ^ seed);
    if (next() >= proxy.rate) return { key: tag };
    const kind = kinds[Math.floor(next() * kinds.length)];
    const direction: FaultDirection = next() < 0.5 ? "request" : "response";
    const at = next();
    const stallMs = Math.round(stallMin + next() * (stallMax - stallMin));
    return { plan: { kind, direction, at, stallMs }, key: tag };
  };

  const handle = (client: Socket) => {
    state.connections++;
    const upstream = connect({ host: targetHost, port: targetPort });
    sockets.add(client);
    sockets.add(upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    let closed = false;
    const closeBoth = (how: "end" | "reset" | "destroy") => {
      if (closed) return;
      closed = true;
      for (const s of [client, upstream]) {
        if (how === "reset" && typeof s.resetAndDestroy === "function") {
          try {
            s.resetAndDestroy();
            continue;
          } catch {
            // fall through
          }
        }
        if (how === "end") {
          s.end();
          setTimeout(() => s.destroy(), 200);
        } else s.destroy();
      }
      for (const wake of pendingWakers) wake();
    };
    const pendingWakers = new Set<() => void>();
    client.on("close", () => {
      sockets.delete(client);
      closeBoth("destroy");
    });
    upstream.on("close", () => {
      sockets.delete(upstream);
      closeBoth("destroy");
    });
    client.on("error", () => closeBoth("destroy"));
    upstream.on("error", () => closeBoth("destroy"));

    /** Exchanges waiting for their response, oldest first. */
    const exchanges: {
      method: string;
      path: string;
      key: string;
      plan?: FaultPlan;
      fired: boolean;
    }[] = [];

    /** One direction: parses, aims the armed fault, forwards with backpressure. */
    const pump = (from: Socket, to: Socket, isRequest: boolean) => {
      const framer = new HttpFramer(
        isRequest,
        isRequest ? requestFraming : (head) => responseFraming(exchanges[0]?.method, head),
      );
      let parsing = true;
      /** The fault armed in the current message: bytes before it fires. */
      let armed:
        | { plan: FaultPlan; left: number; exchange: (typeof exchanges)[number] }
        | undefined;
      let messageOffset = 0;
      const queue: Uint8Array[] = [];
      let running = false;
      let ended = false;

      const write = async (bytes: Uint8Array) => {
        if (closed || bytes.byteLength === 0) return;
        if (!to.write(bytes)) {
          await new Promise<void>((resolve) => {
            const done = () => {
              to.off("drain", done);
              pendingWakers.delete(done);
              resolve();
            };
            to.on("drain", done);
            pendingWakers.add(done);
          });
        }
      };

      const fire = async (
        a: { plan: FaultPlan; exchange: (typeof exchanges)[number] },
      ): Promise<void> => {
        a.exchange.fired = true;
        proxy.counts[a.plan.kind]++;
        proxy.events.push({
          kind: a.plan.kind,
          direction: a.plan.direction,
          request: `${a.exchange.method} ${a.exchange.path.replace(/\?.*$/, "")}`,
          key: a.exchange.key,
          offset: messageOffset,
          ...(a.plan.kind === "stall" ? { stallMs: a.plan.stallMs } : {}),
        });
        if (a.plan.kind === "drop") return closeBoth("end");
        if (a.plan.kind === "reset") return closeBoth("reset");
        // stall: stop forwarding (and reading) for a while
        from.pause();
        await new Promise<void>((resolve) => {
          const wake = () => {
            clearTimeout(timer);
            pendingWakers.delete(wake);
            stallWakers.delete(wake);
            resolve();
          };
          const timer = setTimeout(wake, a.plan.stallMs ?? 1000);
          pendingWakers.add(wake);
          stallWakers.add(wake);
        });
        if (!closed) from.resume();
      };

      /** Forwards bytes of the current message, firing the armed fault at its byte. */
      const forward = async (bytes: Uint8Array) => {
        while (bytes.byteLength > 0 && !closed) {
          if (!armed || bytes.byteLength < armed.left) {
            if (armed) armed.left -= bytes.byteLength;
            messageOffset += bytes.byteLength;
            return await write(bytes);
          }
          const n = armed.left;
          await write(bytes.subarray(0, n));
          messageOffset += n;
          bytes = bytes.subarray(n);
          const a = armed;
          armed = undefined;
          await fire(a);
        }
      };

      let logged: FaultProxy["log"][number] | undefined;
      const onSegment = async (segment: Segment) => {
        if (isRequest && segment.head) {
          logged = { method: segment.head.method!, path: segment.head.path!, bodyBytes: 0 };
          proxy.log.push(logged);
        }
        if (isRequest && logged) {
          logged.bodyBytes += segment.bytes.byteLength - (segment.head?.bytes ?? 0);
        }
        if (segment.head) {
          messageOffset = 0;
          armed = undefined;
          if (isRequest) {
            state.requests++;
            const { method, path } = segment.head;
            const decided = decide(method!, path!);
            const exchange = {
              method: method!,
              path: path!,
              key: decided.key,
              plan: decided.plan,
              fired: false,
            };
            exchanges.push(exchange);
            if (decided.plan?.direction === "request") {
              const length = segment.length ?? segment.head.bytes + unknownBody;
              armed = { plan: decided.plan, left: Math.floor(decided.plan.at * length), exchange };
            }
          } else {
            const status = segment.head.status!;
            const exchange = exchanges[0];
            if (status >= 200 || status < 100) {
              if (exchange?.plan?.direction === "response" && !exchange.fired) {
                const length = segment.length ?? segment.head.bytes + unknownBody;
                armed = {
                  plan: exchange.plan,
                  left: Math.floor(exchange.plan.at * length),
                  exchange,
                };
              } else if (exchange?.plan?.direction === "request" && !exchange.fired) {
                // the request ended before its fault's byte: hit the response instead
                const length = segment.length ?? segment.head.bytes;
                armed = {
                  plan: exchange.plan,
                  left: Math.floor(exchange.plan.at * length),
                  exchange,
                };
              }
            }
          }
        }
        await forward(segment.bytes);
        if (segment.end && !isRequest) {
          const status = segment.head?.status;
          if (!(status !== undefined && status >= 100 && status < 200)) exchanges.shift();
        }
        if (segment.end) armed = undefined;
      };

      const run = async () => {
        if (running) return;
        running = true;
        try {
          while (queue.length > 0 && !closed) {
            const chunk = queue.shift()!;
            if (queue.length < 8) from.resume();
            if (!parsing) {
              await write(chunk);
              continue;
            }
            let segments: Segment[];
            try {
              segments = framer.feed(chunk);
            } catch {
              parsing = false; // not HTTP as expected: pass the rest through untouched
              armed = undefined;
              await write(chunk);
              continue;
            }
            for (const s of segments) {
              if (closed) break;
              await onSegment(s);
            }
          }
          if (ended && queue.length === 0 && !closed) to.end();
        } finally {
          running = false;
        }
      };

      from.on("data", (chunk: Uint8Array) => {
        queue.push(new Uint8Array(chunk));
        if (queue.length >= 16) from.pause();
        void run();
      });
      from.on("end", () => {
        ended = true;
        void run();
      });
    };

    pump(client, upstream, true);
    pump(upstream, client, false);
  };

  const server: Server = createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  proxy.url = `http://127.0.0.1:${port}`;
  proxy.host = `127.0.0.1:${port}`;
  proxy.close = async () => {
    proxy.dropAll();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return proxy;
}

/**
 * The counts of a proxy as one line, e.g. `drop 12, reset 9, stall 11 (32 in 410 requests)`.
 *
 * @example
 * ```ts ignore
 * console.log(describeFaults(proxy));
 * ```
 */
export function describeFaults(proxy: FaultProxy): string {
  const c = proxy.counts;
  return `drop ${c.drop}, reset ${c.reset}, stall ${c.stall} (${proxy.total()} in ${proxy.requests} requests)`;
}
