/**
 * Resuming uploads: a session an earlier process saved is asked where it stands and
 * taken over ({@linkcode reopenSaved}), and after a failure the session's status says
 * where the upload goes on ({@linkcode resumePoint}).
 *
 * @module
 */

import { RegistryConnectionError } from "./errors.ts";
import type { RegistryHttp } from "./registry_http.ts";
import type { ChunkSent } from "./upload_policy.ts";
import {
  cancelSession,
  type SessionStatus,
  sessionStatus,
  type UploadSession,
} from "./upload_session.ts";

/**
 * How an upload is saved for, and resumed by, a later process (see
 * `UploadOptions.resume` in ./upload.ts).
 *
 * @example
 * ```ts ignore
 * const resume: UploadResume = {
 *   saved: { location: "http://127.0.0.1:5000/v2/app/blobs/uploads/x?_state=y", offset: 8388608 },
 *   save: async (state) => await records.save(key, state),
 *   forget: async () => await records.remove(key),
 *   onResume: (offset) => console.log(`resuming at ${offset} bytes`),
 * };
 * ```
 */
export interface UploadResume {
  /** The session an earlier process left: its newest location and the bytes acknowledged. */
  saved?: { location: string; offset: number };
  /** Saves the session after every acknowledged chunk. */
  save(state: { location: string; offset: number }): Promise<void>;
  /** Forgets the saved session: the blob was committed, or the session cancelled or lost. */
  forget(): Promise<void>;
  /** Told the offset a saved session is resumed at (the bytes before it are not sent). */
  onResume?: (offset: number) => void;
}

/**
 * A saved session taken over: the session, and the bytes it holds (0: it holds none, the
 * upload starts at the beginning in it).
 *
 * @example
 * ```ts ignore
 * const reopened: ReopenedSession = { session: { location }, offset: 8388608 };
 * ```
 */
export interface ReopenedSession {
  /** The session, at its newest location. */
  session: UploadSession;
  /** The bytes it holds: the upload continues from there. */
  offset: number;
}

/**
 * Asks where the session an earlier process saved stands. Returns it with the offset to
 * continue from, or undefined to start fresh (the record is forgotten when the session
 * cannot be used: a bad or foreign location, unknown to the registry, holding more than
 * the source). An unreachable registry or an abort throws, keeping the record.
 *
 * @example
 * ```ts ignore
 * const reopened = await reopenSaved(http, "app", resume, { size, operation, log });
 * if (reopened) console.log(`continuing at ${reopened.offset}`);
 * ```
 */
export async function reopenSaved(
  http: RegistryHttp,
  repo: string,
  resume: UploadResume,
  context: {
    /** The source's size, when known. */
    size?: number;
    /** Names the upload in logs and errors. */
    operation: string;
    /** Cancels the request. */
    signal?: AbortSignal;
    /** Writes a line of the debug log. */
    log: (line: string) => void;
  },
): Promise<ReopenedSession | undefined> {
  const { size, operation, signal, log } = context;
  const saved = resume.saved;
  if (!saved) return undefined;
  let location: URL;
  try {
    location = new URL(saved.location);
  } catch {
    await resume.forget();
    return undefined;
  }
  if (location.origin !== http.base.origin) {
    // Never send anything to another origin (or scheme) on the word of a file.
    await resume.forget();
    return undefined;
  }
  let status;
  try {
    status = await sessionStatus(http, repo, location, operation, signal);
  } catch (e) {
    // Unreachable registry, or an abort: the record stays for the next run.
    if (signal?.aborted || e instanceof RegistryConnectionError) throw e;
    log(`the saved session cannot be asked (${(e as Error).message}); starting fresh`);
    await resume.forget();
    return undefined;
  }
  if (status.state === "gone" || (size !== undefined && status.offset > size)) {
    log(`the saved session (${saved.offset} bytes) is no longer usable; starting fresh`);
    if (status.state === "open") await cancelSession(http, repo, location, operation);
    await resume.forget();
    return undefined;
  }
  const session = { location: status.location };
  if (status.offset === 0) return { session, offset: 0 };
  log(`resuming at ${status.offset} bytes (saved: ${saved.offset}); recomputing them locally`);
  resume.onResume?.(status.offset);
  return { session, offset: status.offset };
}

/**
 * Where an upload goes on after a failure, given where its session stands: in chunks
 * from the offset it holds (with the refused chunk when the session holds exactly what
 * came before it: its size broke a rule of the registry), or in a new session when the
 * registry no longer knows this one or it holds more than was sent (the source is not
 * what was read).
 *
 * @example
 * ```ts
 * import { resumePoint } from "./upload_resume.ts";
 * const location = new URL("http://127.0.0.1:5000/v2/app/blobs/uploads/x");
 * resumePoint({ state: "open", offset: 1024, location }, 2048, 1024);
 * // { next: "chunks", from: 1024 }
 * ```
 */
export function resumePoint(
  status: SessionStatus,
  sent: number,
  confirmed: number,
  refused?: ChunkSent,
):
  | { next: "chunks"; from: number; refusedForSize?: ChunkSent }
  | { next: "new-session"; reason: string } {
  if (status.state === "gone") {
    return { next: "new-session", reason: "the registry no longer knows the session" };
  }
  if (status.offset > sent && status.offset > confirmed) {
    return {
      next: "new-session",
      reason: `the session holds ${status.offset} bytes, more than were sent`,
    };
  }
  return refused && status.offset === refused.offset
    ? { next: "chunks", from: status.offset, refusedForSize: refused }
    : { next: "chunks", from: status.offset };
}
