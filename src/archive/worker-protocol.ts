/**
 * The contract between the archive API (parent) and the archive worker (child process).
 *
 *   node [--import tsx] worker.{js,ts} '<Request as JSON>'
 *
 *   fd 0  apply: the layer tar (any other op: ignored)
 *   fd 1  export: the tar of the changes (any other op: nothing)
 *   fd 2  free text, kept by the parent for the message of a crash
 *   fd 3  exactly one JSON line, `Reply`, written after fd 1 is finished
 *
 * A worker that exits without a reply crashed: the parent reports an InternalError with
 * its exit status and the end of its stderr.
 */

import type { WireError } from './errors.js';

export type Request =
  | { op: 'apply'; root: string }
  | { op: 'export'; root: string; parent?: string }
  | { op: 'changes'; root: string; parent?: string }
  | { op: 'size'; root: string; parent?: string };

/** The path of a change as text (UTF-8), and its kind (0 modify, 1 add, 2 delete). */
export interface WireChange {
  path: string;
  kind: 0 | 1 | 2;
}

export type Reply =
  | { ok: true; size?: number; warnings?: string[]; changes?: WireChange[] }
  | { ok: false; error: WireError };

/** The file descriptor of the reply. */
export const REPLY_FD = 3;
