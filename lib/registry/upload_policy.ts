/**
 * How one registry takes uploads: the modes, the known chunk-size rules of GHCR
 * (chunks ≤ 4 MiB) and ECR (chunks ≥ 5 MiB), what `auto` falls back to, and the size
 * of the next chunk. A policy is shared by every upload to its registry and refined by
 * what the registry answers (see ./upload.ts).
 *
 * @module
 */

import { ImagesError } from "../errors.ts";
import type { SinglePostSupport } from "./small_upload.ts";

/**
 * How blobs are sent: see the module documentation.
 *
 * @example
 * ```ts ignore
 * const mode: UploadMode = "chunked";
 * ```
 */
export type UploadMode = "auto" | "streaming" | "chunked" | "monolithic";

/**
 * An upload mode other than `auto`: what `auto` picks or learns.
 *
 * @example
 * ```ts ignore
 * const mode: ConcreteUploadMode = "monolithic";
 * ```
 */
export type ConcreteUploadMode = Exclude<UploadMode, "auto">;

const MiB = 1024 * 1024;
/**
 * GHCR refuses chunks over 4 MiB.
 *
 * @example
 * ```ts ignore
 * const policy = uploadPolicyFor("r.example.com", { maxChunkSize: GHCR_MAX_CHUNK });
 * ```
 */
export const GHCR_MAX_CHUNK: number = 4 * MiB;
/**
 * ECR refuses chunks (other than the last) under 5 MiB.
 *
 * @example
 * ```ts ignore
 * const policy = uploadPolicyFor("r.example.com", { minChunkSize: ECR_MIN_CHUNK });
 * ```
 */
export const ECR_MIN_CHUNK: number = 5 * MiB;
/**
 * The default chunk size: 8 MiB.
 *
 * @example
 * ```ts ignore
 * const policy = uploadPolicyFor("r.example.com", { chunkSize: 2 * DEFAULT_CHUNK_SIZE });
 * ```
 */
export const DEFAULT_CHUNK_SIZE: number = 8 * MiB;

/**
 * How one registry takes uploads: configured, then refined by what it answers.
 * Shared by every upload to that registry.
 *
 * @example
 * ```ts ignore
 * const policy: UploadPolicy = uploadPolicyFor("ghcr.io", { mode: "chunked" });
 * console.log(policy.maxChunkSize); // 4194304
 * ```
 */
export interface UploadPolicy {
  /** The configured mode. */
  mode: UploadMode;
  /** The mode learnt in `auto` mode after a refusal. */
  learnedMode?: ConcreteUploadMode;
  /** Bytes per chunk. */
  chunkSize: number;
  /** The smallest chunk the registry takes (other than the last). */
  minChunkSize?: number;
  /** The largest chunk the registry takes. */
  maxChunkSize?: number;
  /** How long the registry may take to answer the final `PUT` (it may hash the blob). */
  commitTimeoutMs: number;
  /** Whether the registry stores a small blob sent whole in the `POST` (learnt). */
  singlePost: SinglePostSupport;
  /** False once the registry refused a small blob sent whole in one `PUT` (learnt). */
  smallPut?: boolean;
}

/**
 * The upload policy for a registry host: the caller's choices, with the known rules of
 * GHCR (chunks ≤ 4 MiB) and ECR (chunks ≥ 5 MiB) filled in.
 *
 * @example
 * ```ts
 * import { uploadPolicyFor } from "./upload_policy.ts";
 * uploadPolicyFor("ghcr.io", {}).maxChunkSize; // 4194304
 * ```
 */
export function uploadPolicyFor(
  host: string,
  options: {
    mode?: UploadMode;
    chunkSize?: number;
    minChunkSize?: number;
    maxChunkSize?: number;
    commitTimeoutMs?: number;
  },
): UploadPolicy {
  const h = host.toLowerCase().replace(/:\d+$/, "");
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 1) {
    throw new ImagesError(
      `chunkSize must be a positive integer, got ${chunkSize}`,
      "INVALID_ARGUMENT",
    );
  }
  return {
    mode: options.mode ?? "auto",
    chunkSize,
    minChunkSize: options.minChunkSize ??
      (/\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$/.test(h) ? ECR_MIN_CHUNK : undefined),
    maxChunkSize: options.maxChunkSize ?? (h === "ghcr.io" ? GHCR_MAX_CHUNK : undefined),
    commitTimeoutMs: options.commitTimeoutMs ?? 300_000,
    singlePost: {},
  };
}

/**
 * The mode `auto` tries after `mode` was refused, or undefined after the last.
 *
 * @example
 * ```ts
 * import { nextMode } from "./upload_policy.ts";
 * nextMode("streaming"); // "chunked"
 * ```
 */
export function nextMode(mode: ConcreteUploadMode): ConcreteUploadMode | undefined {
  return NEXT_MODE[mode];
}

const NEXT_MODE: Record<ConcreteUploadMode, ConcreteUploadMode | undefined> = {
  streaming: "chunked",
  chunked: "monolithic",
  monolithic: undefined,
};

/**
 * Bytes per chunk: the policy's size, raised to the smallest chunk the registry or the
 * session (`OCI-Chunk-Min-Length`) takes, lowered to the largest it takes unless that is
 * below the smallest.
 *
 * @example
 * ```ts
 * import { chunkSizeFor, uploadPolicyFor } from "./upload_policy.ts";
 * chunkSizeFor(uploadPolicyFor("ghcr.io", {}), undefined); // 4194304
 * ```
 */
export function chunkSizeFor(policy: UploadPolicy, sessionMinChunk: number | undefined): number {
  const min = Math.max(sessionMinChunk ?? 0, policy.minChunkSize ?? 0);
  let size = Math.max(policy.chunkSize, min);
  if (policy.maxChunkSize !== undefined && policy.maxChunkSize >= min) {
    size = Math.min(size, policy.maxChunkSize);
  }
  return size;
}

/**
 * A chunk sent: where it starts, how long it is, whether it is the last.
 *
 * @example
 * ```ts ignore
 * const chunk: ChunkSent = { offset: 0, length: 8388608, last: false };
 * ```
 */
export interface ChunkSent {
  /** The offset of its first byte. */
  offset: number;
  /** Its bytes (0 for a streamed body: no size rule applies). */
  length: number;
  /** Whether it ends the blob. */
  last: boolean;
}

/**
 * Whether a refused chunk may have broken a size rule not known yet (GHCR, ECR).
 *
 * @example
 * ```ts
 * import { sizeRuleMayApply, uploadPolicyFor } from "./upload_policy.ts";
 * const policy = uploadPolicyFor("r.example.com", {});
 * sizeRuleMayApply(policy, { offset: 0, length: 1024, last: false }); // true (ECR's minimum)
 * ```
 */
export function sizeRuleMayApply(policy: UploadPolicy, chunk: ChunkSent): boolean {
  return (chunk.length > GHCR_MAX_CHUNK && policy.maxChunkSize === undefined) ||
    (!chunk.last && chunk.length > 0 && chunk.length < ECR_MIN_CHUNK &&
      policy.minChunkSize === undefined);
}

/**
 * Learns the size rule a refused chunk broke (the session held everything before it)
 * into `policy`; returns a line saying what was learnt, or undefined.
 *
 * @example
 * ```ts ignore
 * const learnt = learnSizeRule(policy, refused);
 * if (learnt) log(learnt);
 * ```
 */
export function learnSizeRule(policy: UploadPolicy, chunk: ChunkSent): string | undefined {
  if (chunk.length > GHCR_MAX_CHUNK && policy.maxChunkSize === undefined) {
    policy.maxChunkSize = GHCR_MAX_CHUNK;
    return `a ${chunk.length}-byte chunk was refused; chunks are now at most 4 MiB`;
  }
  if (!chunk.last && chunk.length < ECR_MIN_CHUNK && policy.minChunkSize === undefined) {
    policy.minChunkSize = ECR_MIN_CHUNK;
    return `a ${chunk.length}-byte chunk was refused; chunks are now at least 5 MiB`;
  }
  return undefined;
}
