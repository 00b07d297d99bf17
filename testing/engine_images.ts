/**
 * Test images for the engine matrix, built from scratch (no registry, no internet):
 * layers are tars written here, and images are `docker save` (Docker 24-style) archives
 * that `docker load`, `podman load` and our push read.
 *
 * - a runnable base layer: the host's `sh`, `cat`, `ls`, `sha256sum` and their libraries;
 * - the "tricky" image: whiteouts (a file and an opaque directory), a hard link, a
 *   symlink, an xattr (pax `SCHILY.xattr.*`), the same empty layer twice, and more than
 *   25 layers in all;
 * - a two-platform OCI layout (linux/amd64 and linux/arm64);
 * - a multi-GiB file, written sparse and hashed from the same description of its bytes,
 *   so it costs little disk and no memory.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { mkdir, open, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { gzipSync } from "node:zlib";
import { encodePaxRecords, encodeTarHeader, paddedSize } from "../lib/archive/tar_header.ts";
import { sha256Digest } from "../lib/oci/digest.ts";
import { MediaType } from "../lib/oci/media_types.ts";
import { run } from "./tools.ts";

/** Bytes as they are, or a run of zero bytes (written sparse, hashed without memory). */
export type Piece = Uint8Array | { zeros: number };

/** One entry of a layer. */
export interface LayerEntry {
  /** Path inside the image, no leading slash (directories may end with `/`). */
  path: string;
  /** Default `file`. */
  type?: "file" | "dir" | "symlink" | "hardlink";
  /** File content. */
  data?: string | Uint8Array | Piece[];
  /** Target of a link. */
  link?: string;
  /** Permission bits (default 0o644, 0o755 for directories). */
  mode?: number;
  /** Extended attributes, e.g. `{ "user.note": "kept" }`. */
  xattrs?: Record<string, string>;
}

const enc = new TextEncoder();
const MiB = 1024 * 1024;

/** Total bytes of some pieces. */
export function piecesSize(pieces: Piece[]): number {
  return pieces.reduce((n, p) => n + (p instanceof Uint8Array ? p.length : p.zeros), 0);
}

function asPieces(data: LayerEntry["data"]): Piece[] {
  if (data === undefined) return [];
  if (typeof data === "string") return [enc.encode(data)];
  return data instanceof Uint8Array ? [data] : data;
}

/** The pieces of a tar entry: pax header when needed, header, data, padding. */
function entryPieces(
  name: string,
  type: "0" | "1" | "2" | "5",
  data: Piece[],
  options: { link?: string; mode?: number; pax?: Record<string, string> } = {},
): Piece[] {
  const size = piecesSize(data);
  const out: Piece[] = [];
  if (options.pax && Object.keys(options.pax).length > 0) {
    const records = encodePaxRecords(options.pax);
    out.push(encodeTarHeader({ name: "PaxHeaders/x", size: records.length, typeflag: "x" }));
    out.push(records, new Uint8Array(paddedSize(records.length) - records.length));
  }
  out.push(encodeTarHeader({
    name,
    size,
    typeflag: type,
    linkname: options.link,
    mode: options.mode ?? (type === "5" ? 0o755 : 0o644),
    mtime: 1_700_000_000,
  }));
  out.push(...data);
  if (paddedSize(size) > size) out.push({ zeros: paddedSize(size) - size });
  return out;
}

/** An uncompressed layer tar, as pieces. */
export function layerPieces(entries: LayerEntry[]): Piece[] {
  const out: Piece[] = [];
  for (const e of entries) {
    const type = e.type ?? "file";
    const pax = Object.fromEntries(
      Object.entries(e.xattrs ?? {}).map(([k, v]) => [`SCHILY.xattr.${k}`, v]),
    );
    if (type === "dir") out.push(...entryPieces(e.path, "5", [], { mode: e.mode, pax }));
    else if (type === "symlink") out.push(...entryPieces(e.path, "2", [], { link: e.link }));
    else if (type === "hardlink") out.push(...entryPieces(e.path, "1", [], { link: e.link }));
    else out.push(...entryPieces(e.path, "0", asPieces(e.data), { mode: e.mode, pax }));
  }
  out.push({ zeros: 1024 });
  return out;
}

/** `sha256:<hex>` of pieces, hashing zero runs from one reused buffer. */
export function piecesDigest(pieces: Piece[]): string {
  const hash = createHash("sha256");
  const zeros = new Uint8Array(4 * MiB);
  for (const p of pieces) {
    if (p instanceof Uint8Array) hash.update(p);
    else {
      for (let left = p.zeros; left > 0; left -= zeros.length) {
        hash.update(left >= zeros.length ? zeros : zeros.subarray(0, left));
      }
    }
  }
  return `sha256:${hash.digest("hex")}`;
}

/** Writes pieces to a file, leaving zero runs as holes (a sparse file). */
export async function writePieces(path: string, pieces: Piece[]): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const handle = await open(path, "w");
  try {
    let at = 0;
    for (const p of pieces) {
      if (p instanceof Uint8Array) {
        for (let done = 0; done < p.length;) {
          done += (await handle.write(p, done, p.length - done, at + done)).bytesWritten;
        }
        at += p.length;
      } else at += p.zeros;
    }
    await handle.truncate(at);
  } finally {
    await handle.close();
  }
}

/** A layer with its pieces and diffID. */
export interface Layer {
  /** Its bytes (uncompressed tar). */
  pieces: Piece[];
  /** `sha256` of those bytes. */
  diffId: string;
}

/** Makes a layer from entries. */
export function makeLayer(entries: LayerEntry[]): Layer {
  const pieces = layerPieces(entries);
  return { pieces, diffId: piecesDigest(pieces) };
}

/** An image config for layers (amd64 linux unless told). */
export function imageConfig(
  layers: Layer[],
  options: { architecture?: string; cmd?: string[] } = {},
): Uint8Array {
  return enc.encode(JSON.stringify({
    architecture: options.architecture ?? "amd64",
    os: "linux",
    config: { Env: ["PATH=/bin"], ...(options.cmd ? { Cmd: options.cmd } : {}) },
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((_, i) => ({ created_by: `layer ${i}` })),
  }));
}

/**
 * Writes a Docker 24-style `docker save` archive of one image (a repeated layer stored
 * once, later copies as symlinks, the way Docker writes them) and returns its image ID.
 */
export async function writeDockerSave(
  path: string,
  layers: Layer[],
  tags: string[],
  config: Uint8Array = imageConfig(layers),
): Promise<string> {
  const configDigest = sha256Digest(config);
  const hex = (d: string) => d.slice("sha256:".length);
  const out: Piece[] = [];
  const paths: string[] = [];
  const first = new Map<string, string>();
  layers.forEach((layer, i) => {
    const id = hex(sha256Digest(enc.encode(`${configDigest} ${i}`)));
    paths.push(`${id}/layer.tar`);
    out.push(...entryPieces(`${id}/`, "5", []));
    out.push(...entryPieces(`${id}/VERSION`, "0", [enc.encode("1.0")]));
    const earlier = first.get(layer.diffId);
    if (earlier) {
      out.push(...entryPieces(`${id}/layer.tar`, "2", [], { link: `../${earlier}` }));
    } else {
      out.push(...entryPieces(`${id}/layer.tar`, "0", layer.pieces));
      first.set(layer.diffId, `${id}/layer.tar`);
    }
  });
  out.push(...entryPieces(`${hex(configDigest)}.json`, "0", [config]));
  const manifest = [{ Config: `${hex(configDigest)}.json`, RepoTags: tags, Layers: paths }];
  out.push(...entryPieces("manifest.json", "0", [enc.encode(JSON.stringify(manifest))]));
  out.push({ zeros: 1024 });
  await writePieces(path, out);
  return configDigest;
}

/** The host binaries and libraries a runnable test image needs. */
const RUNNABLE = ["/bin/sh", "/bin/cat", "/bin/ls", "/usr/bin/sha256sum"];

/** The base layer: `sh`, `cat`, `ls`, `sha256sum` with their shared libraries (from `ldd`). */
export async function baseLayer(): Promise<Layer> {
  const files = new Set<string>();
  for (const binary of RUNNABLE) {
    files.add(binary);
    const ldd = await run("ldd", [binary]);
    for (const m of ldd.stdout.matchAll(/(\/\S+\.so[.\d]*)/g)) files.add(m[1]);
  }
  const entries: LayerEntry[] = [];
  const dirs = new Set<string>();
  for (const file of [...files].sort()) {
    // Inside the image every path is real: /bin/sh, not /usr/bin/sh through a link.
    const path = file.slice(1).replace(/^usr\/bin\//, "bin/");
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/") + "/";
      if (!dirs.has(dir)) {
        dirs.add(dir);
        entries.push({ path: dir, type: "dir" });
      }
    }
    const bytes = new Uint8Array(await readFile(file));
    entries.push({ path, data: bytes, mode: 0o755 });
  }
  return makeLayer(entries);
}

/** The layers of the tricky image: base, then what breaks tools, then 22 small ones. */
export function trickyLayers(base: Layer): Layer[] {
  const empty = makeLayer([]);
  const layers = [
    base,
    makeLayer([
      { path: "data/", type: "dir" },
      { path: "data/a.txt", data: "alpha\n" },
      { path: "data/b.txt", data: "to be deleted\n" },
      { path: "data/x.txt", data: "has an xattr\n", xattrs: { "user.note": "kept" } },
      { path: "data/opq/", type: "dir" },
      { path: "data/opq/old", data: "hidden by an opaque whiteout\n" },
      { path: "data/hard", type: "hardlink", link: "data/a.txt" },
      { path: "data/link", type: "symlink", link: "a.txt" },
    ]),
    makeLayer([
      { path: "data/", type: "dir" },
      { path: "data/.wh.b.txt" },
      { path: "data/opq/", type: "dir" },
      { path: "data/opq/.wh..wh..opq" },
      { path: "data/opq/new", data: "after the opaque whiteout\n" },
    ]),
    empty,
    empty,
  ];
  for (let i = 0; layers.length < 27; i++) {
    layers.push(makeLayer([
      { path: "data/", type: "dir" },
      { path: "data/n/", type: "dir" },
      { path: `data/n/${i}.txt`, data: `layer file ${i}\n` },
    ]));
  }
  return layers;
}

/** The shell command printing what a run of the tricky image sees. */
export const TRICKY_FINGERPRINT = [
  "/bin/sh",
  "-c",
  // No times: a whiteout changes its directory's mtime when an engine applies it.
  "ls -lnAR --time-style=+ /data && sha256sum /data/a.txt /data/hard /data/link /data/opq/new /data/x.txt",
];

/** The image of a multi-GiB file: base plus one layer of `size` bytes (sparse). */
export function bigLayer(size: number): { layer: Layer } {
  const head = enc.encode("head of a big file\n");
  const tail = enc.encode("\ntail of a big file\n");
  const data: Piece[] = [head, { zeros: size - head.length - tail.length }, tail];
  return { layer: makeLayer([{ path: "big/", type: "dir" }, { path: "big/file", data }]) };
}

/**
 * Writes an OCI layout holding one two-platform index (linux/amd64, linux/arm64) named
 * `ref` (and `fullName` as containerd names images, if given); each platform's layer has a file `arch.txt` naming it. Returns the index digest.
 */
export async function writeTwoPlatformLayout(
  dir: string,
  ref: string,
  fullName?: string,
): Promise<string> {
  const blobs = join(dir, "blobs", "sha256");
  await mkdir(blobs, { recursive: true });
  const put = async (bytes: Uint8Array) => {
    const digest = sha256Digest(bytes);
    await writeFile(join(blobs, digest.slice(7)), bytes);
    return { digest, size: bytes.length };
  };
  const manifests = [];
  for (const architecture of ["amd64", "arm64"]) {
    const layer = makeLayer([{ path: "arch.txt", data: `${architecture}\n` }]);
    const layerBytes = new Uint8Array(
      layer.pieces.flatMap((p) => p instanceof Uint8Array ? [...p] : new Array(p.zeros).fill(0)),
    );
    // gzip, as registries hold layers: a push sends every blob as it is.
    const stored = await put(new Uint8Array(gzipSync(layerBytes)));
    const config = await put(imageConfig([layer], { architecture }));
    const manifest = enc.encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, ...config },
      layers: [{ mediaType: MediaType.OciLayerGzip, ...stored }],
    }));
    manifests.push({
      mediaType: MediaType.OciManifest,
      ...(await put(manifest)),
      platform: { architecture, os: "linux" },
    });
  }
  const index = await put(enc.encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests,
  })));
  await writeFile(
    join(dir, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{
        mediaType: MediaType.OciIndex,
        ...index,
        annotations: {
          "org.opencontainers.image.ref.name": ref,
          ...(fullName ? { "io.containerd.image.name": fullName } : {}),
        },
      }],
    }),
  );
  await writeFile(join(dir, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
  return index.digest;
}
