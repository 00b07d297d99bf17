/**
 * The commands of the command line, each a thin layer over {@linkcode Images}.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import process from "node:process";
import { ImagesError } from "../errors.ts";
import { printable } from "../printable.ts";
import { Images } from "../images.ts";
import type { LayerCompression } from "../copy/compress.ts";
import { mapConcurrent } from "../copy/pool.ts";
import { GZIP_ENGINE_CHOICES, type GzipEngineChoice } from "../copy/native_gzip.ts";
import { parsePlatform } from "../oci/manifest.ts";
import type { RemoteImage } from "../reference.ts";
import { humanSize, shortImageUri } from "./format.ts";
import { type CommandLine, expectArgs, intOption, UsageError } from "./options.ts";
import { CliProgress, type ProgressMode } from "./progress_view.ts";

/** Runs the parsed command, printing its result on stdout. */
export async function runCommand(
  line: CommandLine,
  signal: AbortSignal,
  suspend?: AbortSignal,
): Promise<void> {
  const images = await openImages(line);
  const out = (text: string) => process.stdout.write(text + "\n");
  const print = (data: unknown, text: string) => out(line.json ? JSON.stringify(data) : text);
  const current = { clusterName: line.cluster, orgName: line.org, owner: line.owner ?? "" };
  const remote = (text: string, tagOption: "default" | "allow" | "deny" = "default") =>
    images.parser.parseRemote(text, { tagOption });
  switch (line.command) {
    case "push": {
      expectArgs(line, 1, 2, "LOCAL_IMAGE");
      const local = images.parser.parseLocal(line.args[0]);
      const target = line.args[1] ? remote(line.args[1]) : undefined;
      const progress = makeProgress(line);
      const pushed = await images.push(local, target, {
        input: line.options.input as string | undefined,
        progress,
        signal,
        suspend,
      });
      progress.finish();
      print({ image: pushed.toString() }, pushed.toString());
      return;
    }
    case "pull": {
      expectArgs(line, 1, 2, "REMOTE_IMAGE");
      const source = remote(line.args[0]);
      const local = line.args[1] ? images.parser.parseLocal(line.args[1]) : undefined;
      const format = line.options.format as string | undefined;
      if (format !== undefined && format !== "docker" && format !== "oci") {
        throw new UsageError("--format must be docker or oci", "pull");
      }
      const platform = line.options.platform as string | undefined;
      const progress = makeProgress(line);
      const pulled = await images.pull(source, local, {
        output: line.options.output as string | undefined,
        format,
        platform: platform ? parsePlatform(platform) : undefined,
        progress,
        signal,
      });
      progress.finish();
      print({ image: pulled.toString() }, pulled.toString());
      return;
    }
    case "digest": {
      expectArgs(line, 1, 1, "IMAGE");
      const digest = await images.digest(remote(line.args[0]));
      print({ digest }, digest);
      return;
    }
    case "size": {
      expectArgs(line, 1, 1, "IMAGE");
      const size = await images.size(remote(line.args[0]));
      print({ size }, humanSize(size));
      return;
    }
    case "tags": {
      expectArgs(line, 1, 1, "IMAGE");
      const tagged = await images.tags(remote(line.args[0], "deny"));
      const long = line.options.long === true;
      // A few lookups at a time: one per tag at once would open thousands of requests.
      const sizes = long ? await mapConcurrent(tagged, 16, (t) => images.size(t), signal) : [];
      if (line.json) {
        print(tagged.map((t, i) => ({ image: t.toString(), tag: t.tag, size: sizes[i] })), "");
      } else {
        tagged.forEach((t, i) =>
          out(
            long
              ? `${shortImageUri(t, current)}  ${humanSize(sizes[i])}`
              : shortImageUri(t, current),
          )
        );
      }
      return;
    }
    case "ls": {
      expectArgs(line, 0, 0, "");
      let listed = await images.list(line.cluster);
      const pattern = line.options.name as string | undefined;
      if (pattern !== undefined) {
        let regex: RegExp;
        try {
          regex = new RegExp(pattern);
        } catch (e) {
          throw new UsageError(`-n: invalid regular expression: ${(e as Error).message}`, "ls");
        }
        listed = listed.filter((i) => regex.test(i.name));
      }
      const full = line.options["full-uri"] === true;
      const name = (i: RemoteImage) => full ? i.toString() : shortImageUri(i, current);
      if (line.json) {
        print(listed.map((i) => ({ image: i.toString(), dockerUrl: i.asDockerUrl() })), "");
      } else if (line.options.long === true) {
        const width = Math.max(4, ...listed.map((i) => name(i).length));
        out(`${"Name".padEnd(width)}  Docker URL`);
        for (const i of listed) out(`${name(i).padEnd(width)}  ${i.asDockerUrl()}`);
      } else {
        for (const i of listed) out(name(i));
      }
      return;
    }
    case "rm":
      expectArgs(line, 1, Infinity, "IMAGE");
      for (const text of line.args) {
        const removed = await removeImage(
          images,
          remote(text, "allow"),
          line.options.force === true,
        );
        for (const r of removed) print(r, `Deleted ${r.image} (${r.digest})`);
      }
      return;
  }
}

/** Removes an image the way `apolo image rm` does; returns what went. */
async function removeImage(
  images: Images,
  image: RemoteImage,
  force: boolean,
): Promise<{ image: string; digest: string }[]> {
  const all = await images.tags(image.withTag(undefined as unknown as string));
  const digests = new Map<string, string>();
  for (const t of all) digests.set(t.tag!, await images.digest(t));
  if (!image.tag) {
    const unique = [...new Set(digests.values())];
    for (const d of unique) await images.rm(image, d);
    return [...digests].map(([tag, digest]) => ({ image: image.withTag(tag).toString(), digest }));
  }
  const digest = digests.get(image.tag) ?? await images.digest(image);
  const sharing = [...digests].filter(([tag, d]) => d === digest && tag !== image.tag).map(([t]) =>
    t
  );
  if (sharing.length > 0 && !force) {
    throw new ImagesError(
      `${image} shares its manifest ${digest} with tag(s) ${sharing.join(", ")}; ` +
        "deleting it would delete them too: use -f to delete all of them",
      "TAG_SHARED",
    );
  }
  await images.rm(image, digest);
  return [image.tag, ...sharing].map((tag) => ({ image: image.withTag(tag).toString(), digest }));
}

/** Builds the API object from the global options. */
async function openImages(line: CommandLine): Promise<Images> {
  if (!line.registry) {
    throw new UsageError("no registry: pass --registry URL or set APOLO_REGISTRY", line.command);
  }
  if (!line.owner) {
    throw new UsageError("no owner: pass --owner NAME or set APOLO_OWNER", line.command);
  }
  let password = line.token;
  if (line.passwordStdin) password = (await readStdin()).replace(/\r?\n$/, "");
  if (password !== undefined && !line.username) {
    throw new UsageError(
      "a password or token needs a user name: pass --username or set APOLO_USERNAME",
      line.command,
    );
  }
  const compression = line.options.compression as string | undefined;
  if (compression !== undefined && compression !== "gzip" && compression !== "zstd") {
    throw new UsageError("--compression must be gzip or zstd", line.command);
  }
  const gzipEngine = line.options["gzip-engine"] as string | undefined;
  if (gzipEngine !== undefined && !GZIP_ENGINE_CHOICES.includes(gzipEngine)) {
    throw new UsageError(
      `--gzip-engine must be one of ${GZIP_ENGINE_CHOICES.join(", ")}`,
      line.command,
    );
  }
  if (gzipEngine !== undefined && compression === "zstd") {
    throw new UsageError("--gzip-engine applies to gzip, not --compression zstd", line.command);
  }
  const zstd = compression === "zstd";
  const compressionLevel = intOption(line, "compression-level", 1, zstd ? 19 : 9);
  return new Images({
    registries: { [line.cluster]: line.registry },
    clusterName: line.cluster,
    orgName: line.org,
    owner: line.owner,
    username: password !== undefined ? line.username : undefined,
    password,
    allowCredentialHelpers: true,
    insecure: line.insecure,
    compression: compression as LayerCompression | undefined,
    compressionLevel,
    concurrency: intOption(line, "concurrency", 1, 32),
    resumableUploads: line.options.resumable === true,
    gzipEngine: gzipEngine as GzipEngineChoice | undefined,
    ...(line.stallTimeoutSeconds !== undefined
      ? {
        connectTimeoutMs: line.stallTimeoutSeconds * 1000,
        stallTimeoutMs: line.stallTimeoutSeconds * 1000,
      }
      : {}),
    log: line.debug ? (l) => process.stderr.write(`debug: ${printable(l, 4000)}\n`) : undefined,
  });
}

async function readStdin(): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Uint8Array);
  return new TextDecoder().decode(Buffer.concat(chunks));
}

function makeProgress(line: CommandLine): CliProgress {
  let mode: ProgressMode = line.progress === "auto"
    ? (process.stderr.isTTY ? "tty" : "plain")
    : line.progress;
  if (line.json && line.progress === "auto") mode = "none";
  return new CliProgress(mode, { write: (t) => process.stderr.write(t) });
}
