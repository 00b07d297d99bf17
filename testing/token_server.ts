/**
 * A token service for CNCF distribution's `auth.token`: answers `GET /token` (Basic
 * credentials or anonymous) and OAuth2 `POST /token` (password and refresh_token
 * grants) with JWTs signed RS256 by node:crypto. The JWT header carries the signing
 * certificate in `x5c`, which distribution verifies against its `rootcertbundle`.
 *
 * Distribution accepts a token up to 60 s past its `exp` (clock-skew leeway), so the
 * `exp` written is shifted back by 60 s: a token is really refused `validSeconds`
 * after it was issued. `expiresIn` is what the client is told (default `validSeconds`).
 *
 * Listens on 127.0.0.1 on a free port only.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createPrivateKey, createSign, randomBytes, X509Certificate } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** Options of {@linkcode startTokenServer}. */
export interface TokenServerOptions {
  /** PEM of the RSA signing key. */
  keyPem: string;
  /** PEM of the self-signed certificate of that key (the registry's rootcertbundle). */
  certPem: string;
  /** The `iss` claim; the registry's `auth.token.issuer`. */
  issuer: string;
  /** The `aud` claim; the registry's `auth.token.service`. */
  service: string;
  /** Users and passwords. */
  users: Record<string, string>;
  /** Users granted only `pull`. */
  readOnlyUsers?: string[];
  /** Identity (refresh) tokens and the users they stand for. */
  identityTokens?: Record<string, string>;
  /** Whether anonymous requests get `pull`. Default false (anonymous gets nothing). */
  anonymousPull?: boolean;
  /** How long the registry accepts a token, s. Default 300. */
  validSeconds?: number;
  /** `expires_in` told to the client, s. Default `validSeconds`. */
  expiresIn?: number;
}

/** A running token service; its settings can be changed while it runs. */
export interface TokenServer {
  /** The realm, `http://127.0.0.1:<port>/token`. */
  realm: string;
  /** Settings, changeable while running. */
  settings: TokenServerOptions;
  /** Tokens issued so far. */
  issued: number;
  /** Methods of the token requests seen (`GET`, `POST`). */
  methods: string[];
  /** Stops the server. */
  close(): Promise<void>;
}

function b64url(data: string | Uint8Array): string {
  return Buffer.from(data).toString("base64url");
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    req.on("data", (d: Uint8Array) => text += new TextDecoder().decode(d));
    req.on("end", () => resolve(text));
    req.on("error", reject);
  });
}

/**
 * Signs a JWT for distribution: RS256, `x5c` = the certificate.
 *
 * @example
 * ```ts ignore
 * const jwt = signToken(keyPem, certPem, { iss: "issuer", aud: "service", exp: 0, access: [] });
 * ```
 */
export function signToken(
  keyPem: string,
  certPem: string,
  claims: Record<string, unknown>,
): string {
  const der = new X509Certificate(certPem).raw;
  const header = { typ: "JWT", alg: "RS256", x5c: [Buffer.from(der).toString("base64")] };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const signature = createSign("RSA-SHA256").update(input).sign(createPrivateKey(keyPem));
  return `${input}.${b64url(signature)}`;
}

/**
 * Starts the token service.
 *
 * @example
 * ```ts ignore
 * const tokens = await startTokenServer({ keyPem, certPem, issuer: "i", service: "s", users: { u: "p" } });
 * await tokens.close();
 * ```
 */
export async function startTokenServer(options: TokenServerOptions): Promise<TokenServer> {
  const state = { issued: 0 };
  const methods: string[] = [];

  const grant = (user: string | undefined, scopes: string[]) => {
    const s = options;
    const access: { type: string; name: string; actions: string[] }[] = [];
    for (const scope of scopes) {
      const first = scope.indexOf(":");
      const last = scope.lastIndexOf(":");
      if (first < 0 || last <= first) continue;
      const type = scope.slice(0, first);
      const name = scope.slice(first + 1, last);
      let actions = scope.slice(last + 1).split(",").filter(Boolean);
      if (user === undefined) actions = s.anonymousPull ? actions.filter((a) => a === "pull") : [];
      else if (s.readOnlyUsers?.includes(user)) actions = actions.filter((a) => a === "pull");
      if (actions.length) access.push({ type, name, actions });
    }
    return access;
  };

  const answer = (res: ServerResponse, user: string | undefined, scopes: string[]) => {
    const s = options;
    const valid = s.validSeconds ?? 300;
    const now = Math.floor(Date.now() / 1000);
    const token = signToken(s.keyPem, s.certPem, {
      iss: s.issuer,
      sub: user ?? "",
      aud: s.service,
      exp: now + valid - 60,
      nbf: now - 10,
      iat: now,
      jti: randomBytes(12).toString("hex"),
      access: grant(user, scopes),
    });
    state.issued++;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({
      token,
      access_token: token,
      expires_in: s.expiresIn ?? valid,
      issued_at: new Date().toISOString(),
    }));
  };

  const deny = (res: ServerResponse) => {
    res.writeHead(401, { "content-type": "application/json" });
    res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "invalid credentials" }] }));
  };

  const server = createServer(async (req, res) => {
    try {
      const u = new URL(req.url ?? "/", "http://127.0.0.1");
      methods.push(req.method ?? "");
      if (u.pathname !== "/token") {
        res.writeHead(404).end();
        return;
      }
      const body = await readBody(req);
      if (req.method === "POST") {
        const form = new URLSearchParams(body);
        const scopes = (form.get("scope") ?? "").split(" ").filter(Boolean);
        if (form.get("grant_type") === "password") {
          const user = form.get("username") ?? "";
          if (options.users[user] === undefined || options.users[user] !== form.get("password")) {
            return deny(res);
          }
          return answer(res, user, scopes);
        }
        if (form.get("grant_type") === "refresh_token") {
          const user = options.identityTokens?.[form.get("refresh_token") ?? ""];
          if (user === undefined) return deny(res);
          return answer(res, user, scopes);
        }
        res.writeHead(400).end();
        return;
      }
      const scopes = u.searchParams.getAll("scope").flatMap((s) => s.split(" ")).filter(Boolean);
      const header = req.headers.authorization;
      if (!header) return answer(res, undefined, scopes);
      if (!header.startsWith("Basic ")) return deny(res);
      const text = Buffer.from(header.slice(6), "base64").toString("utf8");
      const colon = text.indexOf(":");
      const user = text.slice(0, colon);
      if (options.users[user] === undefined || options.users[user] !== text.slice(colon + 1)) {
        return deny(res);
      }
      return answer(res, user, scopes);
    } catch (e) {
      res.writeHead(500).end(String(e));
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    settings: options,
    get issued() {
      return state.issued;
    },
    methods,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      }),
  };
}
