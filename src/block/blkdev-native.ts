/**
 * The block-device addon (native/blkdev.c, target thinp_blkdev in binding.gyp, built by
 * node-gyp into build/Release when npm installs the package): the size of a block device
 * and the ioctls that discard or zero a range of it. Loading never throws: when the addon is
 * missing or broken, `blkdevNative` is undefined and `blkdevStatus()` says why; direct mode
 * then refuses to open a block device, naming the reason.
 */

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** The operations `blockOp` runs; the numbers are the addon's. */
export const BLOCK_OP = { discard: 0, zeroOut: 1, punch: 2 } as const;
export type BlockOp = keyof typeof BLOCK_OP;

interface Binding {
  sizeOf(fd: number): number;
  sectorSize(fd: number): number;
  blockOp(
    op: number,
    fd: number,
    offset: number,
    length: number,
    callback: (err: NodeJS.ErrnoException | null) => void,
  ): void;
}

/** What the addon gives, promisified. */
export interface BlkdevNative {
  /** BLKGETSIZE64: the device's size in bytes. Throws the errno error. */
  sizeOf(fd: number): number;
  /** BLKSSZGET: the logical sector size in bytes. Throws the errno error. */
  sectorSize(fd: number): number;
  /**
   * On the threadpool: `discard` (BLKDISCARD), `zeroOut` (BLKZEROOUT) or `punch`
   * (fallocate PUNCH_HOLE on the device: zeros by unmapping, EOPNOTSUPP where the device
   * cannot). Offset and length must be multiples of 512; rejects with the errno error.
   */
  blockOp(op: BlockOp, fd: number, offset: number, length: number): Promise<void>;
}

export interface BlkdevStatus {
  available: boolean;
  reason?: string;
}

// src/block/blkdev-native.ts under tsx and dist/block/blkdev-native.js after the build both
// sit two levels below the package root.
const addonPath = fileURLToPath(new URL('../../build/Release/thinp_blkdev.node', import.meta.url));

function load(): { native?: BlkdevNative; status: BlkdevStatus } {
  try {
    const binding = createRequire(import.meta.url)(addonPath) as Partial<Binding> | null;
    if (typeof binding?.blockOp !== 'function' || typeof binding.sizeOf !== 'function') {
      return { status: { available: false, reason: `${addonPath} exports no blockOp or sizeOf` } };
    }
    return { native: wrap(binding as Binding), status: { available: true } };
  } catch (err) {
    const reason = `cannot load ${addonPath}: ${err instanceof Error ? err.message : String(err)}`;
    return { status: { available: false, reason: `${reason} (run npm install to build it)` } };
  }
}

function wrap(binding: Binding): BlkdevNative {
  return {
    sizeOf: (fd) => binding.sizeOf(fd),
    sectorSize: (fd) => binding.sectorSize(fd),
    blockOp: (op, fd, offset, length) =>
      new Promise<void>((resolve, reject) => {
        binding.blockOp(BLOCK_OP[op], fd, offset, length, (err) =>
          err === null ? resolve() : reject(err),
        );
      }),
  };
}

const loaded = load();

/** The addon, or undefined when it did not load (`blkdevStatus()` says why). */
export const blkdevNative: BlkdevNative | undefined = loaded.native;

export function blkdevStatus(): BlkdevStatus {
  return { ...loaded.status };
}
