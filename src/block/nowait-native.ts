/**
 * The addon thinp_nowait (native/nowait-io.c): positional reads and writes with
 * RWF_NOWAIT, which the kernel carries out only when it can without waiting for the disk
 * (data in the page cache, nothing locked). Such a call costs about a microsecond on the
 * event loop, against several for a round trip through the libuv threadpool, and never
 * blocks: where the kernel would wait it refuses at once (EAGAIN), and the caller goes
 * through the threadpool as before. This is what keeps "no blocking fs calls on the event
 * loop" true while cached reads skip the threadpool.
 *
 * It also gives the kernel the data path's readahead advice (`adviseRandom`).
 *
 * Loading never throws: without the addon `nowaitIo` is undefined and every transfer goes
 * through the threadpool.
 */

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * Both return the bytes transferred (fewer than asked, or 0 at the end of the file, are
 * possible), or a negated errno (-EAGAIN: it would have waited; -EOPNOTSUPP: the kernel
 * or filesystem offers no RWF_NOWAIT for it; anything else: a failure the threadpool path
 * will report in full). They throw a TypeError for bad arguments.
 */
export interface NowaitIo {
  readNowait(fd: number, buffer: Uint8Array, offset: number): number;
  writeNowait(fd: number, buffer: Uint8Array, offset: number): number;
  /**
   * posix_fadvise(POSIX_FADV_RANDOM) on `fd`: no readahead for reads through this open file
   * description. 0, or a negated errno.
   */
  adviseRandom(fd: number): number;
}

// src/block/nowait-native.ts under tsx and dist/block/nowait-native.js after the build both
// sit two levels below the package root.
const addonPath = fileURLToPath(new URL('../../build/Release/thinp_nowait.node', import.meta.url));

function load(): NowaitIo | undefined {
  try {
    const binding = createRequire(import.meta.url)(addonPath) as Partial<NowaitIo> | null;
    if (
      typeof binding?.readNowait !== 'function' ||
      typeof binding.writeNowait !== 'function' ||
      typeof binding.adviseRandom !== 'function'
    ) {
      return undefined;
    }
    return binding as NowaitIo;
  } catch {
    return undefined;
  }
}

/** The addon, or undefined when it is not built. */
export const nowaitIo: NowaitIo | undefined = load();
