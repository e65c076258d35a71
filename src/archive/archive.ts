/**
 * The archive layer's public operations. Each runs its directory work in a worker process
 * (worker.ts): the caller's process only moves bytes through pipes, so it may be the daemon
 * that serves the very devices these directories are mounted from.
 */

import type { ChildProcess } from 'node:child_process';
import { PassThrough, type Readable } from 'node:stream';
import type { ApplyResult } from './apply.js';
import type { ChangeKind } from './changes.js';
import { startWorker } from './worker-client.js';

export type { ApplyResult } from './apply.js';

export interface Change {
  /** Absolute within the layer, e.g. "/etc/passwd" (file names as UTF-8 text). */
  path: string;
  kind: ChangeKind;
}

export interface ApplyOptions {
  /** Called as the tar is read, with the bytes of the input consumed so far. */
  onProgress?: (bytesRead: number) => void;
}

/**
 * Applies a layer tar (uncompressed, or gzip, which is recognised and decompressed) to the
 * directory `root` with Docker's whiteout semantics. Refuses an entry that would reach
 * outside the root with an UnsafeEntryError, and a damaged tar with a BadArchiveError;
 * then the root is left half applied (apply into a fresh directory and discard it on
 * failure). The caller's stream is read to its end on success and left paused on failure.
 */
export async function applyLayer(
  root: string,
  tar: NodeJS.ReadableStream,
  options: ApplyOptions = {},
): Promise<ApplyResult> {
  const worker = startWorker({ op: 'apply', root }, { input: true, output: false });
  const feeding = feed(tar, worker.child, options.onProgress);
  try {
    await Promise.race([feeding.done, worker.reply]);
    const { size = 0, warnings = [] } = await worker.reply;
    return { size, warnings };
  } catch (err) {
    if (feeding.failed) worker.child.kill('SIGKILL');
    await worker.reply.catch(() => undefined);
    throw err;
  } finally {
    feeding.stop();
  }
}

/** Copies `tar` to the worker's stdin with backpressure, counting bytes. */
function feed(
  tar: NodeJS.ReadableStream,
  child: ChildProcess,
  onProgress?: (bytes: number) => void,
) {
  const stdin = child.stdin as NodeJS.WritableStream & { on(e: 'error', f: () => void): void };
  stdin.on('error', () => undefined); // EPIPE when the worker gives up: its reply says why
  let total = 0;
  let stopped = false;
  const state = { failed: false, stop: (): void => undefined, done: Promise.resolve() };
  state.done = new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer | string) => {
      total += chunk.length;
      onProgress?.(total);
      if (!stdin.write(chunk)) {
        tar.pause();
        stdin.once('drain', () => {
          if (!stopped) tar.resume();
        });
      }
    };
    const onEnd = () => {
      stdin.end();
      resolve();
    };
    const onError = (err: Error) => {
      state.failed = true;
      reject(err);
    };
    state.stop = () => {
      stopped = true;
      tar.off('data', onData);
      tar.off('end', onEnd);
      tar.off('error', onError);
      tar.pause();
    };
    tar.on('data', onData);
    tar.once('end', onEnd);
    tar.once('error', onError);
  });
  // Observed by applyLayer's race; this keeps a late failure from going unhandled.
  state.done.catch(() => undefined);
  return state;
}

/**
 * The tar of `root`'s changes against `parentRoot` (every path when undefined), with
 * `.wh.` whiteouts for deletions, sorted by path. Errors (a missing root...) are emitted on
 * the stream; they come before any byte when they concern the roots. Destroying the stream
 * stops the worker.
 */
export function exportDiff(root: string, parentRoot: string | undefined): Readable {
  const worker = startWorker(
    { op: 'export', root, parent: parentRoot },
    { input: false, output: true },
  );
  const out = new PassThrough();
  worker.child.stdout?.pipe(out, { end: false });
  worker.reply.then(
    () => out.end(),
    (err: Error) => out.destroy(err),
  );
  out.on('close', () => {
    if (worker.child.exitCode === null && worker.child.signalCode === null)
      worker.child.kill('SIGKILL');
  });
  return out;
}

/** Docker's ChangesDirs: added, modified and deleted paths, sorted by path. */
export async function listChanges(root: string, parentRoot: string | undefined): Promise<Change[]> {
  const worker = startWorker(
    { op: 'changes', root, parent: parentRoot },
    { input: false, output: false },
  );
  return (await worker.reply).changes ?? [];
}

/** Docker's ChangesSize: bytes of added and modified non-directories, hard links once. */
export async function diffSize(root: string, parentRoot: string | undefined): Promise<number> {
  const worker = startWorker(
    { op: 'size', root, parent: parentRoot },
    { input: false, output: false },
  );
  return (await worker.reply).size ?? 0;
}
