/**
 * Little-endian 64-bit fields as JavaScript numbers. On-disk u64 values are read as two
 * u32 halves; a value above Number.MAX_SAFE_INTEGER cannot be represented exactly and is
 * reported, never rounded.
 */

import { MetadataCorruptError } from './errors.js';

const TWO_32 = 2 ** 32;

/**
 * Reads a little-endian u64 at `offset`. On-disk values above 2^53 - 1 are never written by
 * a sound writer, so one is reported as damaged metadata.
 */
export function readU64LE(buf: Uint8Array, offset: number): number {
  const b = buf as Buffer;
  const lo = b.readUInt32LE(offset);
  const hi = b.readUInt32LE(offset + 4);
  if (hi > 0x1fffff) {
    throw new MetadataCorruptError(
      'metadata field',
      undefined,
      `the 64-bit value at byte ${offset} of its structure is beyond 2^53`,
    );
  }
  return hi * TWO_32 + lo;
}

/** Writes `value` (a safe non-negative integer) as a little-endian u64 at `offset`. */
export function writeU64LE(buf: Uint8Array, offset: number, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`not a u64 that fits a safe integer: ${value}`);
  }
  const b = buf as Buffer;
  b.writeUInt32LE(value % TWO_32, offset);
  b.writeUInt32LE(Math.floor(value / TWO_32), offset + 4);
}
