/**
 * An in-process OCI registry for tests (node:http, so it runs on Deno and Bun), storing
 * everything in memory, with faults injected on demand: dropped connections in PATCH
 * and GET bodies, 5xx/429 answers with `Retry-After`, tokens that expire mid-upload,
 * chunk minimums and maximums, refused chunked uploads, 201 to PATCH, blob GETs
 * redirected to a second origin, relative or absolute `Location`s, paginated listings.
 *
 * It listens on 127.0.0.1 on a free port only.
 *
 * @module
 */

import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** A fault that answers a status to matching requests, `times` times. */
export interface StatusFault {
  /** Only requests with this method (default any). */
  method?: string;
  /** Only requests whose path matches (default any). */
  path?: RegExp;
  /** The status to answer. */
  status: number;
  /** A `Retry-After` header to send. */
  retryAfter?: string;
  /** How many matching requests get it (default 1). */
  times?: number;
}

/** Faults to inject; each one-shot fault counts down `times` (default 1). */
export interface Faults {
  /** Answer these statuses to matching requests. */
  statuses?: StatusFault[];
  /** Drop the connection after this many bytes of a PATCH body (the bytes before are kept). */
  dropPatchAfterBytes?: number;
  /** How many PATCHes get dropped (default 1). */
  dropPatchTimes?: number;
  /** PATCHes let through before the drops start (default 0). */
  dropPatchSkip?: number;
  /** Stop reading a PATCH body after this many bytes and never answer (once). */
  stallPatchAfterBytes?: number;
  /** Leave this many commits (`PUT` to a session) unhandled and unanswered. */
  stallCommitTimes?: number;
  /** Drop the connection after this many bytes of a blob GET body. */
  dropGetAfterBytes?: number;
  /** How many GETs get dropped (default 1). */
  dropGetTimes?: number;
  /** Stall a blob GET body after this many bytes (until the client gives up). */
  stallGetAfterBytes?: number;
  /** Flip one byte of every blob GET body. */
  corruptGet?: boolean;
  /** Answer blob GETs with `Range` by 200 and the whole blob. */
  ignoreRange?: boolean;
  /** Revoke every token once this many PATCH body bytes have arrived in total. */
  expireTokensAfterPatchBytes?: number;
  /** Send `OCI-Chunk-Min-Length` and refuse (at PUT) a session whose non-last chunk was smaller. */
  chunkMinLength?: number;
  /** Refuse (400) a chunk under `min` bytes that does not end the blob of `total` bytes, like ECR. */
  silentMinChunk?: { min: number; total: number };
  /** Refuse a PATCH with `Content-Range` whose body is larger (416), like GHCR. */
  maxPatchBytes?: number;
  /** Refuse every PATCH (405), like a registry taking monolithic uploads only. */
  refusePatch?: boolean;
  /** Refuse a PATCH without `Content-Range` (400). */
  refuseStreamingPatch?: boolean;
  /** Answer 201 to PATCH, like ECR. */
  patch201?: boolean;
  /** Answer upload status GETs with 404, like ECR (no resume possible). */
  noUploadStatus?: boolean;
  /** Cancel the session when a request carries a stale `_state` (CNCF distribution does). */
  strictState?: boolean;
  /** Redirect blob GETs to the second origin. */
  redirectBlobGets?: boolean;
  /** Redirect blob GETs to themselves, forever. */
  redirectLoop?: boolean;
  /** Give absolute `Location`s (default relative). */
  absoluteLocation?: boolean;
  /** Answer listings at most this many entries a page. */
  maxPageSize?: number;
  /** Refuse manifest DELETE (405), like a registry with deleting disabled. */
  deleteDisabled?: boolean;
  /** Refuse mounts: open a session instead (202, as when the blob is not in `from`), or answer this status. */
  refuseMount?: "session" | number;
  /** Ignore the body and digest of a `POST ?digest=` (202, a session), as CNCF distribution does. */
  refuseSinglePost?: boolean;
  /** Refuse a commit `PUT` carrying bytes (400), like a registry that needs PATCH. */
  refuseMonolithic?: boolean;
  /** Answer OAuth2 POSTs to the token endpoint with this status (e.g. 404: GET only). */
  tokenPostStatus?: number;
}

/** Options of {@linkcode startTestRegistry}. */
export interface TestRegistryOptions {
  /** Authentication: none, Basic, or Bearer tokens from `/token` on the same server. */
  auth?: "none" | "basic" | "bearer";
  /** Users and their passwords. */
  users?: Record<string, string>;
  /** Users granted only `pull`. */
  readOnlyUsers?: string[];
  /** Identity (refresh) tokens and the users they stand for. */
  identityTokens?: Record<string, string>;
  /** Allow anonymous pull (Bearer: anonymous tokens granted `pull`). */
  anonymousPull?: boolean;
  /** Token lifetime at the registry, ms (default 1 h). */
  tokenLifetimeMs?: number;
  /** `expires_in` reported with tokens, s (default the lifetime). */
  tokenExpiresIn?: number;
  /** Faults to inject (can be changed later through `faults`). */
  faults?: Faults;
}

/** One request the registry saw. */
export interface SeenRequest {
  /** `main` or `second` (the redirect target). */
  origin: "main" | "second";
  /** HTTP method. */
  method: string;
  /** Path and query. */
  url: string;
  /** The `Authorization` header, if any. */
  authorization?: string;
  /** `Content-Range`, if any. */
  contentRange?: string;
  /** Body bytes received. */
  bodyBytes: number;
  /** The status answered (once answered). */
  status?: number;
}

interface Upload {
  repo: string;
  parts: Uint8Array[];
  size: number;
  state: number;
  chunks: number[];
}

interface StoredManifest {
  bytes: Uint8Array;
  mediaType: string;
  digest: string;
}

/** A running test registry. */
export interface TestRegistry {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** `127.0.0.1:<port>`. */
  host: string;
  /** The second origin blob GETs are redirected to. */
  secondUrl: string;
  /** Faults; change them between operations. */
  faults: Faults;
  /** Every request seen, in order. */
  requests: SeenRequest[];
  /** Blobs by digest. */
  blobs: Map<string, Uint8Array>;
  /** Upload sessions still open. */
  openUploads(): number;
  /** Upload sessions cancelled by DELETE. */
  cancelledUploads: number;
  /** Tokens issued so far. */
  tokensIssued: number;
  /** Token requests by method (`GET`, `POST`). */
  tokenRequests: string[];
  /** Every token issued (to check none leaks into messages). */
  issuedTokens: string[];
  /** Revokes every token now. */
  revokeTokens(): void;
  /** Stores a blob in a repository directly. */
  putBlob(repo: string, bytes: Uint8Array): string;
  /** Adds a tag (with a tiny manifest) directly. */
  putTag(repo: string, tag: string): void;
  /** Stops both servers. */
  close(): Promise<void>;
}

function sha256(bytes: Uint8Array): string {
  return "sha256:" + createHash("sha256").update(bytes).digest("hex");
}

function concat(parts: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
  });
}

function readBody(req: IncomingMessage): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const parts: Uint8Array[] = [];
    let size = 0;
    req.on("data", (d: Uint8Array) => {
      parts.push(new Uint8Array(d));
      size += d.byteLength;
    });
    req.on("end", () => resolve(concat(parts, size)));
    req.on("error", reject);
  });
}

function errorBody(code: string, message: string): string {
  return JSON.stringify({ errors: [{ code, message, detail: null }] });
}

/**
 * Starts a test registry (and its second origin) on 127.0.0.1.
 *
 * @example
 * ```ts ignore
 * import { startTestRegistry } from "./fake_registry.ts";
 * const registry = await startTestRegistry({ faults: { dropPatchAfterBytes: 1000 } });
 * // … use registry.url …
 * await registry.close();
 * ```
 */
export async function startTestRegistry(options: TestRegistryOptions = {}): Promise<TestRegistry> {
  const auth = options.auth ?? "none";
  const users = options.users ?? {};
  const readOnly = new Set(options.readOnlyUsers ?? []);
  const lifetime = options.tokenLifetimeMs ?? 3_600_000;
  const faults: Faults = options.faults ?? {};
  const requests: SeenRequest[] = [];
  const blobs = new Map<string, Uint8Array>();
  const repoBlobs = new Map<string, Set<string>>();
  const manifests = new Map<string, Map<string, StoredManifest>>();
  const tags = new Map<string, Map<string, string>>();
  const uploads = new Map<string, Upload>();
  const tokens = new Map<string, { user?: string; scopes: Set<string>; expires: number }>();
  let patchBytesTotal = 0;
  let url = "";
  let secondUrl = "";
  const counters = { cancelledUploads: 0, tokensIssued: 0 };
  const tokenRequests: string[] = [];
  const issuedTokens: string[] = [];
  const sockets = new Set<{ destroy(): void }>();

  const inRepo = (repo: string) => {
    let s = repoBlobs.get(repo);
    if (!s) repoBlobs.set(repo, s = new Set());
    return s;
  };
  const location = (path: string) => (faults.absoluteLocation ? url + path : path);

  const takeStatusFault = (method: string, path: string): StatusFault | undefined => {
    for (const f of faults.statuses ?? []) {
      if ((f.times ?? 1) <= 0) continue;
      if (f.method && f.method !== method) continue;
      if (f.path && !f.path.test(path)) continue;
      f.times = (f.times ?? 1) - 1;
      return f;
    }
    return undefined;
  };

  const userOf = (header: string | undefined): string | undefined => {
    if (!header?.startsWith("Basic ")) return undefined;
    const text = atob(header.slice(6));
    const i = text.indexOf(":");
    const user = text.slice(0, i);
    return users[user] !== undefined && users[user] === text.slice(i + 1) ? user : undefined;
  };

  const grant = (user: string | undefined, scopes: string[]): Set<string> => {
    const out = new Set<string>();
    for (const scope of scopes) {
      const last = scope.lastIndexOf(":");
      const resource = scope.slice(0, last);
      for (const action of scope.slice(last + 1).split(",")) {
        if (!action) continue;
        if (user === undefined && !(options.anonymousPull && action === "pull")) continue;
        if (user !== undefined && readOnly.has(user) && action !== "pull") continue;
        out.add(`${resource}:${action}`);
      }
    }
    return out;
  };

  const issueToken = (user: string | undefined, scopes: string[]) => {
    const token = randomBytes(24).toString("base64url");
    tokens.set(token, { user, scopes: grant(user, scopes), expires: Date.now() + lifetime });
    counters.tokensIssued++;
    issuedTokens.push(token);
    return {
      token,
      access_token: token,
      expires_in: options.tokenExpiresIn ?? Math.round(lifetime / 1000),
      issued_at: new Date().toISOString(),
    };
  };

  async function handleToken(req: IncomingMessage, res: ServerResponse, u: URL) {
    tokenRequests.push(req.method ?? "");
    let user: string | undefined;
    let scopes: string[];
    if (req.method === "POST") {
      const body = await readBody(req);
      if (faults.tokenPostStatus) {
        res.writeHead(faults.tokenPostStatus).end();
        return;
      }
      const form = new URLSearchParams(new TextDecoder().decode(body));
      const grantType = form.get("grant_type");
      if (grantType === "password") {
        const name = form.get("username") ?? "";
        if (users[name] === undefined || users[name] !== form.get("password")) {
          res.writeHead(401, { "content-type": "application/json" }).end('{"error":"denied"}');
          return;
        }
        user = name;
      } else if (grantType === "refresh_token") {
        const name = options.identityTokens?.[form.get("refresh_token") ?? ""];
        if (name === undefined) {
          res.writeHead(401, { "content-type": "application/json" }).end('{"error":"denied"}');
          return;
        }
        user = name;
      } else {
        res.writeHead(400).end();
        return;
      }
      scopes = (form.get("scope") ?? "").split(" ").filter(Boolean);
    } else {
      await readBody(req);
      const header = req.headers.authorization;
      if (header) {
        user = userOf(header);
        if (user === undefined) {
          res.writeHead(401, { "content-type": "application/json" }).end('{"error":"denied"}');
          return;
        }
      }
      scopes = u.searchParams.getAll("scope");
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(issueToken(user, scopes)));
  }

  /** Checks auth for a registry request; answers 401 and returns false when refused. */
  const authorize = (req: IncomingMessage, res: ServerResponse, needed: string[]): boolean => {
    if (auth === "none") return true;
    const header = req.headers.authorization;
    if (auth === "basic") {
      if (userOf(header) !== undefined) return true;
      if (
        header === undefined && options.anonymousPull && needed.every((n) => n.endsWith(":pull"))
      ) {
        return true;
      }
      res.writeHead(401, {
        "www-authenticate": 'Basic realm="test-registry"',
        "content-type": "application/json",
      });
      res.end(errorBody("UNAUTHORIZED", "authentication required"));
      return false;
    }
    const token = header?.startsWith("Bearer ") ? tokens.get(header.slice(7)) : undefined;
    const valid = token !== undefined && token.expires > Date.now();
    const allowed = valid && needed.every((n) => token.scopes.has(n));
    if (allowed) return true;
    const scope = [...new Set(needed.map((n) => n.slice(0, n.lastIndexOf(":"))))]
      .map((r) =>
        `${r}:${
          needed.filter((n) => n.startsWith(r + ":")).map((n) => n.slice(r.length + 1)).join(",")
        }`
      )
      .join(" ");
    res.writeHead(401, {
      "www-authenticate": `Bearer realm="${url}/token",service="test-registry"${
        scope ? `,scope="${scope}"` : ""
      }${valid ? ',error="insufficient_scope"' : ""}`,
      "content-type": "application/json",
    });
    res.end(errorBody("UNAUTHORIZED", "authentication required"));
    return false;
  };

  const sendBlob = (
    req: IncomingMessage,
    res: ServerResponse,
    bytes: Uint8Array,
    origin: string,
  ) => {
    const digest = sha256(bytes);
    let start = 0;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
    if (range && !faults.ignoreRange) start = Number(range[1]);
    let body = bytes.subarray(start);
    if (faults.corruptGet && body.byteLength > 0) {
      body = body.slice();
      body[0] ^= 0xff;
    }
    const headers: Record<string, string> = {
      "content-type": "application/octet-stream",
      "content-length": String(body.byteLength),
      "docker-content-digest": digest,
      "x-origin": origin,
    };
    if (start > 0) {
      headers["content-range"] = `bytes ${start}-${bytes.byteLength - 1}/${bytes.byteLength}`;
    }
    res.writeHead(start > 0 ? 206 : 200, headers);
    if (req.method === "HEAD") {
      res.end();
      return;
    }
    const drop = faults.dropGetAfterBytes;
    if (drop !== undefined && (faults.dropGetTimes ?? 1) > 0 && body.byteLength > drop) {
      faults.dropGetTimes = (faults.dropGetTimes ?? 1) - 1;
      res.write(body.subarray(0, drop), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    const stall = faults.stallGetAfterBytes;
    if (stall !== undefined && body.byteLength > stall) {
      faults.stallGetAfterBytes = undefined;
      res.write(body.subarray(0, stall));
      return; // never ends: the client's stall timeout must fire
    }
    res.end(body);
  };

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const u = new URL(req.url ?? "/", url);
    const path = u.pathname;
    const method = req.method ?? "GET";
    const seen: SeenRequest = {
      origin: "main",
      method,
      url: path + u.search,
      authorization: req.headers.authorization,
      contentRange: req.headers["content-range"] as string | undefined,
      bodyBytes: 0,
    };
    requests.push(seen);
    req.on("data", (d: Uint8Array) => seen.bodyBytes += d.byteLength);
    res.on("finish", () => seen.status = res.statusCode);

    if (path === "/token") return await handleToken(req, res, u);
    const fault = takeStatusFault(method, path);
    if (fault) {
      await readBody(req).catch(() => {});
      res.writeHead(fault.status, {
        "content-type": "application/json",
        ...(fault.retryAfter !== undefined ? { "retry-after": fault.retryAfter } : {}),
      });
      res.end(errorBody(fault.status === 429 ? "TOOMANYREQUESTS" : "UNKNOWN", "injected fault"));
      return;
    }
    if (path === "/v2/" || path === "/v2") {
      if (!authorize(req, res, [])) return;
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
      return;
    }
    if (path === "/v2/_catalog") {
      if (!authorize(req, res, ["registry:catalog:*"])) return;
      const all = [...new Set([...manifests.keys(), ...repoBlobs.keys()])].sort();
      return list(u, res, all, "repositories", "/v2/_catalog", {});
    }
    let m = /^\/v2\/(.+)\/tags\/list$/.exec(path);
    if (m) {
      const repo = m[1];
      if (!authorize(req, res, [`repository:${repo}:pull`])) return;
      const t = tags.get(repo);
      if (!t) {
        res.writeHead(404, { "content-type": "application/json" })
          .end(errorBody("NAME_UNKNOWN", "repository name not known to registry"));
        return;
      }
      return list(u, res, [...t.keys()].sort(), "tags", `/v2/${repo}/tags/list`, { name: repo });
    }
    m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(path);
    if (m) return await handleManifest(req, res, m[1], m[2]);
    m = /^\/v2\/(.+)\/blobs\/uploads\/([^/]*)$/.exec(path);
    if (m) return await handleUpload(req, res, u, m[1], m[2]);
    m = /^\/v2\/(.+)\/blobs\/(sha256:[a-f0-9]{64})$/.exec(path);
    if (m) {
      const [, repo, digest] = m;
      if (!authorize(req, res, [`repository:${repo}:pull`])) return;
      const bytes = blobs.get(digest);
      if (!bytes || !inRepo(repo).has(digest)) {
        res.writeHead(404, { "content-type": "application/json" })
          .end(errorBody("BLOB_UNKNOWN", "blob unknown to registry"));
        return;
      }
      if (faults.redirectLoop) {
        res.writeHead(307, { location: path }).end();
        return;
      }
      if (faults.redirectBlobGets && method === "GET") {
        res.writeHead(307, { location: `${secondUrl}/storage/${digest}?sig=presigned` }).end();
        return;
      }
      return sendBlob(req, res, bytes, "main");
    }
    res.writeHead(404).end();
  }

  function list(
    u: URL,
    res: ServerResponse,
    all: string[],
    field: string,
    path: string,
    extra: Record<string, string>,
  ) {
    let n = Number(u.searchParams.get("n") ?? all.length);
    if (faults.maxPageSize) n = Math.min(n, faults.maxPageSize);
    const last = u.searchParams.get("last");
    const from = last ? all.findIndex((x) => x > last) : 0;
    const start = from < 0 ? all.length : from;
    const page = all.slice(start, start + n);
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (start + n < all.length) {
      headers.link = `<${path}?last=${encodeURIComponent(page.at(-1)!)}&n=${n}>; rel="next"`;
    }
    res.writeHead(200, headers).end(JSON.stringify({ ...extra, [field]: page }));
  }

  async function handleManifest(
    req: IncomingMessage,
    res: ServerResponse,
    repo: string,
    reference: string,
  ) {
    const method = req.method ?? "GET";
    const needed = method === "PUT"
      ? [`repository:${repo}:pull`, `repository:${repo}:push`]
      : method === "DELETE"
      ? [`repository:${repo}:delete`]
      : [`repository:${repo}:pull`];
    if (!authorize(req, res, needed)) return;
    const store = manifests.get(repo) ?? new Map<string, StoredManifest>();
    if (method === "PUT") {
      const bytes = await readBody(req);
      const digest = sha256(bytes);
      const stored = { bytes, mediaType: String(req.headers["content-type"]), digest };
      store.set(digest, stored);
      if (!reference.startsWith("sha256:")) {
        store.set(reference, stored);
        const t = tags.get(repo) ?? new Map<string, string>();
        t.set(reference, digest);
        tags.set(repo, t);
      }
      manifests.set(repo, store);
      res.writeHead(201, {
        location: location(`/v2/${repo}/manifests/${digest}`),
        "docker-content-digest": digest,
      }).end();
      return;
    }
    await readBody(req);
    if (method === "DELETE") {
      if (faults.deleteDisabled) {
        res.writeHead(405, { "content-type": "application/json" })
          .end(errorBody("UNSUPPORTED", "The operation is unsupported."));
        return;
      }
      if (!store.has(reference)) {
        res.writeHead(404, { "content-type": "application/json" })
          .end(errorBody("MANIFEST_UNKNOWN", "manifest unknown"));
        return;
      }
      for (const [k, v] of store) if (v.digest === reference) store.delete(k);
      for (const [k, v] of tags.get(repo) ?? []) if (v === reference) tags.get(repo)!.delete(k);
      res.writeHead(202).end();
      return;
    }
    const found = store.get(reference);
    if (!found) {
      res.writeHead(404, { "content-type": "application/json" })
        .end(errorBody("MANIFEST_UNKNOWN", "manifest unknown"));
      return;
    }
    res.writeHead(200, {
      "content-type": found.mediaType,
      "content-length": String(found.bytes.byteLength),
      "docker-content-digest": found.digest,
    });
    res.end(method === "HEAD" ? undefined : found.bytes);
  }

  function uploadLocation(repo: string, id: string, upload: Upload): string {
    return location(`/v2/${repo}/blobs/uploads/${id}?_state=${upload.state}`);
  }

  function rangeOf(upload: Upload): string {
    return `0-${Math.max(0, upload.size - 1)}`;
  }

  async function handleUpload(
    req: IncomingMessage,
    res: ServerResponse,
    u: URL,
    repo: string,
    id: string,
  ) {
    const method = req.method ?? "GET";
    const needed = [`repository:${repo}:pull`, `repository:${repo}:push`];
    const from = u.searchParams.get("from");
    const mount = u.searchParams.get("mount");
    if (method === "POST" && from) needed.push(`repository:${from}:pull`);
    if (!authorize(req, res, needed)) return;
    if (method === "POST") {
      const body = await readBody(req);
      if (mount && typeof faults.refuseMount === "number") {
        res.writeHead(faults.refuseMount, { "content-type": "application/json" })
          .end(errorBody("DENIED", "mount refused"));
        return;
      }
      const single = u.searchParams.get("digest");
      if (!mount && single && !faults.refuseSinglePost) {
        if (sha256(body) !== single) {
          res.writeHead(400, { "content-type": "application/json" })
            .end(errorBody("DIGEST_INVALID", "provided digest did not match uploaded content"));
          return;
        }
        return stored(res, repo, single, body);
      }
      if (mount && from && inRepo(from).has(mount) && !faults.refuseMount) {
        return stored(res, repo, mount, blobs.get(mount)!);
      }
      const newId = randomBytes(8).toString("hex");
      const upload: Upload = { repo, parts: [], size: 0, state: 0, chunks: [] };
      uploads.set(newId, upload);
      const headers: Record<string, string> = {
        location: uploadLocation(repo, newId, upload),
        range: "0-0",
        "docker-upload-uuid": newId,
      };
      if (faults.chunkMinLength) headers["oci-chunk-min-length"] = String(faults.chunkMinLength);
      res.writeHead(202, headers).end();
      return;
    }
    const upload = uploads.get(id);
    if (!upload || upload.repo !== repo) {
      await readBody(req).catch(() => {});
      res.writeHead(404, { "content-type": "application/json" })
        .end(errorBody("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry"));
      return;
    }
    const state = Number(u.searchParams.get("_state"));
    if (faults.strictState && state !== upload.state) {
      await readBody(req).catch(() => {});
      uploads.delete(id);
      res.writeHead(400, { "content-type": "application/json" })
        .end(errorBody("BLOB_UPLOAD_INVALID", "upload resumed at wrong offset"));
      return;
    }
    if (method === "GET") {
      if (faults.noUploadStatus) {
        res.writeHead(404, { "content-type": "application/json" })
          .end(errorBody("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry"));
        return;
      }
      res.writeHead(204, {
        location: uploadLocation(repo, id, upload),
        range: rangeOf(upload),
        "docker-upload-uuid": id,
      }).end();
      return;
    }
    if (method === "DELETE") {
      uploads.delete(id);
      counters.cancelledUploads++;
      res.writeHead(204).end();
      return;
    }
    if (method === "PATCH") return await handlePatch(req, res, repo, id, upload);
    if (method === "PUT") {
      const body = await readBody(req);
      if ((faults.stallCommitTimes ?? 0) > 0) {
        faults.stallCommitTimes!--;
        return; // never answered: the client cannot tell whether the blob was stored
      }
      if (body.byteLength && faults.refuseMonolithic) {
        res.writeHead(400, { "content-type": "application/json" })
          .end(errorBody("UNSUPPORTED", "send the bytes with PATCH"));
        return;
      }
      if (body.byteLength) {
        upload.parts.push(body);
        upload.size += body.byteLength;
        upload.chunks.push(body.byteLength);
      }
      const digest = u.searchParams.get("digest") ?? "";
      const bytes = concat(upload.parts, upload.size);
      if (sha256(bytes) !== digest) {
        res.writeHead(400, { "content-type": "application/json" })
          .end(errorBody("DIGEST_INVALID", "provided digest did not match uploaded content"));
        return;
      }
      const min = faults.chunkMinLength;
      if (min && upload.chunks.slice(0, -1).some((c) => c < min)) {
        res.writeHead(400, { "content-type": "application/json" })
          .end(errorBody("SIZE_INVALID", `a chunk was smaller than ${min} bytes`));
        return;
      }
      uploads.delete(id);
      return stored(res, repo, digest, bytes);
    }
    res.writeHead(405).end();
  }

  /** Stores a blob in a repository and answers 201 with its location. */
  function stored(res: ServerResponse, repo: string, digest: string, bytes: Uint8Array) {
    blobs.set(digest, bytes);
    inRepo(repo).add(digest);
    res.writeHead(201, {
      location: location(`/v2/${repo}/blobs/${digest}`),
      "docker-content-digest": digest,
    }).end();
  }

  async function handlePatch(
    req: IncomingMessage,
    res: ServerResponse,
    repo: string,
    id: string,
    upload: Upload,
  ) {
    const contentRange = req.headers["content-range"] as string | undefined;
    const length = Number(req.headers["content-length"] ?? NaN);
    const refuse = (status: number, code: string, message: string) => {
      req.resume();
      res.writeHead(status, { "content-type": "application/json", range: rangeOf(upload) })
        .end(errorBody(code, message));
    };
    if (faults.refusePatch) return refuse(405, "UNSUPPORTED", "chunked upload is not supported");
    if (!contentRange && faults.refuseStreamingPatch) {
      return refuse(400, "BLOB_UPLOAD_INVALID", "Content-Range required");
    }
    if (contentRange) {
      const m = /^(\d+)-(\d+)$/.exec(contentRange);
      if (!m || Number(m[1]) !== upload.size) {
        return refuse(416, "BLOB_UPLOAD_INVALID", "out of order chunk");
      }
      if (faults.maxPatchBytes !== undefined && length > faults.maxPatchBytes) {
        return refuse(416, "SIZE_INVALID", "chunk too large");
      }
      const small = faults.silentMinChunk;
      if (small && length < small.min && upload.size + length < small.total) {
        return refuse(400, "INVALID_LAYER_PART", "the part is smaller than the minimum");
      }
    }
    const drop = faults.dropPatchAfterBytes;
    let dropping = drop !== undefined && (faults.dropPatchTimes ?? 1) > 0;
    if (dropping && (faults.dropPatchSkip ?? 0) > 0) {
      faults.dropPatchSkip = faults.dropPatchSkip! - 1;
      dropping = false;
    }
    const stall = faults.stallPatchAfterBytes;
    let received = 0;
    let chunk = 0;
    let done = false;
    let stalled = false;
    await new Promise<void>((resolve) => {
      req.on("data", (d: Uint8Array) => {
        if (done || stalled) return;
        let bytes = new Uint8Array(d);
        if (stall !== undefined && received + bytes.byteLength > stall) {
          bytes = bytes.subarray(0, stall - received);
          faults.stallPatchAfterBytes = undefined;
          stalled = true;
          req.pause();
          upload.parts.push(bytes);
          upload.size += bytes.byteLength;
          resolve();
          return;
        }
        if (dropping && received + bytes.byteLength > drop!) {
          bytes = bytes.subarray(0, drop! - received);
          done = true;
        }
        received += bytes.byteLength;
        chunk += bytes.byteLength;
        upload.parts.push(bytes);
        upload.size += bytes.byteLength;
        patchBytesTotal += bytes.byteLength;
        if (done) {
          faults.dropPatchTimes = (faults.dropPatchTimes ?? 1) - 1;
          upload.state++;
          req.socket.destroy();
          resolve();
        }
      });
      req.on("end", () => resolve());
      req.on("error", () => resolve());
      req.on("close", () => resolve());
    });
    if (done || stalled) return; // dropped, or stalled for good: never answered
    upload.chunks.push(chunk);
    const expire = faults.expireTokensAfterPatchBytes;
    if (expire !== undefined && patchBytesTotal >= expire) {
      faults.expireTokensAfterPatchBytes = undefined;
      tokens.clear();
    }
    upload.state++;
    res.writeHead(faults.patch201 ? 201 : 202, {
      location: uploadLocation(repo, id, upload),
      range: rangeOf(upload),
      "docker-upload-uuid": id,
    }).end();
  }

  const main = createServer((req, res) => {
    handle(req, res).catch((e) => {
      try {
        res.writeHead(500).end(String(e));
      } catch {
        // already answered
      }
    });
  });
  const second = createServer((req, res) => {
    const u = new URL(req.url ?? "/", secondUrl);
    requests.push({
      origin: "second",
      method: req.method ?? "GET",
      url: u.pathname + u.search,
      authorization: req.headers.authorization,
      bodyBytes: 0,
    });
    const m = /^\/storage\/(sha256:[a-f0-9]{64})$/.exec(u.pathname);
    const bytes = m ? blobs.get(m[1]) : undefined;
    if (!bytes) {
      res.writeHead(404).end();
      return;
    }
    sendBlob(req, res, bytes, "second");
  });
  for (const s of [main, second]) {
    s.on("connection", (socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
    });
  }
  const port = await listen(main);
  const secondPort = await listen(second);
  url = `http://127.0.0.1:${port}`;
  secondUrl = `http://127.0.0.1:${secondPort}`;

  return {
    url,
    host: `127.0.0.1:${port}`,
    secondUrl,
    faults,
    requests,
    blobs,
    openUploads: () => uploads.size,
    get cancelledUploads() {
      return counters.cancelledUploads;
    },
    get tokensIssued() {
      return counters.tokensIssued;
    },
    tokenRequests,
    issuedTokens,
    revokeTokens: () => tokens.clear(),
    putBlob(repo: string, bytes: Uint8Array): string {
      const digest = sha256(bytes);
      blobs.set(digest, bytes);
      inRepo(repo).add(digest);
      return digest;
    },
    putTag(repo: string, tag: string): void {
      const bytes = new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, tag }));
      const digest = sha256(bytes);
      const stored = { bytes, mediaType: "application/vnd.oci.image.manifest.v1+json", digest };
      const store = manifests.get(repo) ?? new Map<string, StoredManifest>();
      store.set(tag, stored);
      store.set(digest, stored);
      manifests.set(repo, store);
      const t = tags.get(repo) ?? new Map<string, string>();
      t.set(tag, digest);
      tags.set(repo, t);
    },
    async close() {
      for (const s of sockets) s.destroy();
      await Promise.all([main, second].map((s) =>
        new Promise<void>((resolve) => {
          s.close(() => resolve());
          (s as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
        })
      ));
    },
  };
}

/**
 * Deterministic pseudo-random bytes (xorshift), the same for the same seed.
 *
 * @example
 * ```ts ignore
 * const bytes = testBytes(1024, 7);
 * ```
 */
export function testBytes(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let x = (seed * 2654435761) >>> 0 || 1;
  let i = 0;
  for (; i + 4 <= size; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    view.setUint32(i, x);
  }
  for (; i < size; i++) out[i] = (x >>> (8 * (i % 4))) & 0xff;
  return out;
}

/**
 * A blob source over bytes: `open(offset)` streams them from `offset` in pieces of
 * `piece` bytes, counting how often it was opened.
 *
 * @example
 * ```ts ignore
 * const source = bytesSource(testBytes(100));
 * ```
 */
export function bytesSource(
  bytes: Uint8Array,
  options: { digest?: string; size?: number; piece?: number; withDigest?: boolean } = {},
): {
  open(offset: number): ReadableStream<Uint8Array>;
  digest?: string;
  size?: number;
  opens: number[];
} {
  const piece = options.piece ?? 256 * 1024;
  const opens: number[] = [];
  return {
    opens,
    ...(options.withDigest || options.digest ? { digest: options.digest ?? sha256(bytes) } : {}),
    size: "size" in options ? options.size : bytes.byteLength,
    open(offset: number) {
      opens.push(offset);
      let at = offset;
      return new ReadableStream<Uint8Array>({
        pull(controller) {
          if (at >= bytes.byteLength) {
            controller.close();
            return;
          }
          const end = Math.min(bytes.byteLength, at + piece);
          controller.enqueue(bytes.slice(at, end));
          at = end;
        },
      });
    },
  };
}

/**
 * The `sha256:` digest of bytes.
 *
 * @example
 * ```ts ignore
 * digestOf(new Uint8Array()); // "sha256:e3b0…"
 * ```
 */
export function digestOf(bytes: Uint8Array): string {
  return sha256(bytes);
}
