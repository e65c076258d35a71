/**
 * The metadata space map's single index block: up to 255 index entries.
 *
 * | offset | size     | field                        |
 * | ------ | -------- | ---------------------------- |
 * | 0      | u32      | csum (index salt)            |
 * | 4      | u32      | padding                      |
 * | 8      | u64      | blocknr                      |
 * | 16     | 255 * 16 | index entries of bitmaps 0.. |
 */

import { CSUM_XOR } from '../checksum.js';
import { type BlockValidator, checksummedValidator } from '../validator.js';
import { INDEX_ENTRY_SIZE } from './index-entry.js';

export const INDEX_BLOCK = { csum: 0, padding: 4, blocknr: 8, entries: 16 } as const;
/** One index block lists at most this many bitmaps: the metadata device's size limit. */
export const MAX_METADATA_BITMAPS = 255;

/** Offset of entry `j` in the index block. */
export function indexEntryOffset(j: number): number {
  return INDEX_BLOCK.entries + INDEX_ENTRY_SIZE * j;
}

export const indexBlockValidator: BlockValidator = checksummedValidator(
  'metadata space map index block',
  CSUM_XOR.index,
);
