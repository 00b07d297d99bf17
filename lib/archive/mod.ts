/**
 * Local image stores: `docker save` archives, OCI layout archives and directories, read
 * as image sources and written as image destinations, on top of a random-access tar
 * reader and a tar writer with concurrent reserved entries.
 *
 * @example
 * ```ts ignore
 * import { openLocalSource } from "./mod.ts";
 * const source = await openLocalSource("image.tar");
 * console.log(await source.names());
 * await source.close();
 * ```
 *
 * @module
 */

export * from "./archive_destination.ts";
export * from "./entry_store.ts";
export * from "./layout_destination.ts";
export * from "./layout_files.ts";
export * from "./local_destination.ts";
export * from "./local_source.ts";
export * from "./names.ts";
export * from "./stream_input.ts";
export * from "./tar_header.ts";
export * from "./tar_index.ts";
export * from "./tar_path.ts";
export * from "./tar_stream.ts";
export * from "./tar_writer.ts";

// The shared types the ends above implement and take, so the module's API is complete.
export type * from "../ends.ts";
export type { Descriptor, ImageManifest, Platform } from "../oci/manifest.ts";
