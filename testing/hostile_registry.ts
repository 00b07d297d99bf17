/**
 * A hostile registry for tests: two listeners on 127.0.0.1 standing for two hosts
 * (origin A, the registry the client was given, and origin B, "somewhere else"), each
 * answering with what the test's handler decides, and recording every request either
 * of them received (method, path, `Host`, headers, body), so a test can say what the
 * second origin got. Building blocks for the attacks: a Bearer challenge, a body that
 * stalls after its first bytes, an OCI error with a chosen message, a one-layer image.
 *
 * node:http, so it runs on Deno and on Bun. Both listeners bind 127.0.0.1 on a free port.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { concat } from "./fuzz.ts";

/** Which listener a request reached. */
export type Origin = "A" | "B";

/** One request either listener received. */
export interface Recorded {
  /** The listener. */
  origin: Origin;
  /** The method. */
  method: string;
  /** Path and query. */
  url: string;
  /** The `Host` header (`localhost:…`, `0.0.0.0:…` or `127.0.0.1:…`). */
  host: string;
  /** The headers, lower-case names. */
  headers: Record<string, string>;
  /** The body (first 1 MiB) as text. */
  body: string;
}

/** What a handler gets besides the request. */
export interface HostileContext {
  /** Base URL of origin A (`http://127.0.0.1:port`). */
  a: string;
  /** Base URL of origin B. */
  b: string;
  /** Port of A. */
  portA: number;
  /** Port of B. */
  portB: number;
  /** The request, recorded (body read in full, up to 1 MiB). */
  request: Recorded;
}

/**
 * Answers one request. Return without ending `res` only on purpose (a stall): the
 * registry ends every open response when it stops.
 */
export type HostileHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  ctx: HostileContext,
) => void | Promise<void>;

/** A running hostile registry. */
export interface HostileRegistry {
  /** Base URL of origin A. */
  a: string;
  /** Base URL of origin B. */
  b: string;
  /** Port of A. */
  portA: number;
  /** Port of B. */
  portB: number;
  /** Every request received, in order. */
  requests: Recorded[];
  /** Requests being answered right now (a stalled one stays counted). */
  inFlight(): number;
  /** The most requests answered at once. */
  peakInFlight(): number;
  /** Resolves once a request matching `test` arrived (rejects after `ms`). */
  arrived(test: (r: Recorded) => boolean, ms?: number): Promise<Recorded>;
  /** Closes both listeners and every connection. */
  close(): Promise<void>;
}

/** Starts the two listeners, both answering through `handler`. */
export async function startHostileRegistry(handler: HostileHandler): Promise<HostileRegistry> {
  const requests: Recorded[] = [];
  const sockets = new Set<Socket>();
  const waiters: { test: (r: Recorded) => boolean; resolve: (r: Recorded) => void }[] = [];
  let inFlight = 0;
  let peak = 0;
  const ports = { A: 0, B: 0 };
  const serve = (origin: Origin) => async (req: IncomingMessage, res: ServerResponse) => {
    inFlight++;
    peak = Math.max(peak, inFlight);
    res.on("close", () => inFlight--);
    const body = await readBody(req);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      headers[k] = Array.isArray(v) ? v.join(", ") : String(v ?? "");
    }
    const request: Recorded = {
      origin,
      method: req.method ?? "",
      url: req.url ?? "",
      host: headers.host ?? "",
      headers,
      body,
    };
    requests.push(request);
    for (const w of [...waiters]) {
      if (w.test(request)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(request);
      }
    }
    const ctx: HostileContext = {
      a: `http://127.0.0.1:${ports.A}`,
      b: `http://127.0.0.1:${ports.B}`,
      portA: ports.A,
      portB: ports.B,
      request,
    };
    try {
      await handler(req, res, ctx);
    } catch (e) {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(e));
    }
  };
  const servers: Server[] = [createServer(serve("A")), createServer(serve("B"))];
  for (const s of servers) {
    s.on("connection", (socket: Socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
    });
  }
  ports.A = await listen(servers[0]);
  ports.B = await listen(servers[1]);
  return {
    a: `http://127.0.0.1:${ports.A}`,
    b: `http://127.0.0.1:${ports.B}`,
    portA: ports.A,
    portB: ports.B,
    requests,
    inFlight: () => inFlight,
    peakInFlight: () => peak,
    arrived(test, ms = 60_000) {
      const found = requests.find(test);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no such request arrived")), ms);
        waiters.push({
          test,
          resolve: (r) => {
            clearTimeout(timer);
            resolve(r);
          },
        });
      });
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}

/** Answers 401 with a Bearer challenge whose realm is `realm`. */
export function bearerChallenge(res: ServerResponse, realm: string): void {
  res.writeHead(401, {
    "www-authenticate": `Bearer realm="${realm}",service="hostile",scope="repository:x:pull"`,
    "content-type": "application/json",
  });
  res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "token needed" }] }));
}

/** Answers `status` with an OCI error body carrying `message` as it is. */
export function ociError(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify({ errors: [{ code: "DENIED", message }] }));
}

/**
 * Starts a 200 answer declaring `declared` bytes, sends the first `sent` bytes of
 * `body`, then nothing more: the response stays open until the client gives up or the
 * registry closes.
 */
export function stalledBody(
  res: ServerResponse,
  headers: Record<string, string>,
  body: Uint8Array,
  sent = 1024,
): void {
  res.writeHead(200, { ...headers, "content-length": String(body.byteLength) });
  res.write(body.subarray(0, Math.min(sent, body.byteLength)));
}

/** A one-layer OCI image served by digest: manifest, config and layer. */
export interface ServedImage {
  /** The manifest's bytes. */
  manifest: Uint8Array;
  /** Its digest. */
  manifestDigest: string;
  /** Blobs by digest. */
  blobs: Map<string, Uint8Array>;
  /** The layer's digest. */
  layerDigest: string;
}

/** An OCI image with one layer of `layer` (any bytes, stored as they are). */
export function servedImage(layer: Uint8Array): ServedImage {
  const config = new TextEncoder().encode(JSON.stringify({
    architecture: "amd64",
    os: "linux",
    rootfs: { type: "layers", diff_ids: [sha256(layer)] },
  }));
  const manifest = new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: IMAGE_MANIFEST,
    config: {
      mediaType: "application/vnd.oci.image.config.v1+json",
      digest: sha256(config),
      size: config.byteLength,
    },
    layers: [{
      mediaType: "application/vnd.oci.image.layer.v1.tar",
      digest: sha256(layer),
      size: layer.byteLength,
    }],
  }));
  return {
    manifest,
    manifestDigest: sha256(manifest),
    blobs: new Map([[sha256(config), config], [sha256(layer), layer]]),
    layerDigest: sha256(layer),
  };
}

/** How {@linkcode imageHandler} departs from serving its image faithfully. */
export interface ImageServing {
  /** Manifests and indexes served by digest besides the image's; the tag gets `top`. */
  documents?: Map<string, { bytes: Uint8Array; type: string }>;
  /** The digest the tag answers with (default the image's manifest). */
  top?: string;
  /** Answers a blob GET itself (a stall, wrong bytes) by returning true. */
  blob?: (digest: string, bytes: Uint8Array, res: ServerResponse) => boolean;
  /** Answers a manifest GET itself by returning true. */
  manifest?: (bytes: Uint8Array, type: string, res: ServerResponse) => boolean;
}

/**
 * A handler serving `image`: `/v2/`, its manifest under any tag and by digest (GET and
 * HEAD), its blobs; anything else gets a 404 OCI error. `serving` changes what it says.
 */
export function imageHandler(image: ServedImage, serving: ImageServing = {}): HostileHandler {
  const documents = new Map(serving.documents);
  documents.set(image.manifestDigest, { bytes: image.manifest, type: IMAGE_MANIFEST });
  return (_req, res, ctx) => {
    const { url, method } = ctx.request;
    if (url === "/v2/") return void res.end("{}");
    const ref = /\/manifests\/([^/?]+)$/.exec(url)?.[1];
    if (ref !== undefined) {
      const doc = documents.get(
        ref.startsWith("sha256:") ? ref : serving.top ?? image.manifestDigest,
      );
      if (!doc) return ociError(res, 404, "manifest unknown");
      const headers = { "content-type": doc.type, "docker-content-digest": sha256(doc.bytes) };
      if (method === "HEAD") {
        res.writeHead(200, { ...headers, "content-length": String(doc.bytes.byteLength) });
        return void res.end();
      }
      if (serving.manifest?.(doc.bytes, doc.type, res)) return;
      res.writeHead(200, headers);
      return void res.end(doc.bytes);
    }
    const digest = /\/blobs\/(sha256:[a-f0-9]{64})$/.exec(url)?.[1];
    const bytes = digest ? image.blobs.get(digest) : undefined;
    if (!digest || !bytes) return ociError(res, 404, "blob unknown");
    if (serving.blob?.(digest, bytes, res)) return;
    res.writeHead(200, { "content-length": String(bytes.byteLength) });
    res.end(bytes);
  };
}

/** The media type of the image manifests served here. */
export const IMAGE_MANIFEST = "application/vnd.oci.image.manifest.v1+json";

/** `sha256:<hex>` of `data`. */
export function sha256(data: Uint8Array): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/** The peak resident memory (VmRSS, MiB) of process `pid` sampled every 50 ms until `done`. */
export async function peakRssMiB(pid: number, done: Promise<unknown>): Promise<number> {
  let peak = 0;
  let finished = false;
  done.finally(() => finished = true);
  for (let i = 0; i < 20 * 600 && !finished; i++) {
    try {
      const status = await readFile(`/proc/${pid}/status`, "utf8");
      const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      peak = Math.max(peak, kb / 1024);
    } catch {
      break; // gone
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return peak;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
  });
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const parts: Uint8Array[] = [];
    let size = 0;
    req.on("data", (d: Uint8Array) => {
      if (size < 1 << 20) parts.push(new Uint8Array(d));
      size += d.byteLength;
    });
    req.on("end", () => resolve(new TextDecoder().decode(concat(parts))));
    req.on("error", () => resolve(new TextDecoder().decode(concat(parts))));
  });
}
