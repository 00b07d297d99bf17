/**
 * The commands of the command line, each a thin layer over {@linkcode Images}.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { resolve } from "node:path";
import process from "node:process";
import { ImagesError, InvalidReferenceError } from "../errors.ts";
import { printable } from "../printable.ts";
import { Images } from "../images.ts";
import { mapConcurrent } from "../copy/pool.ts";
import {
  GZIP_ENGINE_CHOICES,
  type GzipEngineChoice,
  type LayerCompression,
} from "../compression/engines.ts";
import type { Platform } from "../oci/manifest.ts";
import { parsePlatform } from "../oci/platform.ts";
import type { LocalImage } from "../reference/local_image.ts";
import type { RemoteImage } from "../reference/remote_image.ts";
import type { TagOption } from "../reference/parser.ts";
import type { UploadMode } from "../registry/mod.ts";
import { humanSize, shortImageUri } from "./format.ts";
import { type CommandLine, expectArgs, intOption, UsageError } from "./options.ts";
import { CliProgress, type ProgressMode } from "./progress_view.ts";
import { defaultCacheDir } from "../blobcache/blob_cache.ts";
import { defaultStorePath } from "../store.ts";
import {
  cacheUsable,
  requireInputAccess,
  requireOutputAccess,
  requireRegistryAccess,
} from "./grants.ts";

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
  const command = line.command!;
  // A name that does not parse is a usage error (exit 2), like a bad option.
  const remote = (text: string, tagOption: TagOption = "default") =>
    asUsage(command, () => images.parser.parseRemote(text, { tagOption }));
  const local = (text: string) => asUsage(command, () => images.parser.parseLocal(text));
  // apolo's digest, rm, size and tags take an image: URI; a bare name would silently
  // mean Docker Hub.
  const platformImage = (text: string, tagOption: TagOption = "default") => {
    const image = remote(text, tagOption);
    if (!image.isPlatformImage) {
      throw new UsageError(
        `${command} needs an image: URI (image:NAME:TAG, image:/PROJECT/NAME:TAG or ` +
          `image://CLUSTER/PROJECT/NAME:TAG); ${JSON.stringify(text)} names an image on ` +
          `${image.domain}`,
        command,
      );
    }
    return image;
  };
  switch (line.command) {
    case "push": {
      expectArgs(line, 1, 2, "LOCAL_IMAGE");
      const source = local(line.args[0]);
      // Without a remote, the local name must make a platform one: a usage error if not.
      const target = line.args[1]
        ? remote(line.args[1])
        : asUsage(command, () => images.parser.localToRemote(source));
      if (target.digest !== undefined) {
        throw new UsageError(
          `cannot push to ${line.args[1]}: a push goes to a name and tag; a digest is ` +
            "what a push produces, not a target",
          command,
        );
      }
      const input = (line.options.input as string | undefined) ?? defaultStorePath();
      if (input !== "-") requireInputAccess(input); // standard input needs no permission
      if (line.options.compression === "zstd") {
        process.stderr.write(
          "note: zstd layers go in an OCI manifest, which engines older than Docker 20.10 " +
            "and containerd 1.5 cannot pull\n",
        );
      }
      const progress = makeProgress(line, signal);
      try {
        const pushed = await images.push(source, target, {
          input: line.options.input as string | undefined,
          progress,
          signal,
          suspend,
        });
        // The digest costs one request: only for those who asked for data.
        const digest = wantsResult(line) ? await images.digest(pushed) : undefined;
        const result = {
          image: pushed.toString(),
          digest,
          local: source.toString(),
          input: input === "-" ? "-" : resolve(input),
          bytesSent: progress.bytesMoved,
        };
        progress.finish(result);
        print(result, pushed.toString());
      } finally {
        progress.finish();
      }
      return;
    }
    case "pull": {
      expectArgs(line, 1, 2, "REMOTE_IMAGE");
      const source = remote(line.args[0]);
      const destination = line.args[1] ? local(line.args[1]) : undefined;
      if (destination?.digest !== undefined) {
        throw new UsageError(
          `cannot pull into ${line.args[1]}: a pulled image gets a name and tag; its digest ` +
            "is what is written",
          command,
        );
      }
      const format = line.options.format as string | undefined;
      if (format !== undefined && format !== "docker" && format !== "oci") {
        throw new UsageError("--format must be docker or oci", "pull");
      }
      const platformText = line.options.platform as string | undefined;
      let platform: Platform | "all" | undefined;
      try {
        platform = platformText ? parsePlatform(platformText) : undefined;
      } catch (e) {
        throw new UsageError(`--platform: ${(e as Error).message}`, command);
      }
      if (line.options["all-platforms"] === true) {
        if (platform !== undefined) {
          throw new UsageError("--platform and --all-platforms exclude each other", command);
        }
        platform = "all";
      }
      const output = line.options.output as string | undefined;
      requireOutputAccess(output ?? defaultStorePath());
      const progress = makeProgress(line, signal);
      try {
        let written: string | undefined;
        let pulledDigest: string | undefined;
        const pulled = await images.pull(source, destination, {
          // An OCI output of a Docker manifest holds a converted one: say which.
          onWritten: (digest, registry) => {
            pulledDigest = registry;
            if (digest === registry) return;
            written = digest;
            if (!wantsResult(line)) {
              process.stderr.write(
                `note: written with OCI media types as manifest ${digest} (the registry's is ` +
                  `${registry}; the image ID is the same)\n`,
              );
            }
          },
          output,
          format,
          platform,
          progress,
          signal,
        });
        // The registry's digest of what was copied: no second request, no race with a moved tag.
        const digest = wantsResult(line) ? pulledDigest : undefined;
        const result = {
          image: pulled.toString(),
          digest,
          remote: source.toString(),
          output: resolve(output ?? defaultStorePath()),
          ...(written ? { writtenDigest: written } : {}),
          bytesReceived: progress.bytesMoved,
        };
        progress.finish(result);
        print(result, pulled.toString());
      } finally {
        progress.finish();
      }
      return;
    }
    case "digest": {
      expectArgs(line, 1, 1, "IMAGE");
      const digest = await images.digest(platformImage(line.args[0]));
      print({ digest }, digest);
      return;
    }
    case "size": {
      expectArgs(line, 1, 1, "IMAGE");
      const size = await images.size(platformImage(line.args[0]));
      print({ size }, humanSize(size));
      return;
    }
    case "tags": {
      expectArgs(line, 1, 1, "IMAGE");
      const image = platformImage(line.args[0], "allow");
      if (image.tag !== undefined) {
        throw new UsageError(
          `tags lists a repository: give ${JSON.stringify(line.args[0])} without its tag ` +
            "(with a digest, it lists the tags of that manifest)",
          command,
        );
      }
      const tagged = await images.tags(image);
      const long = line.options.long === true;
      // A few lookups at a time: one per tag at once would open thousands of requests.
      const sizes = long ? await mapConcurrent(tagged, 16, (t) => images.size(t), signal) : [];
      if (line.json) {
        print(tagged.map((t, i) => ({ image: t.toString(), tag: t.tag, size: sizes[i] })), "");
      } else {
        const names = tagged.map((t) => shortImageUri(t, current));
        // The sizes in one column, as `ls -l` lines up its docker URLs.
        const width = Math.max(0, ...names.map((n) => n.length));
        names.forEach((name, i) =>
          out(long ? `${name.padEnd(width)}  ${humanSize(sizes[i])}` : name)
        );
      }
      return;
    }
    case "ls": {
      expectArgs(line, 0, 0, "");
      let listed = await images.list(line.cluster);
      // apolo's filters: the current org and project unless others or all are asked for.
      if (line.options["all-orgs"] !== true) {
        const orgs = new Set(line.orgs.length > 0 ? line.orgs : [line.org]);
        listed = listed.filter((i) => orgs.has(i.orgName));
      }
      if (line.options["all-projects"] !== true) {
        const projects = new Set(line.projects.length > 0 ? line.projects : [line.owner]);
        listed = listed.filter((i) => projects.has(i.owner));
      }
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
    case "rm": {
      expectArgs(line, 1, Infinity, "IMAGE");
      // Every name is checked before anything is deleted.
      const targets = line.args.map((text) => {
        const image = platformImage(text, "allow");
        if (image.tag === undefined && image.digest === undefined) {
          throw new UsageError(
            `rm needs a tag or a digest: ${JSON.stringify(text)} names the whole repository ` +
              "(image:NAME:TAG, or image:NAME@sha256:… for one manifest)",
            command,
          );
        }
        return image;
      });
      for (const image of targets) {
        const removed = await removeImage(images, image, line.options.force === true);
        for (const r of removed) {
          // A name given by digest already shows it; a tag's line adds its digest.
          print(
            r,
            r.image.endsWith(r.digest) ? `Deleted ${r.image}` : `Deleted ${r.image} (${r.digest})`,
          );
        }
      }
      return;
    }
  }
}

/** Runs `parse`, turning a name that does not parse into a usage error. */
function asUsage<T extends RemoteImage | LocalImage>(command: string, parse: () => T): T {
  try {
    return parse();
  } catch (e) {
    if (e instanceof InvalidReferenceError) throw new UsageError(e.message, command);
    throw e;
  }
}

/**
 * Removes an image the way `apolo image rm` does; returns what went. By digest: exactly
 * that manifest (the tags pointing at it go with it). By tag (pinned or not): its
 * manifest, refused when other tags share it unless `force`, which deletes them too.
 */
async function removeImage(
  images: Images,
  image: RemoteImage,
  force: boolean,
): Promise<{ image: string; digest: string }[]> {
  if (image.tag === undefined) {
    const digest = image.digest!;
    const tagged = await images.tags(image);
    await images.rm(image, digest);
    return [image, ...tagged].map((i) => ({ image: i.toString(), digest }));
  }
  const digest = await images.digest(image);
  const sharing = (await images.tags(image.withTag(undefined).withDigest(digest)))
    .map((t) => t.tag!)
    .filter((tag) => tag !== image.tag);
  if (sharing.length > 0 && !force) {
    throw new ImagesError(
      `${image} shares its manifest ${digest} with tag(s) ${sharing.join(", ")}; ` +
        "deleting it would delete them too: use -f to delete all of them",
      "TAG_SHARED",
    );
  }
  await images.rm(image, digest);
  const bare = image.withDigest(undefined);
  return [image.tag, ...sharing].map((tag) => ({ image: bare.withTag(tag).toString(), digest }));
}

const UPLOAD_MODES: string[] = ["auto", "streaming", "chunked", "monolithic"];

/** Builds the API object from the global options. */
async function openImages(line: CommandLine): Promise<Images> {
  if (!line.registry) {
    throw new UsageError("no registry: pass --registry URL or set APOLO_REGISTRY", line.command);
  }
  if (!line.owner) {
    throw new UsageError(
      "no project: pass --project NAME (or --owner NAME) or set APOLO_OWNER",
      line.command,
    );
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
  requireRegistryAccess(line.registry);
  // Without read and write of the cache folder (Deno), no cache: asked, never prompted.
  const cacheDir = usableCacheDir();
  if (line.options.resumable === true && cacheDir === false) {
    throw new ImagesError(
      "--resumable keeps upload sessions in the cache folder, which Deno may not use: run it " +
        `with --allow-read and --allow-write of ${cacheFolderName()}`,
      "PERMISSION_DENIED",
    );
  }
  const uploadMode = line.options["upload-mode"] as string | undefined;
  if (uploadMode !== undefined && !UPLOAD_MODES.includes(uploadMode)) {
    throw new UsageError(`--upload-mode must be one of ${UPLOAD_MODES.join(", ")}`, line.command);
  }
  const zstd = compression === "zstd";
  const compressionLevel = intOption(line, "compression-level", 1, zstd ? 19 : 9);
  return new Images({
    registries: { [line.cluster]: line.registry },
    clusterName: line.cluster,
    orgName: line.org,
    // Orgs asked for by ls: their repositories read as <org>/<project>/<name>.
    orgNames: line.orgs.length > 0 ? { [line.cluster]: line.orgs } : undefined,
    owner: line.owner,
    username: password !== undefined ? line.username : undefined,
    password,
    allowCredentialHelpers: true,
    insecure: line.insecure,
    compression: compression as LayerCompression | undefined,
    compressionLevel,
    concurrency: intOption(line, "concurrency", 1, 32),
    resumableUploads: line.options.resumable === true,
    uploadMode: uploadMode as UploadMode | undefined,
    cacheDir,
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

/** The cache folder if it may be used, else false (no cache). */
function usableCacheDir(): string | false {
  try {
    const dir = defaultCacheDir();
    return cacheUsable(dir) ? dir : false;
  } catch {
    return false; // no HOME nor XDG_CACHE_HOME: no cache
  }
}

function cacheFolderName(): string {
  try {
    return defaultCacheDir();
  } catch {
    return "$XDG_CACHE_HOME/apolo-images";
  }
}

async function readStdin(): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Uint8Array);
  return new TextDecoder().decode(Buffer.concat(chunks));
}

/** Whether the result is printed as data (`--json`, `--progress json`). */
function wantsResult(line: CommandLine): boolean {
  return line.json || line.progress === "json";
}

/** The progress display; it stops (drawn in its last state) when the run is cancelled. */
function makeProgress(line: CommandLine, signal: AbortSignal): CliProgress {
  let mode: ProgressMode = line.progress === "auto"
    ? (process.stderr.isTTY ? "tty" : "plain")
    : line.progress;
  if (line.json && line.progress === "auto") mode = "none";
  const progress = new CliProgress(mode, {
    write: (t) => process.stderr.write(t),
    columns: () => process.stderr.columns,
  });
  signal.addEventListener("abort", () => progress.finish(), { once: true });
  return progress;
}
