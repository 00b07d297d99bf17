/**
 * Counting the work a parser does on one input, instead of timing it: a parser that
 * turns quadratic on hostile input is caught by the count on any machine, however
 * busy, where a time limit fails by chance when the machine is loaded (issue #19).
 *
 * While a measured call runs, the runtime's string, regular-expression, array,
 * byte-array, `TextDecoder`, `JSON.parse` and `Object.keys/values/entries` primitives
 * are wrapped so that each call adds the characters, elements or bytes it is handed
 * (what it may scan) to a counter; they are restored when the call returns. No change
 * to the code under test is needed, and every parser is measured the same way. The
 * count is the same on every run of the same input, on Deno and on Bun alike.
 *
 * What it cannot see: indexing a string (`s[i]`): a parser walking characters by
 * index is counted only through the primitives it calls on the way; for byte arrays
 * {@linkcode countedBytes} makes each element read count. And the steps a regular
 * expression takes inside one call: a call counts its subject once, so catastrophic
 * backtracking shows as a hang, which the test's timeout reports.
 *
 * The budget is linear: {@linkcode WORK_PER_UNIT} units per character or byte of
 * input plus {@linkcode WORK_BASE}. The parsers measured here do 2 to 17 units per
 * unit of input (at most 0.28 of the budget over 1500 fuzz cases per property); on
 * inputs of a few thousand characters a quadratic one does many times the budget. {@linkcode assertQuadraticCaught} shows both sides on deliberately
 * quadratic variants of the `Link` and pax parsers (tests/fuzz/registry_parsers_test.ts,
 * tests/fuzz/tar_test.ts).
 *
 * @module
 */

/** Work units allowed per unit of input (character or byte). */
export const WORK_PER_UNIT = 64;

/** Work units allowed on top, whatever the input (fixed patterns, messages). */
export const WORK_BASE = 20_000;

/** The most work a linear parser may do on `size` characters or bytes of input. */
export function workBudget(size: number, perUnit = WORK_PER_UNIT): number {
  return WORK_BASE + perUnit * size;
}

// deno-lint-ignore no-explicit-any
type Fn = (this: any, ...args: any[]) => unknown;
/**
 * What one call of a primitive costs, from its receiver, arguments and result, and a
 * regular expression's `lastIndex` before the call.
 */
type Cost = (self: unknown, args: unknown[], result: unknown, lastIndex: number) => number;

const lengthOf = (v: unknown): number => {
  if (typeof v === "string") return v.length;
  if (ArrayBuffer.isView(v)) return v.byteLength;
  if (v instanceof ArrayBuffer) return v.byteLength;
  if (Array.isArray(v)) return v.length;
  return 0;
};
/** The receiver is scanned. */
const receiver: Cost = (self) => lengthOf(self);
/**
 * A search from a position (`indexOf`, `includes`, `lastIndexOf`): the characters or
 * elements from there to the match, or to the end (to the start, searching backwards)
 * when there is none. A tokenizer that searches on from where it stopped is linear.
 */
const search = (backwards: boolean): Cost => (self, args, out) => {
  const n = lengthOf(self);
  const given = args[1] === undefined ? undefined : Math.trunc(Number(args[1]) || 0);
  if (backwards) {
    const from = given === undefined ? n : Math.min(n, Math.max(0, given));
    return 1 + (typeof out === "number" && out >= 0 ? from - out : from);
  }
  const from = given === undefined ? 0 : given < 0 ? Math.max(0, n + given) : Math.min(n, given);
  const needle = lengthOf(args[0]);
  return 1 + (typeof out === "number" && out >= 0 ? out + needle - from : n - from);
};
/** A comparison at one place (`startsWith`, `endsWith`): the characters compared. */
const compared: Cost = (_self, args) => 1 + lengthOf(args[0]);
/** The result is built (a copy). */
const result: Cost = (_self, _args, out) => lengthOf(out);
/** One element is read. */
const one: Cost = () => 1;
/**
 * A regular expression's subject is scanned: all of it, or for a global or sticky
 * expression from where the last match ended to where this one ended (the runtime's
 * own `split`, `replace` and `match` call `exec` like this, once per match or, for
 * `split`, once per position with a sticky copy, which would otherwise count the
 * rest of the text at every position).
 */
const subject: Cost = (self, args, out, lastIndex) => {
  const text = args[0];
  if (typeof text !== "string") return lengthOf(text);
  const re = self as RegExp;
  if (!(re instanceof RegExp) || !(re.global || re.sticky)) return Math.max(1, text.length);
  const from = Math.min(lastIndex, text.length);
  if (Array.isArray(out)) {
    const match = out as RegExpExecArray;
    return 1 + match.index + match[0].length - from;
  }
  if (out === true) return 1 + Math.max(0, re.lastIndex - from);
  return re.sticky ? 1 : 1 + text.length - from;
};

const typedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype) as object;

/** The primitives that are wrapped, and what each call costs. */
const PRIMITIVES: [object, string | symbol, Cost][] = [
  [String.prototype, "indexOf", search(false)],
  [String.prototype, "includes", search(false)],
  [String.prototype, "lastIndexOf", search(true)],
  [String.prototype, "startsWith", compared],
  [String.prototype, "endsWith", compared],
  ...[
    "split",
    "replace",
    "replaceAll",
    "match",
    "matchAll",
    "search",
    "toLowerCase",
    "toUpperCase",
    "toLocaleLowerCase",
    "toLocaleUpperCase",
    "trim",
    "trimStart",
    "trimEnd",
    "normalize",
    "localeCompare",
    "isWellFormed",
    "toWellFormed",
  ].map((name): [object, string, Cost] => [String.prototype, name, receiver]),
  ...["slice", "substring", "substr", "padStart", "padEnd", "repeat", "concat"].map(
    (name): [object, string, Cost] => [String.prototype, name, result],
  ),
  ...["at", "charAt", "charCodeAt", "codePointAt"].map(
    (name): [object, string, Cost] => [String.prototype, name, one],
  ),
  ...[
    "exec",
    "test",
    Symbol.replace,
    Symbol.split,
    Symbol.match,
    Symbol.matchAll,
    Symbol.search,
  ].map((name): [object, string | symbol, Cost] => [RegExp.prototype, name, subject]),
  [Array.prototype, "indexOf", search(false)],
  [Array.prototype, "includes", search(false)],
  [Array.prototype, "lastIndexOf", search(true)],
  ...[
    "join",
    "every",
    "some",
    "find",
    "findIndex",
    "findLast",
    "findLastIndex",
    "filter",
    "map",
    "forEach",
    "reduce",
    "reduceRight",
    "flat",
    "flatMap",
    "concat",
    "reverse",
    "sort",
  ].map((name): [object, string, Cost] => [Array.prototype, name, receiver]),
  [Array.prototype, "slice", result],
  [typedArrayPrototype, "indexOf", search(false)],
  [typedArrayPrototype, "includes", search(false)],
  [typedArrayPrototype, "lastIndexOf", search(true)],
  ...["every", "some", "find", "findIndex", "join"].map(
    (name): [object, string, Cost] => [typedArrayPrototype, name, receiver],
  ),
  [typedArrayPrototype, "slice", result],
  [TextDecoder.prototype, "decode", (_self, args) => lengthOf(args[0])],
  [JSON, "parse", (_self, args) => lengthOf(args[0])],
  [Object, "keys", result],
  [Object, "values", result],
  [Object, "entries", result],
];

let work = 0;
let measuring = false;

/** Wraps every primitive in {@linkcode PRIMITIVES}; returns how to put them back. */
function instrument(): () => void {
  const originals: [object, string | symbol, PropertyDescriptor][] = [];
  for (const [holder, name, cost] of PRIMITIVES) {
    const descriptor = Object.getOwnPropertyDescriptor(holder, name);
    if (descriptor === undefined || typeof descriptor.value !== "function") continue;
    const original = descriptor.value as Fn;
    const wrapped = function (this: unknown, ...args: unknown[]) {
      const lastIndex = this instanceof RegExp ? this.lastIndex : 0;
      const out = Reflect.apply(original, this, args);
      work += cost(this, args, out, lastIndex);
      return out;
    };
    Object.defineProperty(wrapped, "name", { value: original.name });
    Object.defineProperty(wrapped, "length", { value: original.length });
    originals.push([holder, name, descriptor]);
    Object.defineProperty(holder, name, { ...descriptor, value: wrapped });
  }
  return () => {
    // Backwards by index: Array.prototype.reverse is one of the wrapped primitives.
    for (let i = originals.length - 1; i >= 0; i--) {
      const [holder, name, descriptor] = originals[i];
      Object.defineProperty(holder, name, descriptor);
    }
  };
}

/** A thrown value, kept to be rethrown after the count was taken. */
interface Thrown {
  error: unknown;
}

/** What a measured call came to: its work, and its value or what it threw. */
export interface Measured<T> {
  /** Work units counted while the call ran. */
  work: number;
  /** The call's value, unless it threw. */
  value?: T;
  /** What the call threw, if it did. */
  thrown?: Thrown;
}

/** Starts counting; the function returned stops, restores the primitives and gives the count. */
function startCounting(): () => number {
  if (measuring) throw new Error("measureWork: already measuring (calls do not nest)");
  measuring = true;
  work = 0;
  const restore = instrument();
  return () => {
    restore();
    measuring = false;
    return work;
  };
}

/**
 * Runs a synchronous `fn` and counts the work its primitives do (see the module doc).
 * Its value or what it threw is returned with the count; the primitives are restored
 * before this returns.
 */
export function measureWork<T>(fn: () => T): Measured<T> {
  const stop = startCounting();
  let value: T | undefined;
  let thrown: Thrown | undefined;
  try {
    value = fn();
  } catch (error) {
    thrown = { error };
  }
  const counted = stop();
  if (value instanceof Promise) throw new Error("measureWork: use measureWorkAsync for promises");
  return thrown === undefined ? { work: counted, value } : { work: counted, thrown };
}

/**
 * Like {@linkcode measureWork} for async work (file reads and all). Everything that
 * runs in this realm until `fn` settles is counted, so nothing else may run meanwhile:
 * the tests of a file run one after the other, and each file has its own realm on
 * Deno; on Bun the files of a run also run one after the other.
 */
export async function measureWorkAsync<T>(fn: () => Promise<T>): Promise<Measured<T>> {
  const stop = startCounting();
  let value: T | undefined;
  let thrown: Thrown | undefined;
  try {
    value = await fn();
  } catch (error) {
    thrown = { error };
  }
  const counted = stop();
  return thrown === undefined ? { work: counted, value } : { work: counted, thrown };
}

/** Fails when `measured` is over budget; else gives its value, or rethrows what it threw. */
function withinBudget<T>(what: string, size: number, perUnit: number, measured: Measured<T>): T {
  const budget = workBudget(size, perUnit);
  if (measured.work > budget) {
    throw new Error(
      `${what} did ${measured.work} units of work on ${size} characters/bytes of input ` +
        `(budget ${budget}: ${perUnit} per unit + ${WORK_BASE}); quadratic on this input?`,
    );
  }
  if (measured.thrown !== undefined) throw measured.thrown.error;
  return measured.value as T;
}

/**
 * Runs a synchronous parser on input of `size` characters or bytes, and fails when it
 * did more work than {@linkcode workBudget} allows: a parser that is quadratic (or
 * worse) on hostile input shows up here, on a busy machine as on an idle one. Returns
 * the parser's value, or rethrows what it threw.
 */
export function linearWork<T>(
  what: string,
  size: number,
  fn: () => T,
  perUnit = WORK_PER_UNIT,
): T {
  return withinBudget(what, size, perUnit, measureWork(fn));
}

/** Like {@linkcode linearWork} for async work (see {@linkcode measureWorkAsync}). */
export async function linearWorkAsync<T>(
  what: string,
  size: number,
  fn: () => Promise<T>,
  perUnit = WORK_PER_UNIT,
): Promise<T> {
  return withinBudget(what, size, perUnit, await measureWorkAsync(fn));
}

/**
 * A view of `bytes` whose element reads count as work while {@linkcode measureWork}
 * runs, so a parser that walks bytes by index is measured too. Methods are called on
 * the real array (a `subarray` is a real `Uint8Array`, not a counted view).
 */
export function countedBytes(bytes: Uint8Array): Uint8Array {
  return new Proxy(bytes, {
    get(target, key) {
      // An index ("0", "1", ...); read by comparison, not with a (wrapped) string method.
      if (typeof key === "string" && key[0] >= "0" && key[0] <= "9") {
        if (measuring) work++;
        return target[key as unknown as number];
      }
      const value = Reflect.get(target, key, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** A parser under test next to a deliberately quadratic variant of it, on the same inputs. */
export interface QuadraticCheck<I, T> {
  /** Name of the parser, for messages. */
  what: string;
  /** Two inputs, the second twice the size of the first. */
  inputs: [I, I];
  /** An input's size in characters or bytes. */
  size: (input: I) => number;
  /** The parser (linear). */
  parser: (input: I) => T;
  /** The variant (quadratic). */
  quadratic: (input: I) => T;
  /** Work units allowed per unit of input (default {@linkcode WORK_PER_UNIT}). */
  perUnit?: number;
}

/**
 * Shows the budget catches a quadratic parser: both give the same answers; doubling the
 * input doubles the parser's work (at most 2.5 times) and about quadruples the
 * variant's (at least 3 times); on the larger input the parser stays under a fifth of
 * the budget and the variant goes over 5 times it, so {@linkcode linearWork} refuses
 * it. Returns one line of figures per input, for the log.
 */
export function assertQuadraticCaught<I, T>(check: QuadraticCheck<I, T>): string[] {
  const lines: string[] = [];
  const perUnit = check.perUnit ?? WORK_PER_UNIT;
  const works = check.inputs.map((input) => {
    const size = check.size(input);
    const real = measureWork(() => check.parser(input));
    const bad = measureWork(() => check.quadratic(input));
    if (JSON.stringify(real.value) !== JSON.stringify(bad.value)) {
      throw new Error(`${check.what}: the quadratic variant answers differently`);
    }
    lines.push(
      `work budget: ${check.what} on ${size} characters/bytes: budget ${
        workBudget(size, perUnit)
      }, ` +
        `parser ${real.work}, quadratic variant ${bad.work}`,
    );
    return { size, real: real.work, bad: bad.work };
  });
  const [small, large] = works;
  const fail = (why: string) => {
    throw new Error(`${check.what}: ${why}\n${lines.join("\n")}`);
  };
  if (large.size !== 2 * small.size) fail("the second input must be twice the first");
  if (large.real > 2.5 * small.real) fail("the parser's work more than doubles");
  if (large.bad < 3 * small.bad) fail("the variant's work does not grow quadratically");
  const budget = workBudget(large.size, perUnit);
  if (large.real * 5 > budget) fail("the parser is not far under the budget");
  if (large.bad < 5 * budget) fail("the variant is not far over the budget");
  let refused = false;
  try {
    linearWork(check.what, large.size, () => check.quadratic(check.inputs[1]), perUnit);
  } catch (e) {
    refused = e instanceof Error && e.message.includes(" units of work on ");
  }
  if (!refused) fail("linearWork let the variant through");
  return lines;
}
