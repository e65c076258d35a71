/**
 * The btree node, one metadata block:
 *
 * | offset            | size                  | field                               |
 * | ----------------- | --------------------- | ----------------------------------- |
 * | 0                 | u32                   | csum (btree node salt)              |
 * | 4                 | u32                   | flags: 1 = INTERNAL, 2 = LEAF       |
 * | 8                 | u64                   | blocknr                             |
 * | 16                | u32                   | nr_entries                          |
 * | 20                | u32                   | max_entries                         |
 * | 24                | u32                   | value_size                          |
 * | 28                | u32                   | padding                             |
 * | 32                | 8 * max_entries       | keys (u64)                          |
 * | 32 + 8 * max      | value_size * max      | values                              |
 *
 * `Node` is a view over such a block; it never copies the buffer.
 */

import { MetadataCorruptError, readU64LE, writeU64LE } from '../../util/index.js';
import { CSUM_XOR, METADATA_BLOCK_SIZE } from '../checksum.js';
import { type BlockValidator, checksummedValidator } from '../validator.js';

export const NODE = {
  csum: 0,
  flags: 4,
  blocknr: 8,
  nrEntries: 16,
  maxEntries: 20,
  valueSize: 24,
  padding: 28,
  keys: 32,
} as const;

export const NODE_HEADER_SIZE = 32;
export const INTERNAL_NODE = 1;
export const LEAF_NODE = 2;
/** Internal nodes hold u64 child locations whatever their tree's leaves hold. */
export const INTERNAL_VALUE_SIZE = 8;

/** `3n` slots: the largest multiple of 3 entries that fits a block. */
export function maxEntriesFor(valueSize: number): number {
  const fit = Math.floor((METADATA_BLOCK_SIZE - NODE_HEADER_SIZE) / (8 + valueSize));
  return 3 * Math.floor(fit / 3);
}

export class Node {
  constructor(readonly buf: Buffer) {}

  get flags(): number {
    return this.buf.readUInt32LE(NODE.flags);
  }
  get isLeaf(): boolean {
    return this.flags === LEAF_NODE;
  }
  get nrEntries(): number {
    return this.buf.readUInt32LE(NODE.nrEntries);
  }
  set nrEntries(n: number) {
    this.buf.writeUInt32LE(n, NODE.nrEntries);
  }
  get maxEntries(): number {
    return this.buf.readUInt32LE(NODE.maxEntries);
  }
  get valueSize(): number {
    return this.buf.readUInt32LE(NODE.valueSize);
  }
  get location(): number {
    return readU64LE(this.buf, NODE.blocknr);
  }

  /** Writes a fresh, empty node header; everything after it is zeroed. */
  init(flags: number, valueSize: number): void {
    this.buf.fill(0, NODE.flags);
    this.buf.writeUInt32LE(flags, NODE.flags);
    this.buf.writeUInt32LE(0, NODE.nrEntries);
    this.buf.writeUInt32LE(maxEntriesFor(valueSize), NODE.maxEntries);
    this.buf.writeUInt32LE(valueSize, NODE.valueSize);
  }

  key(i: number): number {
    return readU64LE(this.buf, NODE.keys + 8 * i);
  }
  setKey(i: number, key: number): void {
    writeU64LE(this.buf, NODE.keys + 8 * i, key);
  }
  valueOffset(i: number): number {
    return NODE.keys + 8 * this.maxEntries + this.valueSize * i;
  }
  /** The bytes of value `i`: a view into the node, valid while the node is. */
  value(i: number): Buffer {
    const at = this.valueOffset(i);
    return this.buf.subarray(at, at + this.valueSize);
  }
  /** Value `i` read as a u64 (child location in internal nodes). */
  valueU64(i: number): number {
    return readU64LE(this.buf, this.valueOffset(i));
  }
  setValueU64(i: number, v: number): void {
    writeU64LE(this.buf, this.valueOffset(i), v);
  }
  setValue(i: number, value: Uint8Array): void {
    this.buf.set(value, this.valueOffset(i));
  }

  /**
   * Largest index with key <= k, or -1 when k is below every key. Compares the keys' high
   * and low words as stored, without building each key as a number (the hot loop of every
   * lookup).
   */
  lowerBound(k: number): number {
    const buf = this.buf;
    const kHigh = Math.floor(k / 2 ** 32);
    const kLow = k - kHigh * 2 ** 32;
    let lo = -1;
    let hi = buf.readUInt32LE(NODE.nrEntries);
    while (hi - lo > 1) {
      const mid = (lo + hi) >>> 1;
      const at = NODE.keys + 8 * mid;
      const high = buf.readUInt32LE(at + 4);
      if (high < kHigh || (high === kHigh && buf.readUInt32LE(at) <= kLow)) lo = mid;
      else hi = mid;
    }
    return lo;
  }

  /** Inserts (key, value) at `i`, shifting later entries up; the node must have room. */
  insertAt(i: number, key: number, value: Uint8Array): void {
    const n = this.nrEntries;
    this.shift(i, n, 1);
    this.nrEntries = n + 1;
    this.setKey(i, key);
    this.setValue(i, value);
  }

  /** Removes entry `i`, shifting later entries down, and zeroes the freed slot. */
  removeAt(i: number): void {
    const n = this.nrEntries;
    this.shift(i + 1, n, -1);
    this.nrEntries = n - 1;
    this.clearSlots(n - 1, n);
  }

  /** Moves entries [from, to) by `by` slots (within this node). */
  private shift(from: number, to: number, by: number): void {
    if (from >= to) return;
    const vs = this.valueSize;
    this.buf.copyWithin(NODE.keys + 8 * (from + by), NODE.keys + 8 * from, NODE.keys + 8 * to);
    const v0 = this.valueOffset(0);
    this.buf.copyWithin(v0 + vs * (from + by), v0 + vs * from, v0 + vs * to);
  }

  /** Zeroes the key and value slots [from, to). */
  clearSlots(from: number, to: number): void {
    if (from >= to) return;
    this.buf.fill(0, NODE.keys + 8 * from, NODE.keys + 8 * to);
    this.buf.fill(0, this.valueOffset(from), this.valueOffset(to));
  }

  /**
   * Copies `count` entries starting at `srcIndex` of `src` to `dstIndex` here. Both nodes
   * must have the same value size; the destination's entry count is not changed.
   */
  copyEntries(dstIndex: number, src: Node, srcIndex: number, count: number): void {
    if (count <= 0) return;
    this.buf.set(
      src.buf.subarray(NODE.keys + 8 * srcIndex, NODE.keys + 8 * (srcIndex + count)),
      NODE.keys + 8 * dstIndex,
    );
    this.buf.set(
      src.buf.subarray(src.valueOffset(srcIndex), src.valueOffset(srcIndex + count)),
      this.valueOffset(dstIndex),
    );
  }

  /** Shifts all entries right by `count` slots to make room at the front. */
  openFront(count: number): void {
    this.shift(0, this.nrEntries, count);
  }

  /** Drops the first `count` entries, moving the rest to the front. */
  dropFront(count: number): void {
    const n = this.nrEntries;
    this.shift(count, n, -count);
    this.nrEntries = n - count;
    this.clearSlots(n - count, n);
  }
}

/** Structural checks the kernel and thin_check make on every node read. */
export function checkNodeStructure(buf: Buffer, location: number): void {
  const fail = (problem: string): never => {
    throw new MetadataCorruptError('btree node', location, problem);
  };
  const node = new Node(buf);
  const flags = node.flags;
  if (flags === (INTERNAL_NODE | LEAF_NODE)) fail('the node is both internal and leaf');
  if (flags !== INTERNAL_NODE && flags !== LEAF_NODE) fail(`unknown node type (flags ${flags})`);
  const { maxEntries, valueSize, nrEntries } = node;
  if (NODE_HEADER_SIZE + (8 + valueSize) * maxEntries > METADATA_BLOCK_SIZE) {
    fail(`max entries too large: ${maxEntries} entries of ${valueSize}-byte values`);
  }
  if (maxEntries % 3 !== 0) fail(`max entries is not divisible by 3: ${maxEntries}`);
  if (nrEntries > maxEntries) fail(`bad nr_entries: ${nrEntries} > max_entries ${maxEntries}`);
  if (flags === INTERNAL_NODE && valueSize !== INTERNAL_VALUE_SIZE) {
    fail(`value size mismatch: an internal node holds 8-byte values, not ${valueSize}`);
  }
  const words = u32Words(buf);
  let previous = -1;
  for (let i = 0; i < nrEntries; i++) {
    const w = (NODE.keys >> 2) + 2 * i;
    const hi = words === undefined ? buf.readUInt32LE(4 * w + 4) : (words[w + 1] as number);
    if (hi > U53_HIGH) fail(`key ${i} is beyond 2^53`);
    const lo = words === undefined ? buf.readUInt32LE(4 * w) : (words[w] as number);
    const k = hi * 2 ** 32 + lo;
    if (k <= previous) fail(`keys are out of order, ${k} <= ${previous}`);
    previous = k;
  }
}

/** The high word of a u64 above this is beyond 2^53. */
const U53_HIGH = 0x1fffff;
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * The block as little-endian u32 words, for loops over every key or value, or undefined
 * where that view is not possible (a big-endian host, a buffer not 4-byte aligned).
 */
export function u32Words(buf: Buffer): Uint32Array | undefined {
  if (!LITTLE_ENDIAN || buf.byteOffset % 4 !== 0) return undefined;
  return new Uint32Array(buf.buffer, buf.byteOffset, buf.length >> 2);
}

/** The validator of every btree node: checksum, location and node structure. */
export const btreeNodeValidator: BlockValidator = checksummedValidator(
  'btree node',
  CSUM_XOR.btreeNode,
  checkNodeStructure,
);
