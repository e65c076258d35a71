/**
 * A mapping value: `(data_block << 24) | time` as a little-endian u64 — 40 bits of data
 * block, 24 bits of pool time. Unpacked on the two u32 halves: 32-bit operators cannot hold
 * the whole value.
 */

/** Pool and mapping times stay below this. */
export const TIME_LIMIT = 2 ** 24;
/** Data block numbers stay below this. */
export const DATA_BLOCK_LIMIT = 2 ** 40;

export interface BlockTime {
  dataBlock: number;
  time: number;
}

export function decodeBlockTime(buf: Buffer, at = 0): BlockTime {
  const lo = buf.readUInt32LE(at);
  const hi = buf.readUInt32LE(at + 4);
  return { dataBlock: hi * 2 ** 8 + (lo >>> 24), time: lo & 0xffffff };
}

/** The data block of a value given as its low and high u32 words. */
export function dataBlockOfWords(lo: number, hi: number): number {
  return hi * 2 ** 8 + (lo >>> 24);
}

/** The time of a value given its low u32 word. */
export function timeOfWord(lo: number): number {
  return lo & 0xffffff;
}

/** The data block of the value at `at`, without building an object (for tight loops). */
export function blockTimeDataBlock(buf: Buffer, at: number): number {
  return buf.readUInt32LE(at + 4) * 2 ** 8 + (buf.readUInt32LE(at) >>> 24);
}

/** The time of the value at `at`, without building an object (for tight loops). */
export function blockTimeTime(buf: Buffer, at: number): number {
  return buf.readUInt32LE(at) & 0xffffff;
}

export function encodeBlockTime(v: BlockTime, buf: Buffer = Buffer.alloc(8), at = 0): Buffer {
  if (v.dataBlock >= DATA_BLOCK_LIMIT || v.time >= TIME_LIMIT) {
    throw new RangeError(`mapping out of range: data block ${v.dataBlock}, time ${v.time}`);
  }
  const lowByte = v.dataBlock % 256;
  buf.writeUInt32LE(((lowByte << 24) | v.time) >>> 0, at);
  buf.writeUInt32LE(Math.floor(v.dataBlock / 256), at + 4);
  return buf;
}
