/**
 * Fuzzing what a registry's headers and error bodies are parsed with: `WWW-Authenticate`
 * challenges, `Link` (next page), `Retry-After`, OCI error bodies and `Location`.
 * These parsers must never throw on hostile text (or throw only an ImagesError), stay
 * fast on long values, and read back what a well-formed header says.
 */

import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ImagesError } from "../../lib/errors.ts";
import { parseChallenges, pickChallenge } from "../../lib/registry/challenge.ts";
import { parseLinkNext } from "../../lib/registry/listings.ts";
import { parseRetryAfter, readOciErrors } from "../../lib/registry/errors.ts";
import { resolveLocation } from "../../lib/registry/endpoint.ts";
import { casesRun, check, testTimeout, typed } from "../../testing/fuzz.ts";
import { assertQuadraticCaught, linearWork } from "../../testing/work.ts";

/** What the header parsers read of a value at most: the rest is never looked at. */
const HEADER_READ = 16 * 1024;

const TOKEN_CHARS = "!#$%&'*+.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-";

const token = fc.string({
  unit: fc.constantFrom(...TOKEN_CHARS.split("")),
  minLength: 1,
  maxLength: 12,
});

/** Header-ish text: the characters these grammars care about, and some that they do not. */
const headerText = fc.oneof(
  fc.string({ maxLength: 400 }),
  fc.string({ maxLength: 400, unit: "binary" }),
  fc.array(
    fc.constantFrom(
      "Bearer",
      "Basic",
      " ",
      "\t",
      ",",
      ";",
      "=",
      "==",
      '"',
      "\\",
      "realm",
      "rel",
      "next",
      "<",
      ">",
      "/v2/_catalog?n=1",
      "a",
      "token68==",
    ),
    { maxLength: 300 },
  ).map((parts) => parts.join("")),
);

describe("fuzz: registry header and body parsers", () => {
  after(() => console.log(casesRun("fuzz_registry_parsers_test.ts").line));

  it("WWW-Authenticate: never throws, bounded, fast", { timeout: testTimeout(5) }, async () => {
    await check(
      "challenges random",
      fc.property(headerText, (text) => {
        const challenges = linearWork("parseChallenges", text.length, () => parseChallenges(text));
        assert.ok(challenges.length <= 64);
        for (const c of challenges) {
          assert.match(c.scheme, /^[!#$%&'*+.^_`|~0-9a-z-]+$/);
          assert.ok(Object.keys(c.params).length <= 65);
        }
        pickChallenge(challenges);
      }),
    );
    // Past the first 16 KiB nothing is read: a megabyte costs what 16 KiB does.
    for (const length of [16 * 1024, 1024 * 1024]) {
      const long = 'Bearer realm="' + "\\a".repeat(length) + '", ' + "x=y, ".repeat(length);
      linearWork(
        `parseChallenges of ${long.length} characters`,
        Math.min(long.length, HEADER_READ),
        () => parseChallenges(long),
      );
    }
  });

  it(
    "WWW-Authenticate: well-formed challenges read back",
    { timeout: testTimeout(5) },
    async () => {
      // Quoted values may hold anything printable, quotes and backslashes escaped.
      const quotedValue = fc.string({ maxLength: 30 }).map((s) => s.replace(/[\r\n]/g, ""));
      const param = fc.tuple(
        token.filter((n) => !["constructor", "__proto__", "token68"].includes(n.toLowerCase())),
        fc.oneof(
          quotedValue.map((v) => ({ v, quoted: true })),
          token.map((v) => ({ v, quoted: false })),
        ),
      );
      const challenge = fc.tuple(
        token,
        fc.uniqueArray(param, { maxLength: 5, selector: ([n]) => n.toLowerCase() }),
      );
      await check(
        "challenges round trip",
        fc.property(fc.array(challenge, { minLength: 1, maxLength: 4 }), (list) => {
          const text = list.map(([scheme, params]) => {
            const ps = params.map(([n, { v, quoted }]) =>
              quoted ? `${n}="${v.replace(/[\\"]/g, (c) => `\\${c}`)}"` : `${n}=${v}`
            );
            return ps.length === 0 ? scheme : `${scheme} ${ps.join(", ")}`;
          }).join(", ");
          const parsed = parseChallenges(text);
          assert.deepEqual(
            parsed.map((c) => ({ ...c, params: { ...c.params } })),
            list.map(([scheme, params]) => ({
              scheme: scheme.toLowerCase(),
              params: Object.fromEntries(params.map(([n, { v }]) => [n.toLowerCase(), v])),
            })),
            text,
          );
        }),
      );
    },
  );

  it(
    "Link: never throws, fast, gives a target without angle brackets",
    { timeout: testTimeout(5) },
    async () => {
      await check(
        "link random",
        fc.property(headerText, (text) => {
          const next = linearWork("parseLinkNext", text.length, () => parseLinkNext(text));
          if (next !== undefined) assert.ok(!next.includes(">"));
        }),
      );
      for (const length of [16 * 1024, 1024 * 1024]) {
        const long = "<a>" + "; ".repeat(length) + "rel" + " ".repeat(length);
        const read = Math.min(long.length, HEADER_READ);
        linearWork(`parseLinkNext of ${long.length} characters`, read, () => parseLinkNext(long));
        const many = "<a>;rel=x, ".repeat(length);
        linearWork(
          `parseLinkNext of ${length} links`,
          Math.min(many.length, HEADER_READ),
          () => parseLinkNext(many),
        );
      }
    },
  );

  it(
    "Link: the first link whose rel has next is the one read",
    { timeout: testTimeout(5) },
    async () => {
      const url = fc.string({
        unit: fc.constantFrom(..."abc/?=&_%.:0123456789".split("")),
        maxLength: 30,
      });
      const rel = fc.array(fc.constantFrom("next", "NEXT", "prev", "last", "first", "nextish"), {
        minLength: 1,
        maxLength: 3,
      });
      const link = fc.record({
        url,
        rel,
        quoted: fc.boolean(),
        // Other parameters before rel; their values never hold `;`, `"` or `<`.
        before: fc.array(
          fc.tuple(
            token,
            fc.string({ unit: fc.constantFrom(..."abc -_/".split("")), maxLength: 8 }),
          ),
          { maxLength: 2 },
        ),
      });
      await check(
        "link round trip",
        fc.property(fc.array(link, { maxLength: 5 }), (links) => {
          const text = links.map((l) => {
            const params = l.before.map(([k, v]) => `; ${k}="${v}"`).join("");
            const relText = l.quoted || l.rel.length > 1 ? `"${l.rel.join(" ")}"` : l.rel[0];
            return `<${l.url}>${params}; rel=${relText}`;
          }).join(", ");
          const expected = links.find((l) =>
            l.rel.some((r) => r.toLowerCase() === "next") &&
            !l.before.some(([k]) => k.toLowerCase() === "rel")
          );
          const firstRelIsOther = links.find((l) =>
            l.before.some(([k]) => k.toLowerCase() === "rel")
          );
          fc.pre(firstRelIsOther === undefined); // a second rel parameter: which one counts is not specified
          assert.equal(parseLinkNext(text), expected?.url, text);
        }),
      );
    },
  );

  it(
    "Retry-After: undefined or a non-negative number of milliseconds",
    { timeout: testTimeout(5) },
    async () => {
      await check(
        "retry-after",
        fc.property(
          fc.oneof(headerText, fc.nat().map(String), fc.date().map((d) => d.toUTCString())),
          (text) => {
            const ms = parseRetryAfter(text, 0);
            assert.ok(ms === undefined || ms >= 0, String(ms));
          },
        ),
      );
    },
  );

  it("OCI error bodies: at most 10 entries, never throws, whatever the body", {
    timeout: testTimeout(5),
  }, async () => {
    const body = fc.oneof(
      fc.uint8Array({ maxLength: 3000 }),
      fc.jsonValue({ maxDepth: 4 }).map((v) => new TextEncoder().encode(JSON.stringify(v) ?? "")),
      fc.array(
        fc.record({ code: fc.jsonValue({ maxDepth: 1 }), message: fc.jsonValue({ maxDepth: 1 }) }),
        {
          maxLength: 30,
        },
      ).map((errors) => new TextEncoder().encode(JSON.stringify({ errors }))),
      fc.integer({ min: 0, max: 100_000 }).map((d) => new TextEncoder().encode("[".repeat(d))),
    );
    await check(
      "oci error bodies",
      fc.asyncProperty(body, async (bytes) => {
        const errors = await readOciErrors(new Response(bytes as BlobPart));
        assert.ok(errors.length <= 10);
        for (const e of errors) {
          assert.equal(typeof e.code, "string");
          assert.ok(e.code.length <= 64);
          assert.ok(e.message === undefined || e.message.length <= 200);
        }
      }),
    );
  });

  it("Location: a URL or an ImagesError", { timeout: testTimeout(5) }, async () => {
    const base = new URL("https://registry.example.com/v2/app/blobs/uploads/");
    await check(
      "location",
      fc.property(fc.oneof(headerText, fc.webUrl()), (text) => {
        const result = typed(() => resolveLocation(text, base));
        assert.ok(result instanceof URL || result instanceof ImagesError);
      }),
    );
  });
});

/**
 * `parseLinkNext` written badly on purpose: the k-th link is found by counting `<` from
 * the start again, so every link re-reads all the text before it (quadratic in the
 * number of links). It gives the same answers as the real one.
 */
function quadraticLinkNext(header: string): string | undefined {
  const text = header.slice(0, HEADER_READ);
  for (let k = 0;; k++) {
    let at = -1;
    for (let seen = 0; seen <= k; seen++) {
      at = text.indexOf("<", at + 1);
      if (at < 0) return undefined;
    }
    const end = text.indexOf(">", at);
    if (end < 0) return undefined;
    const following = text.indexOf("<", end);
    const params = text.slice(end + 1, following < 0 ? text.length : following);
    if (/;\s*rel\s*=\s*"?next"?\s*(?:[;,]|$)/i.test(params)) return text.slice(at + 1, end);
  }
}

describe("the work budget of the parser tests", () => {
  it("a deliberately quadratic parser is caught; the real one stays far below", () => {
    assert.equal(quadraticLinkNext('<a>; rel="prev", </b?n=1>; rel="next"'), "/b?n=1");
    assert.equal(parseLinkNext('<a>; rel="prev", </b?n=1>; rel="next"'), "/b?n=1");
    const links = (n: number) => "<a>,".repeat(n);
    const lines = assertQuadraticCaught({
      what: "parseLinkNext",
      inputs: [links(1024), links(2048)],
      size: (header) => header.length,
      parser: parseLinkNext,
      quadratic: quadraticLinkNext,
    });
    console.log(lines.join("\n"));
  });
});
