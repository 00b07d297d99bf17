/**
 * The `WWW-Authenticate` header: a tolerant parser for the challenges a registry
 * sends with a 401 (RFC 9110 §11.6.1).
 *
 * @module
 */

/**
 * One authentication challenge: a scheme and its parameters.
 *
 * @example
 * ```ts
 * import type { Challenge } from "./challenge.ts";
 * const challenge: Challenge = { scheme: "bearer", params: { realm: "https://auth.example.com/token" } };
 * ```
 */
export interface Challenge {
  /** The scheme in lower case, e.g. `bearer` or `basic`. */
  scheme: string;
  /** The parameters, names in lower case, e.g. `realm`, `service`, `scope`, `error`. */
  params: Record<string, string>;
}

const MAX_HEADER = 16 * 1024;
const MAX_ITEMS = 64;
const TOKEN = /[!#$%&'*+.^_`|~0-9A-Za-z-]/;

/**
 * Parses a `WWW-Authenticate` value into its challenges. Never throws: text that does
 * not parse ends the list. Values over 16 KiB are cut.
 *
 * @example
 * ```ts
 * import { parseChallenges } from "./challenge.ts";
 * const [c] = parseChallenges(
 *   'Bearer realm="https://auth.example.com/token",service="registry",scope="repository:app:pull"',
 * );
 * console.log(c.scheme, c.params.realm, c.params.scope);
 * ```
 */
export function parseChallenges(header: string | null | undefined): Challenge[] {
  if (!header) return [];
  const s = header.slice(0, MAX_HEADER);
  let i = 0;
  const out: Challenge[] = [];

  const skipSpace = () => {
    while (i < s.length && (s[i] === " " || s[i] === "\t")) i++;
  };
  const skipSeparators = () => {
    while (i < s.length && (s[i] === " " || s[i] === "\t" || s[i] === ",")) i++;
  };
  const token = (): string => {
    const start = i;
    while (i < s.length && TOKEN.test(s[i])) i++;
    return s.slice(start, i);
  };
  const quoted = (): string => {
    // s[i] === '"'
    i++;
    let value = "";
    while (i < s.length && s[i] !== '"') {
      if (s[i] === "\\" && i + 1 < s.length) i++;
      value += s[i];
      i++;
    }
    i++; // closing quote (or past the end)
    return value;
  };
  // Whether a name=value parameter starts at i (rather than a new scheme).
  const paramAhead = (): boolean => {
    let j = i;
    while (j < s.length && TOKEN.test(s[j])) j++;
    if (j === i) return false;
    while (j < s.length && (s[j] === " " || s[j] === "\t")) j++;
    return s[j] === "=" && s[j + 1] !== "=";
  };

  while (i < s.length && out.length < MAX_ITEMS) {
    skipSeparators();
    const scheme = token();
    if (!scheme) break;
    // A prototype-free object, so parameters named like Object's members are kept.
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: Object.create(null) };
    out.push(challenge);
    skipSpace();
    if (i < s.length && s[i] !== "," && !paramAhead()) {
      // token68 (e.g. `Negotiate abc==`): kept as the parameter "token68"
      const start = i;
      while (i < s.length && s[i] !== "," && s[i] !== " ") i++;
      challenge.params.token68 = s.slice(start, i);
      continue;
    }
    let count = 0;
    for (;;) {
      skipSeparators();
      if (!paramAhead() || count++ >= MAX_ITEMS) break;
      const name = token().toLowerCase();
      skipSpace();
      i++; // "="
      skipSpace();
      const value = s[i] === '"' ? quoted() : token();
      if (!Object.hasOwn(challenge.params, name)) challenge.params[name] = value;
    }
  }
  return out;
}

/**
 * The Bearer challenge among `challenges`, else the Basic one, else undefined.
 *
 * @example
 * ```ts
 * import { parseChallenges, pickChallenge } from "./challenge.ts";
 * pickChallenge(parseChallenges('Basic realm="r", Bearer realm="https://a/token"'))?.scheme;
 * // "bearer"
 * ```
 */
export function pickChallenge(challenges: Challenge[]): Challenge | undefined {
  return challenges.find((c) => c.scheme === "bearer") ??
    challenges.find((c) => c.scheme === "basic");
}
