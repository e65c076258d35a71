/**
 * A space-map bitmap block: 2-bit reference counts for 16320 consecutive blocks.
 *
 * | offset | size       | field                        |
 * | ------ | ---------- | ---------------------------- |
 * | 0      | u32        | csum (bitmap salt)           |
 * | 4      | u32        | not used                     |
 * | 8      | u64        | blocknr                      |
 * | 16     | 4080 bytes | 16320 entries of 2 bits      |
 *
 * Entry `e` lives in byte `16 + e/4`, in the bit pair starting at `2 * (e % 4)`; the lower
 * bit of the pair holds the high bit of the value. 0 = free, 1 and 2 = that count, 3 = three
 * or more (the exact count is in the ref-count tree).
 */

import { CSUM_XOR, METADATA_BLOCK_SIZE } from '../checksum.js';
import { type BlockValidator, checksummedValidator } from '../validator.js';

export const BITMAP = { csum: 0, notUsed: 4, blocknr: 8, entries: 16 } as const;
export const BITMAP_PAYLOAD_BYTES = METADATA_BLOCK_SIZE - BITMAP.entries;
export const ENTRIES_PER_BITMAP = BITMAP_PAYLOAD_BYTES * 4;
/** Bitmap entry value meaning "three or more: see the ref-count tree". */
export const OVERFLOW_ENTRY = 3;

/** Entry `e` of a payload (the entries area of a bitmap, `payload[0]` = byte 16). */
export function getEntry(payload: Uint8Array, e: number): number {
  const byte = payload[e >>> 2] as number;
  const p = (e & 3) << 1;
  return (((byte >>> p) & 1) << 1) | ((byte >>> (p + 1)) & 1);
}

export function setEntry(payload: Uint8Array, e: number, value: number): void {
  const i = e >>> 2;
  const p = (e & 3) << 1;
  const cleared = (payload[i] as number) & ~(3 << p);
  payload[i] = cleared | (((value >>> 1) & 1) << p) | ((value & 1) << (p + 1));
}

/** The first entry in [from, to) whose value is 0, or -1. */
export function findFreeEntry(payload: Uint8Array, from: number, to: number): number {
  let e = from;
  while (e < to) {
    if ((e & 3) === 0) {
      // Skip whole bytes with four allocated entries: every pair has at least one bit set.
      const byte = payload[e >>> 2] as number;
      if (((byte | (byte >>> 1)) & 0x55) === 0x55 && e + 4 <= to) {
        e += 4;
        continue;
      }
    }
    if (getEntry(payload, e) === 0) return e;
    e++;
  }
  return -1;
}

/** The entries area of a bitmap block. */
export function bitmapPayload(block: Buffer): Buffer {
  return block.subarray(BITMAP.entries, METADATA_BLOCK_SIZE);
}

export const bitmapValidator: BlockValidator = checksummedValidator(
  'space map bitmap',
  CSUM_XOR.bitmap,
);
