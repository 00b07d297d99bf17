// Credentials never leave: every command of the CLI, failing with a wrong password
// (given in APOLO_TOKEN, or on stdin with --password-stdin), with and without --debug,
// against docker-registry with htpasswd (Basic) and with token auth (Bearer): nothing
// it prints holds the secret, the real password, a Basic credential or a token; --debug
// shows `Authorization: <scheme> <redacted>`; the process's command line holds no secret.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Images, LocalImage } from "../../mod.ts";
import {
  registryAvailable,
  type RunningRegistry,
  startRegistry,
} from "../../testing/docker_registry.ts";
import { type FaultProxy, startFaultProxy } from "../../testing/fault_proxy.ts";
import { runCli, startCli } from "../../testing/cli.ts";
import { makeTempDir, removeTempDir } from "../../testing/fs.ts";
import { docker25SaveEntries, layerTar, syntheticImage, writeTar } from "../../testing/tools.ts";

/** A JSON Web Token (what the token service issues). */
const JWT = /eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}/;

/** Every form a secret could leak in: as is, and inside a Basic credential. */
function leakForms(username: string, secrets: string[]): string[] {
  return secrets.flatMap((s) => [
    s,
    Buffer.from(`${username}:${s}`).toString("base64"),
    encodeURIComponent(s),
  ]);
}

function assertNoLeak(text: string, forms: string[], what: string): void {
  for (const form of forms) assert.ok(!text.includes(form), `${what}: a secret leaked:\n${text}`);
  assert.doesNotMatch(text, JWT, `${what}: a token leaked`);
}

/** The CLI's commands, each with arguments that reach the registry. */
function commands(input: string, output: string): string[][] {
  return [
    ["push", "--input", input, "app:1", "image:app:1"],
    ["pull", "image:app:1", "--output", output],
    ["digest", "image:app:1"],
    ["size", "image:app:1"],
    ["tags", "-l", "image:app"],
    ["ls", "-l"],
    ["rm", "image:app:1"],
  ];
}

for (const auth of ["htpasswd", "token"] as const) {
  describe(
    `credentials never leak (docker-registry, ${auth})`,
    { skip: !registryAvailable },
    () => {
      let registry: RunningRegistry;
      let dir: string;
      let input: string;
      let env: Record<string, string>;
      const wrong = `wrong-${randomBytes(12).toString("hex")}`;
      let forms: string[];

      before(async () => {
        [registry, dir] = await Promise.all([startRegistry({ auth }), makeTempDir("apolo-creds")]);
        input = join(dir, "app.tar");
        const image = syntheticImage([layerTar({ "a.txt": "a" })], { gzip: true });
        await writeTar(input, docker25SaveEntries(image, "app", "1"));
        // the image is there, so the commands fail on credentials only
        const api = new Images({
          registries: { default: registry.url },
          clusterName: "default",
          owner: "alice",
          username: registry.username,
          password: registry.password,
          cacheDir: false,
        });
        await api.push(new LocalImage("app", "1"), api.parser.parseRemote("image:app:1"), {
          input,
        });
        env = {
          APOLO_REGISTRY: registry.url,
          APOLO_OWNER: "alice",
          APOLO_USERNAME: registry.username!,
          XDG_CACHE_HOME: join(dir, "cache"),
          DOCKER_CONFIG: join(dir, "no-docker-config"),
        };
        forms = leakForms(registry.username!, [wrong, registry.password!]);
      });
      after(async () => {
        await registry?.stop();
        if (dir) await removeTempDir(dir);
      });

      it("every command, wrong password in APOLO_TOKEN or on stdin, with and without --debug", {
        timeout: 180_000,
      }, async () => {
        const runs: { args: string[]; env: Record<string, string>; stdin?: string }[] = [];
        for (const args of commands(input, join(dir, "out.tar"))) {
          runs.push({ args, env: { ...env, APOLO_TOKEN: wrong } });
          runs.push({ args: ["--debug", ...args], env: { ...env, APOLO_TOKEN: wrong } });
          runs.push({
            args: ["--debug", "--password-stdin", ...args],
            env,
            stdin: wrong + "\n",
          });
        }
        let redactedLines = 0;
        for (let i = 0; i < runs.length; i += 3) {
          const results = await Promise.all(
            runs.slice(i, i + 3).map((r) => runCli(r.args, r.env, r.stdin)),
          );
          results.forEach((result, j) => {
            const { args } = runs[i + j];
            const what = `apolo-images ${args.join(" ")}`;
            assert.equal(result.code, 1, `${what}:\n${result.stderr}`);
            assertNoLeak(result.stdout + result.stderr, forms, what);
            const last = result.stderr.trim().split("\n").filter((l) =>
              l.startsWith("apolo-images:")
            )
              .at(-1) ?? "";
            assert.match(last, /auth|credential|denied|401|unauthorized/i, `${what}: ${last}`);
            assert.doesNotMatch(last, /unexpected error/, what);
            if (args.includes("--debug")) {
              for (const line of result.stderr.split("\n")) {
                if (/^debug: +authorization:/i.test(line)) {
                  assert.match(line, /^debug: +Authorization: (Basic |Bearer )?<redacted>$/, line);
                  redactedLines++;
                }
              }
            }
          });
        }
        if (auth === "htpasswd") assert.ok(redactedLines > 0, "--debug shows the redacted header");
      });

      it("the right password with --debug: requests show Authorization redacted, no secret", async () => {
        const runs = [
          ["--debug", "push", "--input", input, "app:1", "image:app:2"],
          ["--debug", "digest", "image:app:2"],
          ["--debug", "pull", "image:app:2", "--output", join(dir, "ok.tar")],
        ];
        for (const args of runs) {
          const result = await runCli(args, { ...env, APOLO_TOKEN: registry.password! });
          assert.equal(result.code, 0, result.stderr);
          assertNoLeak(result.stdout + result.stderr, forms, args.join(" "));
          const scheme = auth === "htpasswd" ? "Basic" : "Bearer";
          assert.match(
            result.stderr,
            new RegExp(`^debug: +Authorization: ${scheme} <redacted>$`, "m"),
          );
        }
      });
    },
  );
}

describe("credentials in the process and the help", { skip: !registryAvailable }, () => {
  let registry: RunningRegistry;
  let proxy: FaultProxy;
  let dir: string;

  before(async () => {
    [registry, dir] = await Promise.all([
      startRegistry({ auth: "token" }),
      makeTempDir("apolo-creds-proc"),
    ]);
    proxy = await startFaultProxy({
      target: registry.host,
      rate: 0,
      // every request to the registry stalls: the command sits there to be looked at
      plan: (r) =>
        r.path.startsWith("/v2/alice/")
          ? { kind: "stall", direction: "response", at: 0, stallMs: 60_000 }
          : null,
    });
  });
  after(async () => {
    await proxy?.close();
    await registry?.stop();
    if (dir) await removeTempDir(dir);
  });

  it("a running command holds no secret in its command line; Ctrl-C prints none", {
    timeout: 60_000,
  }, async () => {
    const secret = registry.password!;
    const cli = startCli(["--debug", "--password-stdin", "digest", "image:app:1"], {
      APOLO_REGISTRY: proxy.url,
      APOLO_OWNER: "alice",
      APOLO_USERNAME: registry.username!,
      DOCKER_CONFIG: join(dir, "none"),
    }, secret + "\n");
    try {
      const deadline = Date.now() + 30_000;
      while (proxy.counts.stall === 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 25));
      }
      assert.ok(proxy.counts.stall > 0, cli.stderr());
      const cmdline = await readFile(`/proc/${cli.pid}/cmdline`, "utf8");
      assert.ok(!cmdline.includes(secret), cmdline);
      assert.ok(!(await readFile(`/proc/${cli.pid}/comm`, "utf8")).includes(secret));
      cli.kill("SIGINT");
      const result = await cli.done;
      assert.equal(result.code, 130, result.stderr);
      assertNoLeak(
        result.stdout + result.stderr,
        leakForms(registry.username!, [secret]),
        "digest",
      );
    } finally {
      cli.kill("SIGKILL");
    }
  });

  it("secrets are not taken as arguments, and the help says how to give them", async () => {
    const refused = await runCli(["--password", "hunter2-secret", "ls"], {
      APOLO_REGISTRY: registry.url,
      APOLO_OWNER: "alice",
    });
    assert.equal(refused.code, 2);
    assert.ok(!(refused.stdout + refused.stderr).includes("hunter2-secret"), refused.stderr);
    assert.match(refused.stderr, /--password-stdin or the APOLO_TOKEN/);
    for (const args of [["--token=hunter2-secret", "ls"], ["ls", "--password", "hunter2-secret"]]) {
      const result = await runCli(args, { APOLO_REGISTRY: registry.url, APOLO_OWNER: "alice" });
      assert.equal(result.code, 2, result.stderr);
      assert.ok(!(result.stdout + result.stderr).includes("hunter2-secret"), result.stderr);
    }
    const help = await runCli(["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--password-stdin/);
    assert.match(help.stdout, /APOLO_TOKEN/);
    assert.match(help.stdout, /never pass secrets as arguments/);
  });
});
