/**
 * Cross-repository blob mount: `POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<other>`.
 * 201 means the blob is now in `repo`; 202 means the registry opened an ordinary
 * upload session instead, which the caller uses or cancels.
 *
 * @module
 */

import { checkDigest } from "../oci/digest.ts";
import { checkRepository } from "./endpoint.ts";
import { errorFromResponse } from "./errors.ts";
import type { RegistryHttp } from "./registry_http.ts";
import { sessionOf, type UploadSession } from "./upload_session.ts";

/**
 * The outcome of a mount: done, or an upload session the registry opened instead.
 *
 * @example
 * ```ts ignore
 * const result: MountResult = await mountBlob(http, "app", digest, "base");
 * if (result.mounted) console.log("mounted");
 * ```
 */
export type MountResult =
  | { mounted: true }
  | { mounted: false; session?: UploadSession };

/**
 * Asks the registry to mount a blob of repository `from` into `repo`. A push token
 * for `repo` and a pull token for `from` are asked for together.
 *
 * @example
 * ```ts ignore
 * import { mountBlob } from "./mount.ts";
 * const result = await mountBlob(http, "owner/app", "sha256:…", "owner/base");
 * if (!result.mounted && result.session) {
 *   // upload into result.session, or cancel it
 * }
 * ```
 */
export async function mountBlob(
  http: RegistryHttp,
  repo: string,
  digest: string,
  from: string,
  signal?: AbortSignal,
): Promise<MountResult> {
  checkRepository(repo);
  checkRepository(from);
  const operation = `mount blob ${digest} from ${http.host}/${from} into ${repo}`;
  checkDigest(digest, operation);
  const res = await http.send({
    method: "POST",
    url: `v2/${repo}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${
      encodeURIComponent(from)
    }`,
    body: new Uint8Array(0),
    scopes: [`repository:${repo}:pull,push`, `repository:${from}:pull`],
    operation,
    retry: true,
    signal,
  });
  if (res.status === 201) {
    await res.discard();
    return { mounted: true };
  }
  if (res.status === 202) {
    await res.discard();
    return { mounted: false, session: sessionOf(res, operation) };
  }
  throw await errorFromResponse(res.toResponse(), operation, "blob");
}
