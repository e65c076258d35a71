/**
 * The metadata space map: reference counts of the metadata device's own blocks, itself
 * stored on that device (index block, bitmaps, ref-count tree), so it describes itself.
 *
 * The counts are held in memory as one array in the bitmaps' own 2-bit layout (the
 * concatenation of every bitmap's entries), at most 255 × 4080 bytes, plus the exact counts
 * of blocks at three or more. Keeping them in memory breaks the recursion of a map that
 * allocates from itself: `prepareCommit` writes the changed bitmaps and the index block to
 * new locations, and repeats until those allocations change nothing more.
 *
 * Contracts:
 * - `newBlock` returns the lowest block that is free now and was free at the last commit,
 *   so a long-lived pool keeps its metadata at the front of a sparse metadata file.
 * - After `prepareCommit`, every bitmap and the index block that changed are dirty in the
 *   block manager with their final contents, and `root()` describes them.
 */

import { MetadataCorruptError, NoSpaceError } from '../../util/index.js';
import * as btree from '../btree/btree.js';
import { type BTreeInfo, plainValue } from '../btree/value-type.js';
import type { TransactionManager } from '../transaction-manager.js';
import {
  BITMAP_PAYLOAD_BYTES,
  bitmapPayload,
  bitmapValidator,
  ENTRIES_PER_BITMAP,
  getEntry,
  OVERFLOW_ENTRY,
  setEntry,
} from './bitmap.js';
import { indexBlockValidator, indexEntryOffset, MAX_METADATA_BITMAPS } from './index-block.js';
import { decodeIndexEntry, encodeIndexEntry } from './index-entry.js';
import type { SpaceMapRoot } from './root.js';
import type { MetadataAllocator } from './space-map.js';

/** The largest metadata device the format can describe, in blocks. */
export const MAX_METADATA_BLOCKS = MAX_METADATA_BITMAPS * ENTRIES_PER_BITMAP;

const NO_LOCATION = -1;

export class MetadataSpaceMap implements MetadataAllocator {
  private readonly tm: TransactionManager;
  private readonly refInfo: BTreeInfo;
  private nrBlocks: number;
  private counts: Uint8Array;
  private committed: Uint8Array;
  private readonly overflow = new Map<number, number>();
  private readonly overflowDirty = new Set<number>();
  private readonly dirtyBitmaps = new Set<number>();
  /** Blocks in use at the last commit and freed since: allocatable after the next commit. */
  private freedThisTransaction: number[] = [];
  private readonly movedBitmaps = new Set<number>();
  private bitmapLocs: number[];
  private allocatedIn: number[];
  private indexLoc: number;
  private indexMoved = false;
  private refRoot: number;
  private allocated: number;
  /** No block below this is allocatable: allocation takes the lowest free block. */
  private lowestFree = 0;

  private constructor(tm: TransactionManager, nrBlocks: number) {
    this.tm = tm;
    this.refInfo = { tm, valueType: plainValue(4) };
    this.nrBlocks = nrBlocks;
    const nb = bitmapsFor(nrBlocks);
    this.counts = new Uint8Array(nb * BITMAP_PAYLOAD_BYTES);
    this.committed = new Uint8Array(nb * BITMAP_PAYLOAD_BYTES);
    this.bitmapLocs = new Array(nb).fill(NO_LOCATION);
    this.allocatedIn = new Array(nb).fill(0);
    this.indexLoc = NO_LOCATION;
    this.refRoot = NO_LOCATION;
    this.allocated = 0;
  }

  /**
   * A new map for a device of `nrBlocks` blocks whose blocks `0 .. reserved-1` are in use
   * (the superblock). Its own structures are allocated at the first `prepareCommit`.
   */
  static async create(
    tm: TransactionManager,
    nrBlocks: number,
    reserved: number,
  ): Promise<MetadataSpaceMap> {
    const sm = new MetadataSpaceMap(tm, checkSize(nrBlocks));
    tm.attach(sm);
    for (let j = 0; j < sm.bitmapLocs.length; j++) sm.dirtyBitmaps.add(j);
    for (let b = 0; b < reserved; b++) sm.setCount(b, 1);
    sm.refRoot = await btree.emptyTree(sm.refInfo);
    return sm;
  }

  /** Opens the map described by `root` (from the superblock). */
  static async open(tm: TransactionManager, root: SpaceMapRoot): Promise<MetadataSpaceMap> {
    const sm = new MetadataSpaceMap(tm, checkSize(root.nrBlocks));
    tm.attach(sm);
    sm.indexLoc = root.bitmapRoot;
    sm.refRoot = root.refCountRoot;
    const index = await tm.read(root.bitmapRoot, indexBlockValidator);
    for (let j = 0; j < sm.bitmapLocs.length; j++) {
      const loc = decodeIndexEntry(index, indexEntryOffset(j)).blocknr;
      sm.bitmapLocs[j] = loc;
      const bitmap = await tm.read(loc, bitmapValidator);
      sm.counts.set(bitmapPayload(bitmap), j * BITMAP_PAYLOAD_BYTES);
    }
    sm.recount();
    await btree.walk(sm.refInfo, root.refCountRoot, (key, value) => {
      sm.overflow.set(key, value.readUInt32LE(0));
    });
    sm.checkOverflow();
    sm.committed.set(sm.counts);
    return sm;
  }

  get size(): number {
    return this.nrBlocks;
  }

  get nrAllocated(): number {
    return this.allocated;
  }

  count(block: number): number {
    this.checkBlock(block);
    const entry = getEntry(this.counts, block);
    if (entry < OVERFLOW_ENTRY) return entry;
    const exact = this.overflow.get(block);
    if (exact === undefined) {
      throw this.corrupt(
        block,
        'its bitmap entry says 3 or more, but the ref-count tree has no entry',
      );
    }
    return exact;
  }

  inc(block: number): void {
    this.setCount(block, this.count(block) + 1);
  }

  dec(block: number): void {
    const c = this.count(block);
    if (c === 0) throw this.corrupt(block, 'its reference count would go below zero');
    this.setCount(block, c - 1);
  }

  newBlock(): number {
    const found =
      this.findFree(this.lowestFree, this.nrBlocks) ?? this.findFree(0, this.lowestFree);
    if (found === undefined) {
      throw new NoSpaceError(
        'metadata',
        `the metadata device is full (${this.nrBlocks} blocks in use or freed in this transaction)`,
        { hint: "grow it with 'thinp pool resize --metadata-size'" },
      );
    }
    this.lowestFree = found + 1;
    this.setCount(found, 1);
    return found;
  }

  /** Grows the map to `nrBlocks`; new bitmaps get locations at the next commit. */
  extend(nrBlocks: number): void {
    checkSize(nrBlocks);
    if (nrBlocks <= this.nrBlocks) return;
    const nb = bitmapsFor(nrBlocks);
    const old = this.bitmapLocs.length;
    this.counts = grown(this.counts, nb * BITMAP_PAYLOAD_BYTES);
    this.committed = grown(this.committed, nb * BITMAP_PAYLOAD_BYTES);
    for (let j = old; j < nb; j++) {
      this.bitmapLocs.push(NO_LOCATION);
      this.allocatedIn.push(0);
      this.dirtyBitmaps.add(j);
    }
    if (old > 0) this.dirtyBitmaps.add(old - 1);
    this.nrBlocks = nrBlocks;
  }

  /** Writes the map's changes: ref-count tree, then bitmaps and index block, to a fixpoint. */
  async prepareCommit(): Promise<void> {
    for (const block of this.overflowDirty) {
      const exact = this.overflow.get(block);
      if (exact === undefined) {
        this.refRoot = (await btree.remove(this.refInfo, this.refRoot, block)).root;
      } else {
        const v = Buffer.alloc(4);
        v.writeUInt32LE(exact, 0);
        this.refRoot = (await btree.insert(this.refInfo, this.refRoot, block, v)).root;
      }
    }
    this.overflowDirty.clear();
    if (this.dirtyBitmaps.size === 0 && this.indexLoc !== NO_LOCATION) return;
    this.moveChangedBlocks();
    await this.writeBitmaps();
    await this.writeIndex();
  }

  /** Called once the superblock is written: this state is now the committed one. */
  committedNow(): void {
    for (const j of this.dirtyBitmaps) {
      const from = j * BITMAP_PAYLOAD_BYTES;
      this.committed.set(this.counts.subarray(from, from + BITMAP_PAYLOAD_BYTES), from);
    }
    this.dirtyBitmaps.clear();
    this.movedBitmaps.clear();
    this.indexMoved = false;
    for (const b of this.freedThisTransaction) this.lowestFree = Math.min(this.lowestFree, b);
    this.freedThisTransaction = [];
  }

  root(): SpaceMapRoot {
    return {
      nrBlocks: this.nrBlocks,
      nrAllocated: this.allocated,
      bitmapRoot: this.indexLoc,
      refCountRoot: this.refRoot,
    };
  }

  /** Gives every changed bitmap and the index block a new location, until nothing moves. */
  private moveChangedBlocks(): void {
    for (let moved = true; moved; ) {
      moved = false;
      for (const j of this.dirtyBitmaps) {
        if (this.movedBitmaps.has(j)) continue;
        this.movedBitmaps.add(j);
        this.bitmapLocs[j] = this.relocate(this.bitmapLocs[j] ?? NO_LOCATION);
        moved = true;
      }
      if (!this.indexMoved) {
        this.indexMoved = true;
        this.indexLoc = this.relocate(this.indexLoc);
        moved = true;
      }
    }
  }

  private relocate(old: number): number {
    const loc = this.newBlock();
    if (old !== NO_LOCATION) this.dec(old);
    return loc;
  }

  private async writeBitmaps(): Promise<void> {
    for (const j of this.movedBitmaps) {
      const buf = await this.tm.bm.create(this.bitmapLocs[j] as number, bitmapValidator);
      const from = j * BITMAP_PAYLOAD_BYTES;
      bitmapPayload(buf).set(this.counts.subarray(from, from + BITMAP_PAYLOAD_BYTES));
    }
  }

  private async writeIndex(): Promise<void> {
    const buf = await this.tm.bm.create(this.indexLoc, indexBlockValidator);
    for (let j = 0; j < this.bitmapLocs.length; j++) {
      encodeIndexEntry(
        {
          blocknr: this.bitmapLocs[j] as number,
          nrFree: ENTRIES_PER_BITMAP - (this.allocatedIn[j] as number),
          noneFreeBefore: this.firstFreeIn(j),
        },
        buf,
        indexEntryOffset(j),
      );
    }
  }

  private firstFreeIn(j: number): number {
    const base = j * ENTRIES_PER_BITMAP;
    const end = Math.min(ENTRIES_PER_BITMAP, this.nrBlocks - base);
    for (let e = 0; e < end; e++) {
      if (getEntry(this.counts, base + e) === 0) return e;
    }
    return end;
  }

  private setCount(block: number, c: number): void {
    const before = getEntry(this.counts, block);
    const entry = Math.min(c, OVERFLOW_ENTRY);
    const j = Math.floor(block / ENTRIES_PER_BITMAP);
    if (before === OVERFLOW_ENTRY || entry === OVERFLOW_ENTRY) this.overflowDirty.add(block);
    if (entry === OVERFLOW_ENTRY) this.overflow.set(block, c);
    else this.overflow.delete(block);
    if (before !== entry) {
      setEntry(this.counts, block, entry);
      this.dirtyBitmaps.add(j);
    }
    if (before === 0 && entry !== 0) this.changeAllocated(j, 1);
    if (before !== 0 && entry === 0) {
      this.changeAllocated(j, -1);
      if (getEntry(this.committed, block) === 0) this.lowestFree = Math.min(this.lowestFree, block);
      else this.freedThisTransaction.push(block);
    }
  }

  private changeAllocated(j: number, by: number): void {
    this.allocated += by;
    this.allocatedIn[j] = (this.allocatedIn[j] as number) + by;
  }

  /** A block free now and at the last commit, in [from, to). */
  private findFree(from: number, to: number): number | undefined {
    const counts = this.counts;
    const committed = this.committed;
    let b = from;
    while (b < to) {
      if ((b & 3) === 0 && b + 4 <= to) {
        const byte = (counts[b >>> 2] as number) | (committed[b >>> 2] as number);
        if (((byte | (byte >>> 1)) & 0x55) === 0x55) {
          b += 4;
          continue;
        }
      }
      if (getEntry(counts, b) === 0 && getEntry(committed, b) === 0) return b;
      b++;
    }
    return undefined;
  }

  private recount(): void {
    this.allocated = 0;
    this.allocatedIn.fill(0);
    for (let b = 0; b < this.nrBlocks; b++) {
      if (getEntry(this.counts, b) !== 0) {
        this.changeAllocated(Math.floor(b / ENTRIES_PER_BITMAP), 1);
      }
    }
  }

  private checkOverflow(): void {
    for (const [block, exact] of this.overflow) {
      if (block >= this.nrBlocks || getEntry(this.counts, block) !== OVERFLOW_ENTRY || exact < 3) {
        throw this.corrupt(
          block,
          `the ref-count tree holds ${exact} but its bitmap entry disagrees`,
        );
      }
    }
  }

  private checkBlock(block: number): void {
    if (!Number.isSafeInteger(block) || block < 0 || block >= this.nrBlocks) {
      throw this.corrupt(
        block,
        `the block is beyond the metadata device (${this.nrBlocks} blocks)`,
      );
    }
  }

  private corrupt(block: number, problem: string): MetadataCorruptError {
    return new MetadataCorruptError('metadata space map', undefined, `block ${block}: ${problem}`);
  }
}

function bitmapsFor(nrBlocks: number): number {
  return Math.ceil(nrBlocks / ENTRIES_PER_BITMAP);
}

function checkSize(nrBlocks: number): number {
  if (nrBlocks > MAX_METADATA_BLOCKS) {
    throw new MetadataCorruptError(
      'metadata space map',
      undefined,
      `${nrBlocks} blocks is more than the format's limit of ${MAX_METADATA_BLOCKS}`,
    );
  }
  return nrBlocks;
}

function grown(a: Uint8Array, length: number): Uint8Array {
  const b = new Uint8Array(length);
  b.set(a);
  return b;
}
