/**
 * A space-map index entry (16 bytes): where a bitmap lives and how full it is.
 *
 * | offset | size | field            |
 * | ------ | ---- | ---------------- |
 * | 0      | u64  | blocknr          |
 * | 8      | u32  | nr_free          |
 * | 12     | u32  | none_free_before |
 *
 * `nr_free` and `none_free_before` are hints: the kernel keeps `nr_free` as 16320 minus the
 * allocated entries, the 0.9.0 tools count only entries below the map's size; readers accept
 * both and use the value only to skip full bitmaps.
 */

import { readU64LE, writeU64LE } from '../../util/index.js';

export const INDEX_ENTRY = { blocknr: 0, nrFree: 8, noneFreeBefore: 12 } as const;
export const INDEX_ENTRY_SIZE = 16;

export interface IndexEntry {
  blocknr: number;
  nrFree: number;
  noneFreeBefore: number;
}

export function decodeIndexEntry(buf: Buffer, at = 0): IndexEntry {
  return {
    blocknr: readU64LE(buf, at + INDEX_ENTRY.blocknr),
    nrFree: buf.readUInt32LE(at + INDEX_ENTRY.nrFree),
    noneFreeBefore: buf.readUInt32LE(at + INDEX_ENTRY.noneFreeBefore),
  };
}

export function encodeIndexEntry(entry: IndexEntry, buf: Buffer, at = 0): void {
  writeU64LE(buf, at + INDEX_ENTRY.blocknr, entry.blocknr);
  buf.writeUInt32LE(entry.nrFree, at + INDEX_ENTRY.nrFree);
  buf.writeUInt32LE(entry.noneFreeBefore, at + INDEX_ENTRY.noneFreeBefore);
}
