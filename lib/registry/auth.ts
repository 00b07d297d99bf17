/**
 * Authentication with a registry: anonymous, Basic, and the Bearer token flow
 * (realm, service, scope; `token` or `access_token`; `expires_in`), with tokens cached
 * per scope until shortly before they expire, refreshed when a 401 arrives, OAuth2
 * `POST` falling back to `GET`, and identity tokens sent as refresh tokens.
 *
 * @module
 */

import { AbortedError, ImagesError } from "../errors.ts";
import { type Challenge, parseChallenges, pickChallenge } from "./challenge.ts";
import type { Credentials, ResolvedCredentials } from "./credentials.ts";
import { isLoopbackHost } from "./endpoint.ts";
import {
  AuthenticationError,
  readOciErrors,
  RegistryConnectionError,
  RegistryError,
} from "./errors.ts";
import type { HttpResponse, HttpTransport } from "./transport.ts";
import type { SecretSet } from "./redact.ts";
import { backoffDelay, RETRYABLE_STATUSES, type RetryPolicy, sleep } from "./retry.ts";

/**
 * Options of an {@linkcode Authenticator}.
 *
 * @example
 * ```ts
 * import type { AuthenticatorOptions } from "./auth.ts";
 * import { HttpTransport } from "./transport.ts";
 * import { SecretSet } from "./redact.ts";
 * import { DEFAULT_RETRY_POLICY } from "./retry.ts";
 * const transport = new HttpTransport();
 * const options: AuthenticatorOptions = {
 *   host: "r.example.com",
 *   credentials: () => Promise.resolve(undefined),
 *   transport,
 *   retry: DEFAULT_RETRY_POLICY,
 *   secrets: new SecretSet(),
 * };
 * ```
 */
export interface AuthenticatorOptions {
  /** The registry's `host[:port]`, for messages. */
  host: string;
  /** Finds the credentials, called at most once and only when the registry asks for them. */
  credentials: () => Promise<ResolvedCredentials | undefined>;
  /** Sends requests to the token service. */
  transport: HttpTransport;
  /** Retries of token requests. */
  retry: RetryPolicy;
  /** Secrets learnt here (passwords, tokens) are added to it so messages can be scrubbed. */
  secrets: SecretSet;
  /** Whether credentials may go over plain http to a host that is not loopback. */
  insecure?: boolean;
  /** `client_id` sent to OAuth2 token services. Default `apolo-images`. */
  clientId?: string;
}

interface CachedToken {
  token: string;
  expiresAt: number;
  scopes: Map<string, Set<string>>;
}

/**
 * What to do after a 401: whether a new attempt may succeed, and with which scopes.
 *
 * @example
 * ```ts ignore
 * const outcome = await auth.challenged(response, ["repository:app:pull"], undefined);
 * if (outcome.retry) console.log("try again with", outcome.scopes);
 * ```
 */
export interface ChallengeOutcome {
  /** Whether sending the request again may succeed. */
  retry: boolean;
  /** The scopes to ask for in that new attempt. */
  scopes: string[];
  /**
   * Whether the registry refused a Bearer token for being no longer good (not for lacking
   * a scope): a fresh one may expire on its way too, so a second new one may be worth asking.
   */
  tokenRefused?: boolean;
}

/**
 * Adds `Authorization` to registry requests and answers the registry's challenges.
 *
 * @example
 * ```ts ignore
 * import { Authenticator } from "./auth.ts";
 * const auth = new Authenticator({ host, credentials, transport, retry, secrets });
 * const header = await auth.header(["repository:app:pull"]);
 * ```
 */
export class Authenticator {
  readonly #o: AuthenticatorOptions;
  #scheme: "unknown" | "basic" | "bearer" = "unknown";
  #realm?: URL;
  #service?: string;
  #tokens: CachedToken[] = [];
  #inflight = new Map<string, Promise<CachedToken>>();
  #resolved?: Promise<ResolvedCredentials | undefined>;

  /**
   * Creates an authenticator; it learns the scheme from the registry's first challenge.
   *
   * @param options host, credential lookup, transport and retry policy
   */
  constructor(options: AuthenticatorOptions) {
    this.#o = options;
  }

  /** The scheme learnt from the registry: `unknown` until its first challenge. */
  get scheme(): "unknown" | "basic" | "bearer" {
    return this.#scheme;
  }

  /** Credentials and their source, looked up once. */
  credentials(): Promise<ResolvedCredentials | undefined> {
    this.#resolved ??= this.#o.credentials().then((found) => {
      if (found) {
        const c = found.credentials;
        if ("password" in c) {
          this.#o.secrets.add(c.password);
          this.#o.secrets.add(basicValue(c.username, c.password));
        } else this.#o.secrets.add(c.identityToken);
      }
      return found;
    });
    return this.#resolved;
  }

  /**
   * The `Authorization` value for a request needing `scopes` (e.g.
   * `repository:app:pull,push`), or undefined while the registry has not asked for any.
   * `operation` names the request in errors.
   */
  async header(
    scopes: string[],
    signal?: AbortSignal,
    operation = `access ${this.#o.host}`,
  ): Promise<string | undefined> {
    if (this.#scheme === "basic") {
      const found = await this.credentials();
      if (!found) return undefined;
      const c = found.credentials;
      if (!("password" in c)) {
        throw new AuthenticationError(
          `${operation}: ${this.#o.host} asks for Basic authentication, which an identity ` +
            `token (from ${found.source}) cannot give`,
        );
      }
      return basicValue(c.username, c.password);
    }
    if (this.#scheme === "bearer") {
      const token = await this.#token(scopes, signal, operation);
      return `Bearer ${token.token}`;
    }
    return undefined;
  }

  /**
   * Learns from a 401 answer (its `WWW-Authenticate`), forgets the token that was
   * refused, and says whether a new attempt may succeed.
   */
  async challenged(
    response: HttpResponse,
    scopes: string[],
    sent: string | undefined,
  ): Promise<ChallengeOutcome> {
    const challenge = pickChallenge(parseChallenges(response.headers.get("www-authenticate")));
    if (!challenge) return { retry: false, scopes };
    if (challenge.scheme === "basic") {
      const was = this.#scheme;
      this.#scheme = "basic";
      const found = await this.credentials();
      return { retry: found !== undefined && (was !== "basic" || sent === undefined), scopes };
    }
    this.#learnBearer(challenge);
    const tokenRefused = sent?.startsWith("Bearer ") === true &&
      challenge.params.error !== "insufficient_scope";
    if (sent?.startsWith("Bearer ")) {
      // The registry refused a token (expired early, or revoked): the others cached,
      // received about the same time, are just as suspect, and a new attempt must not
      // pick one of them. Every scope gets a fresh token.
      this.#tokens = [];
    }
    const extra = challenge.params.scope ? challenge.params.scope.split(" ").filter(Boolean) : [];
    return { retry: true, scopes: mergeScopes([...scopes, ...extra]), tokenRefused };
  }

  #learnBearer(challenge: Challenge): void {
    const realm = challenge.params.realm;
    let url: URL;
    try {
      url = new URL(realm ?? "");
    } catch {
      throw new RegistryError(
        `${this.#o.host} sent a Bearer challenge with an invalid realm ${
          JSON.stringify(realm ?? null)
        }`,
      );
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      throw new RegistryError(`${this.#o.host} sent a token realm with scheme ${url.protocol}`);
    }
    if (url.username || url.password) {
      throw new RegistryError(`${this.#o.host} sent a token realm with credentials in it`);
    }
    if (this.#realm?.href !== url.href || this.#service !== challenge.params.service) {
      this.#tokens = [];
    }
    this.#scheme = "bearer";
    this.#realm = url;
    this.#service = challenge.params.service;
  }

  async #token(
    scopes: string[],
    signal: AbortSignal | undefined,
    operation: string,
  ): Promise<CachedToken> {
    const wanted = parseScopes(scopes);
    const now = Date.now();
    this.#tokens = this.#tokens.filter((t) => t.expiresAt > now);
    const hit = this.#tokens.find((t) => covers(t.scopes, wanted));
    if (hit) return hit;
    const key = mergeScopes(scopes).join(" ");
    let pending = this.#inflight.get(key);
    if (!pending) {
      pending = this.#fetchToken(mergeScopes(scopes), signal, operation).finally(() =>
        this.#inflight.delete(key)
      );
      this.#inflight.set(key, pending);
    }
    return await pending;
  }

  async #fetchToken(
    scopes: string[],
    signal: AbortSignal | undefined,
    during: string,
  ): Promise<CachedToken> {
    const realm = this.#realm!;
    const found = await this.credentials();
    const creds = found?.credentials;
    const operation = `${during}: get a token from ${realm.host}`;
    if (
      creds && realm.protocol === "http:" && !isLoopbackHost(realm.hostname) && !this.#o.insecure
    ) {
      throw new ImagesError(
        `${operation}: refusing to send credentials over plain http to the token service ` +
          `${realm.host}; mark the registry insecure to allow it`,
        "INSECURE_CREDENTIALS",
      );
    }
    const refresh = creds && "identityToken" in creds ? creds.identityToken : undefined;
    let res: HttpResponse | undefined;
    if (refresh !== undefined || (creds && "password" in creds)) {
      res = await this.#oauth(realm, scopes, creds, refresh, operation, signal);
      if (res && [400, 401, 403, 404, 405].includes(res.status) && creds && "password" in creds) {
        this.#o.transport.log(`${operation}: OAuth2 POST answered ${res.status}; trying GET`);
        await res.discard();
        res = undefined;
      }
    }
    res ??= await this.#basicGet(realm, scopes, creds, operation, signal);
    if (res.status === 401 || res.status === 403) {
      const errors = await readOciErrors(res.toResponse());
      throw new AuthenticationError(
        `${operation}: the token service refused ${
          found ? `the credentials from ${found.source}` : "anonymous access"
        } (${res.status})`,
        { status: res.status, errors },
      );
    }
    if (!res.ok) {
      const errors = await readOciErrors(res.toResponse());
      throw new RegistryError(`${operation}: the token service answered ${res.status}`, {
        status: res.status,
        errors,
      });
    }
    const text = await res.text(1 << 20).catch((e) => {
      if (e instanceof ImagesError && e.code === "MANIFEST_TOO_LARGE") {
        throw new RegistryError(`${operation}: the token service's answer is over 1 MiB`);
      }
      throw e;
    });
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(text);
    } catch {
      throw new RegistryError(`${operation}: the token service's answer is not JSON`);
    }
    if (typeof doc !== "object" || doc === null) {
      throw new RegistryError(`${operation}: the token service's answer is not a JSON object`);
    }
    const token = typeof doc.token === "string" && doc.token !== ""
      ? doc.token
      : typeof doc.access_token === "string"
      ? doc.access_token
      : "";
    if (token === "") {
      throw new RegistryError(`${operation}: the token service's answer has no token`);
    }
    this.#o.secrets.add(token);
    if (typeof doc.refresh_token === "string") this.#o.secrets.add(doc.refresh_token);
    const lifetime =
      (typeof doc.expires_in === "number" && doc.expires_in > 0 ? doc.expires_in : 60) * 1000;
    const margin = Math.min(10_000, lifetime / 10);
    const cached: CachedToken = {
      token,
      expiresAt: Date.now() + lifetime - margin,
      scopes: parseScopes(scopes),
    };
    this.#tokens.push(cached);
    if (this.#tokens.length > 64) this.#tokens.shift();
    return cached;
  }

  async #oauth(
    realm: URL,
    scopes: string[],
    creds: Credentials | undefined,
    refresh: string | undefined,
    operation: string,
    signal?: AbortSignal,
  ): Promise<HttpResponse> {
    const form = new URLSearchParams();
    if (refresh !== undefined) {
      form.set("grant_type", "refresh_token");
      form.set("refresh_token", refresh);
    } else if (creds && "password" in creds) {
      form.set("grant_type", "password");
      form.set("username", creds.username);
      form.set("password", creds.password);
    }
    if (this.#service) form.set("service", this.#service);
    if (scopes.length) form.set("scope", scopes.join(" "));
    form.set("client_id", this.#o.clientId ?? "apolo-images");
    form.set("access_type", "offline");
    const body = new TextEncoder().encode(form.toString());
    return await this.#send(
      {
        method: "POST",
        url: realm,
        headers: { "content-type": "application/x-www-form-urlencoded; charset=utf-8" },
        body,
        secretBody: true,
      },
      operation,
      signal,
    );
  }

  async #basicGet(
    realm: URL,
    scopes: string[],
    creds: Credentials | undefined,
    operation: string,
    signal?: AbortSignal,
  ): Promise<HttpResponse> {
    const url = new URL(realm.href);
    if (this.#service) url.searchParams.set("service", this.#service);
    for (const s of scopes) url.searchParams.append("scope", s);
    const headers: Record<string, string> = {};
    if (creds && "password" in creds) {
      headers.authorization = basicValue(creds.username, creds.password);
    }
    return await this.#send({ method: "GET", url, headers }, operation, signal);
  }

  async #send(
    req: {
      method: string;
      url: URL;
      headers: Record<string, string>;
      body?: Uint8Array;
      secretBody?: boolean;
    },
    operation: string,
    signal?: AbortSignal,
  ): Promise<HttpResponse> {
    const policy = this.#o.retry;
    for (let attempt = 0;; attempt++) {
      let res: HttpResponse;
      try {
        res = await this.#o.transport.send({ ...req, operation, signal });
      } catch (e) {
        if (e instanceof RegistryConnectionError && attempt < policy.maxRetries) {
          await sleep(backoffDelay(policy, attempt + 1) ?? 0, signal, operation);
          continue;
        }
        throw e;
      }
      if (RETRYABLE_STATUSES.has(res.status) && attempt < policy.maxRetries) {
        const delay = backoffDelay(policy, attempt + 1, res.headers.get("retry-after"));
        if (delay !== undefined) {
          await res.discard();
          await sleep(delay, signal, operation);
          continue;
        }
      }
      if (signal?.aborted) throw new AbortedError(operation);
      return res;
    }
  }
}

/**
 * `Basic base64(user:password)` with the user name and password encoded as UTF-8.
 *
 * @example
 * ```ts
 * import { basicValue } from "./auth.ts";
 * basicValue("user", "pass"); // "Basic dXNlcjpwYXNz"
 * ```
 */
export function basicValue(username: string, password: string): string {
  const bytes = new TextEncoder().encode(`${username}:${password}`);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return `Basic ${btoa(binary)}`;
}

/**
 * Parses scopes (`type:name:action,action`) into resource → actions.
 *
 * @example
 * ```ts
 * import { parseScopes } from "./auth.ts";
 * parseScopes(["repository:app:pull,push"]).get("repository:app"); // Set { "pull", "push" }
 * ```
 */
export function parseScopes(scopes: string[]): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const scope of scopes) {
    const last = scope.lastIndexOf(":");
    if (last <= 0) continue;
    const resource = scope.slice(0, last);
    const actions = out.get(resource) ?? new Set<string>();
    for (const a of scope.slice(last + 1).split(",")) if (a) actions.add(a);
    out.set(resource, actions);
  }
  return out;
}

/**
 * Merges scopes of the same resource: `["repository:a:pull", "repository:a:push"]` →
 * `["repository:a:pull,push"]`, sorted.
 *
 * @example
 * ```ts
 * import { mergeScopes } from "./auth.ts";
 * mergeScopes(["repository:a:push", "repository:a:pull"]); // ["repository:a:pull,push"]
 * ```
 */
export function mergeScopes(scopes: string[]): string[] {
  return [...parseScopes(scopes)]
    .map(([resource, actions]) => `${resource}:${[...actions].sort().join(",")}`)
    .sort();
}

function covers(have: Map<string, Set<string>>, want: Map<string, Set<string>>): boolean {
  for (const [resource, actions] of want) {
    const got = have.get(resource);
    if (!got) return false;
    if (got.has("*")) continue;
    for (const a of actions) if (!got.has(a)) return false;
  }
  return true;
}
