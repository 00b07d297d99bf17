/**
 * Help texts of the command line.
 *
 * @module
 */

/** Options every command takes. */
export const GLOBAL_HELP = `Global options:
  --registry URL       registry of the current cluster      [env APOLO_REGISTRY]
  --cluster NAME       current cluster (default "default")  [env APOLO_CLUSTER]
  --org ORG            current organisation                 [env APOLO_ORG]
  --project NAME       current project (owner of images)    [env APOLO_OWNER]
  --owner NAME         the same as --project
  --username NAME      registry user name                   [env APOLO_USERNAME]
  --password-stdin     read the password or token from standard input
                       (or set APOLO_TOKEN; never pass secrets as arguments)
  --insecure           allow plain http to a non-loopback registry
  --progress MODE      auto, tty, plain, json or none (default auto)
  -q, --quiet          no progress
  --json               print data as JSON (sizes in bytes)
  --debug              show stack traces and HTTP requests (credentials
                       redacted)
  --timeout SECONDS    give up after this long in all (exit 1; nothing
                       half-written)
  --stall-timeout SECONDS
                       give up a request whose network is silent this long
                       (default 30 for an answer, 60 for a body)
  -h, --help           show help
  --version            print the version
Without --username/APOLO_USERNAME, credentials come from Docker's config.json
(DOCKER_CONFIG or ~/.docker) for the registry host.`;

/** Help of each command, by name. */
export const COMMAND_HELP: Record<string, string> = {
  push: `Usage: apolo-images push [--input PATH] LOCAL_IMAGE [REMOTE_IMAGE]

Push an image from a local archive or layout to the registry, with no Docker
daemon. PATH is a \`docker save\` archive, an OCI archive or an OCI layout
directory (default: the local store, $APOLO_IMAGES_STORE). Without REMOTE_IMAGE
the image goes to the current cluster, org and owner under its local name; a
missing tag means "latest".

With --resumable, large layers (over two 8 MiB chunks) are sent in chunks and
their upload sessions are saved in the cache folder
($XDG_CACHE_HOME/apolo-images/uploads): a push stopped by SIGTERM (exit 143:
chunks in flight finish, sessions are kept), run again, resumes each such layer
where the registry stands, recomputing instead of resending what it had.
Chunked uploads cost about a third of the speed on a fast network, so this is
for big layers over slow or flaky links. Ctrl-C (SIGINT) cancels.

gzip runs on the fastest engine that loads: the system's ISA-L (libisal.so.2),
else libdeflate (libdeflate.so.0), else libdeflate built as WebAssembly
(libdeflate-wasm, always there). Under Deno the native ones need --allow-ffi.

Options:
  --input PATH              archive or layout to read (default: the local
                            store); - reads an archive from standard input, and
                            a .tar.gz is read the same way: once, layers sent as
                            they pass
  --resumable               keep upload sessions so a stopped push can resume
                            (default off)
  --compression gzip|zstd   compression of uncompressed layers (default gzip);
                            zstd writes an OCI manifest (Docker 20.10+,
                            containerd 1.5+)
  --compression-level N     gzip 1-9 (ISA-L 1-3; default: the engine's own),
                            zstd 1-19 (default 3)
  --gzip-engine auto|isal|libdeflate|libdeflate-wasm|zlib
                            what compresses gzip (default auto: the first that
                            runs)
  --concurrency N           layers at once, 1-32 (default 3)
  --upload-mode auto|streaming|chunked|monolithic
                            how blobs are sent (default auto: streaming, falling
                            back to chunked, then monolithic, for registries
                            that refuse)

Examples:
  apolo-images push --input app.tar app:1.0
  apolo-images push --input app.tar app:1.0 image:my-app:production
  docker save app:1.0 | apolo-images push --input - app:1.0
  apolo-images push --input ./layout alpine image:/other-project/alpine:shared`,
  pull: `Usage: apolo-images pull [--output PATH] [OPTIONS] REMOTE_IMAGE [LOCAL_IMAGE]

Pull an image from the registry. --output x.tar writes an archive that
\`docker load\` and \`podman load\` accept (default format docker) or an OCI
archive (--format oci); a directory (existing, or ending in /) becomes an OCI
layout. Without --output, the local store. Without LOCAL_IMAGE, the image keeps
its remote name and tag ("latest" when pulled by digest alone). OCI outputs get
OCI media types (a Docker manifest is converted: same config and image ID, a
new manifest digest). One platform is pulled (default linux and this machine's
CPU); --all-platforms keeps a multi-platform image whole. An image of one
platform only is pulled whatever its platform, but refused when --platform
names another.

Options:
  --output PATH                archive or layout to write (default: the local
                               store, $APOLO_IMAGES_STORE or
                               $XDG_DATA_HOME/apolo-images/store)
  --format docker|oci          format of an archive (default docker; a layout is
                               OCI)
  --platform OS/ARCH[/VARIANT] which image of a multi-platform one (default:
                               this machine's, e.g. linux/amd64)
  --all-platforms              every platform of a multi-platform image, into an
                               OCI output (default off)
  --concurrency N              layers at once, 1-32 (default 3)

Examples:
  apolo-images pull image:app:1.0 --output app.tar
  apolo-images pull --format oci image:/other-project/alpine:shared \\
    --output alpine.oci.tar
  apolo-images pull --platform linux/arm64 image:app:1.0 app:arm --output ./l/`,
  digest: `Usage: apolo-images digest IMAGE

Print the digest of an image in the registry. IMAGE is an image: URI with a tag
("latest" if none), a digest (image:NAME@sha256:…, checked to exist), or both
(image:NAME:TAG@sha256:…: the tag must be that digest in the registry).

Options: only the global ones.

Examples:
  apolo-images digest image:myimage:latest
  apolo-images digest image:/other-project/alpine:shared`,
  rm: `Usage: apolo-images rm [-f] IMAGE...

Remove images from the registry. IMAGE is an image: URI with a tag or digest:
image:NAME@sha256:… deletes exactly that manifest (and the tags pointing at
it, no other); image:NAME:TAG deletes the tag's manifest, refused when other
tags share it unless -f, which deletes them too. A tag pinned to a digest
(image:NAME:TAG@sha256:…) must be that digest. A name with neither is refused.

Options:
  -f, --force        remove every tag sharing the manifest (default off)

Examples:
  apolo-images rm image:myimage:latest
  apolo-images rm -f image:/other-project/alpine:shared
  apolo-images rm image:myimage@sha256:<64 hex digits>`,
  ls: `Usage: apolo-images ls [-l] [--full-uri] [--cluster C] [-n REGEX]

List images (repositories) in the registry.

Options:
  -l, --long         long format, with the docker URL (default off)
  --full-uri         print full image URIs (default: short, relative to the
                     project)
  -n, --name REGEX   only images whose name matches (default: all)
  --project PROJECT  only images of this project (repeatable; default: the
                     current project)
  --all-projects     images of every project (default off)
  --org ORG          only images of this org (repeatable; default: the current
                     org)
  --all-orgs         images of every org (default off)

Examples:
  apolo-images ls
  apolo-images ls -l -n '^app'
  apolo-images ls --project other-project --project my-project`,
  tags: `Usage: apolo-images tags [-l] IMAGE

List the tags of an image (an image: URI without a tag). With a digest
(image:NAME@sha256:…), only the tags of that manifest.

Options:
  -l, --long         add each tag's size (default off)

Examples:
  apolo-images tags image:myimage
  apolo-images tags -l image:/other-project/alpine`,
  size: `Usage: apolo-images size IMAGE

Print the size of an image (the sum of its compressed layers), found by tag
or digest as "digest" finds it.

Options: only the global ones.

Examples:
  apolo-images size image:myimage:latest`,
};

/** The top-level help. */
export const MAIN_HELP = `Usage: apolo-images [GLOBAL OPTIONS] COMMAND [ARGS]

Push, pull and manage images in an Apolo (or any OCI) registry without a Docker
daemon.

Commands:
  push     Push an image from an archive or layout to the registry
  pull     Pull an image into a docker-loadable archive or an OCI layout
  digest   Print the digest of an image
  rm       Remove images from the registry
  ls       List images
  tags     List the tags of an image
  size     Print the size of an image

Run "apolo-images COMMAND --help" for a command's options and examples.

${GLOBAL_HELP}`;
