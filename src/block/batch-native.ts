/**
 * The addon thinp_batch (native/write-batch.c): several positional writes to one file as
 * one piece of libuv threadpool work, so a batch pays one thread wake-up and one completion
 * on the event loop instead of one each. Loading never throws: without the addon
 * `writeBatch` is undefined and every write goes through the FileHandle on its own.
 */

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * Writes each of `buffers` whole at the matching offset, in order, on a threadpool thread;
 * `callback` gets, per write, the bytes written or a negated errno. The caller keeps the
 * buffers alive until then. Throws a TypeError for bad arguments.
 *
 * With `align` (a power of two up to 1 MiB): `fd` is open with O_DIRECT and every offset
 * and length is a multiple of `align`, while the memory need not be aligned. The writes
 * are then taken in order of offset, neighbours merged into runs of up to 1 MiB, each run
 * copied into the thread's aligned buffer and written with one pwrite; each write gets its
 * run's result.
 */
export type WriteBatch = (
  fd: number,
  buffers: Uint8Array[],
  offsets: number[],
  callback: (results: number[]) => void,
  align?: number,
) => void;

// src/block/batch-native.ts under tsx and dist/block/batch-native.js after the build both
// sit two levels below the package root.
const addonPath = fileURLToPath(new URL('../../build/Release/thinp_batch.node', import.meta.url));

function load(): WriteBatch | undefined {
  try {
    const binding = createRequire(import.meta.url)(addonPath) as { writeBatch?: unknown } | null;
    return typeof binding?.writeBatch === 'function'
      ? (binding.writeBatch as WriteBatch)
      : undefined;
  } catch {
    return undefined;
  }
}

/** The addon's `writeBatch`, or undefined when it is not built. */
export const writeBatch: WriteBatch | undefined = load();
