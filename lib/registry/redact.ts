/**
 * Keeps credentials out of messages: a set of secret strings that every error
 * message and log line is scrubbed of before it leaves the registry client.
 *
 * @module
 */

const MIN_SECRET = 3;

/**
 * Secret strings (passwords, tokens, `Authorization` values) to scrub from text.
 *
 * @example
 * ```ts
 * import { SecretSet } from "./redact.ts";
 * const secrets = new SecretSet();
 * secrets.add("hunter2");
 * secrets.redact("login with hunter2 failed"); // "login with *** failed"
 * ```
 */
export class SecretSet {
  #secrets = new Set<string>();

  /** Adds a secret; strings shorter than 3 characters are ignored. */
  add(secret: string | undefined): void {
    if (secret && secret.length >= MIN_SECRET) this.#secrets.add(secret);
  }

  /** `text` with every known secret replaced by `***`. */
  redact(text: string): string {
    let out = text;
    for (const s of this.#secrets) {
      if (out.includes(s)) out = out.split(s).join("***");
    }
    // Authorization values of any origin, even ones not registered.
    return out.replace(/\b(Basic|Bearer)\s+[A-Za-z0-9._~+/=-]{8,}/g, "$1 ***");
  }

  /** Scrubs an error's message (and its causes') in place and returns it. */
  redactError<E>(error: E): E {
    let e: unknown = error;
    for (let depth = 0; e instanceof Error && depth < 5; depth++) {
      try {
        const clean = this.redact(e.message);
        if (clean !== e.message) e.message = clean;
        if (typeof e.stack === "string") e.stack = this.redact(e.stack);
      } catch {
        // a frozen error: leave it
      }
      e = e.cause;
    }
    return error;
  }
}
