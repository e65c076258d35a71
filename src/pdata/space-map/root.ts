/**
 * A space map's root, as stored in the superblock (the first 32 of 128 bytes).
 *
 * | offset | size | field          |
 * | ------ | ---- | -------------- |
 * | 0      | u64  | nr_blocks      |
 * | 8      | u64  | nr_allocated   |
 * | 16     | u64  | bitmap_root    |
 * | 24     | u64  | ref_count_root |
 *
 * `bitmap_root` is the index btree's root for the data map and the index block's location
 * for the metadata map.
 */

import { readU64LE, writeU64LE } from '../../util/index.js';

export const SM_ROOT = { nrBlocks: 0, nrAllocated: 8, bitmapRoot: 16, refCountRoot: 24 } as const;
/** Bytes the superblock reserves for each space map root. */
export const SM_ROOT_AREA = 128;

export interface SpaceMapRoot {
  nrBlocks: number;
  nrAllocated: number;
  bitmapRoot: number;
  refCountRoot: number;
}

export function decodeSpaceMapRoot(buf: Buffer, at: number): SpaceMapRoot {
  return {
    nrBlocks: readU64LE(buf, at + SM_ROOT.nrBlocks),
    nrAllocated: readU64LE(buf, at + SM_ROOT.nrAllocated),
    bitmapRoot: readU64LE(buf, at + SM_ROOT.bitmapRoot),
    refCountRoot: readU64LE(buf, at + SM_ROOT.refCountRoot),
  };
}

/** Writes the root and zeroes the rest of its 128-byte area. */
export function encodeSpaceMapRoot(root: SpaceMapRoot, buf: Buffer, at: number): void {
  buf.fill(0, at, at + SM_ROOT_AREA);
  writeU64LE(buf, at + SM_ROOT.nrBlocks, root.nrBlocks);
  writeU64LE(buf, at + SM_ROOT.nrAllocated, root.nrAllocated);
  writeU64LE(buf, at + SM_ROOT.bitmapRoot, root.bitmapRoot);
  writeU64LE(buf, at + SM_ROOT.refCountRoot, root.refCountRoot);
}
