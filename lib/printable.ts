/**
 * Text from outside (a registry's messages, platform fields, names) made safe to show
 * on a terminal or in a log: control characters escaped, so no escape sequence moves
 * the cursor, retitles the window or forges a line, and long texts and lists cut with
 * a count of what was left out.
 *
 * @module
 */

/**
 * Characters a terminal acts on instead of showing: C0 controls (newline included: one
 * message is one line), DEL, C1 controls (8-bit CSI/OSC), the line and paragraph
 * separators, and the bidirectional overrides that reorder what is shown.
 */
// deno-lint-ignore no-control-regex -- matching control characters is the point
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** The longest text shown as it is; the rest is replaced by a count. */
export const MAX_PRINTABLE_CHARS = 1000;

/**
 * `text` with every control character shown as an escape (`\x1b`, `\n`, `\u202e`)
 * and cut after `maxChars` characters with a count of the rest.
 *
 * @example
 * ```ts
 * import { printable } from "./printable.ts";
 * printable("bad\x1b]0;owned\x07\nline"); // "bad\\x1b]0;owned\\x07\\nline"
 * ```
 */
export function printable(text: string, maxChars: number = MAX_PRINTABLE_CHARS): string {
  const cut = text.length > maxChars ? text.slice(0, maxChars) : text;
  const shown = cut.replace(UNPRINTABLE, escapeChar);
  return cut === text ? shown : `${shown}… (${text.length - maxChars} more characters)`;
}

/**
 * The first `max` items made printable and joined with `, `, then a count of the rest:
 * `a, b, c and 14,997 more`.
 *
 * @example
 * ```ts
 * import { printableList } from "./printable.ts";
 * printableList(["linux/amd64", "linux/arm64", "linux/s390x"], 2); // "linux/amd64, linux/arm64 and 1 more"
 * ```
 */
export function printableList(items: readonly string[], max = 20): string {
  const shown = items.slice(0, max).map((item) => printable(item, 200)).join(", ");
  const rest = items.length - max;
  return rest > 0 ? `${shown} and ${rest.toLocaleString("en-US")} more` : shown;
}

function escapeChar(c: string): string {
  const code = c.charCodeAt(0);
  if (c === "\n") return "\\n";
  if (c === "\r") return "\\r";
  if (c === "\t") return "\\t";
  return code <= 0xff
    ? `\\x${code.toString(16).padStart(2, "0")}`
    : `\\u${code.toString(16).padStart(4, "0")}`;
}
