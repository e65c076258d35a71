/**
 * The data space map: reference counts of the data device's blocks, kept on the metadata
 * device as the kernel keeps them: bitmaps found through an index btree (bitmap number →
 * index entry), and a ref-count btree for counts of three or more. Memory use does not grow
 * with the data device: bitmaps are read through the block cache; only the index entries
 * (16 bytes per 16320 data blocks) stay in memory.
 *
 * Contracts:
 * - `newBlock` returns a block that is free now, was free at the last commit and was not
 *   freed in this transaction: data a committed mapping still points at is never handed out
 *   again before the next commit, and a block handed out once in a transaction never comes
 *   back in it with stale contents.
 * - `commit` writes the changed index entries into the index tree; `root()` then describes
 *   the map as it must be published in the superblock.
 */

import { InternalError, MetadataCorruptError, NoSpaceError } from '../../util/index.js';
import * as btree from '../btree/btree.js';
import { type BTreeInfo, plainValue } from '../btree/value-type.js';
import type { TransactionManager } from '../transaction-manager.js';
import {
  bitmapPayload,
  bitmapValidator,
  ENTRIES_PER_BITMAP,
  findFreeEntry,
  getEntry,
  OVERFLOW_ENTRY,
  setEntry,
} from './bitmap.js';
import {
  decodeIndexEntry,
  encodeIndexEntry,
  INDEX_ENTRY_SIZE,
  type IndexEntry,
} from './index-entry.js';
import type { SpaceMapRoot } from './root.js';

export class DiskSpaceMap {
  private readonly tm: TransactionManager;
  private readonly indexInfo: BTreeInfo;
  private readonly refInfo: BTreeInfo;
  private nrBlocks: number;
  private allocated: number;
  private indexRoot: number;
  private refRoot: number;
  private entries: IndexEntry[];
  private committedEntries: IndexEntry[];
  private readonly dirty = new Set<number>();
  /** Blocks whose count fell to zero in this transaction: not reused before the commit. */
  private readonly freed = new Set<number>();
  private lastAllocated = -1;

  private constructor(tm: TransactionManager, root: SpaceMapRoot, entries: IndexEntry[]) {
    this.tm = tm;
    this.indexInfo = { tm, valueType: plainValue(INDEX_ENTRY_SIZE) };
    this.refInfo = { tm, valueType: plainValue(4) };
    this.nrBlocks = root.nrBlocks;
    this.allocated = root.nrAllocated;
    this.indexRoot = root.bitmapRoot;
    this.refRoot = root.refCountRoot;
    this.entries = entries;
    this.committedEntries = entries.map((e) => ({ ...e }));
  }

  /** A new, empty map of zero blocks (grow it with `extend`). */
  static async create(tm: TransactionManager): Promise<DiskSpaceMap> {
    const indexInfo = { tm, valueType: plainValue(INDEX_ENTRY_SIZE) };
    const refInfo = { tm, valueType: plainValue(4) };
    const bitmapRoot = await btree.emptyTree(indexInfo);
    const refCountRoot = await btree.emptyTree(refInfo);
    return new DiskSpaceMap(tm, { nrBlocks: 0, nrAllocated: 0, bitmapRoot, refCountRoot }, []);
  }

  static async open(tm: TransactionManager, root: SpaceMapRoot): Promise<DiskSpaceMap> {
    const expected = Math.ceil(root.nrBlocks / ENTRIES_PER_BITMAP);
    const entries: IndexEntry[] = [];
    const info = { tm, valueType: plainValue(INDEX_ENTRY_SIZE) };
    await btree.walk(info, root.bitmapRoot, (key, value) => {
      if (key !== entries.length) {
        throw new MetadataCorruptError(
          'data space map index',
          root.bitmapRoot,
          `bitmap ${entries.length} has no index entry (next key is ${key})`,
        );
      }
      entries.push(decodeIndexEntry(value));
    });
    if (entries.length !== expected) {
      throw new MetadataCorruptError(
        'data space map index',
        root.bitmapRoot,
        `${entries.length} bitmaps are listed but ${root.nrBlocks} blocks need ${expected}`,
      );
    }
    return new DiskSpaceMap(tm, root, entries);
  }

  get size(): number {
    return this.nrBlocks;
  }

  get nrAllocated(): number {
    return this.allocated;
  }

  get nrFree(): number {
    return this.nrBlocks - this.allocated;
  }

  async count(block: number): Promise<number> {
    const { entry } = await this.readEntry(block);
    if (entry < OVERFLOW_ENTRY) return entry;
    return this.overflowCount(block);
  }

  async inc(block: number, by = 1): Promise<void> {
    await this.setCount(block, (await this.count(block)) + by);
  }

  async dec(block: number): Promise<void> {
    const c = await this.count(block);
    if (c === 0) {
      throw new MetadataCorruptError(
        'data space map',
        undefined,
        `data block ${block}: its reference count would go below zero`,
      );
    }
    await this.setCount(block, c - 1);
  }

  /**
   * Adds one reference to each of the `length` blocks from `first` (a restored run of
   * mappings): one shadow per bitmap, the 2-bit entries changed in place; only counts that
   * reach three go through the ref-count tree.
   */
  async incRange(first: number, length: number): Promise<void> {
    const end = first + length;
    if (length > 0) await this.readEntry(end - 1);
    let block = first;
    while (block < end) {
      const j = Math.floor(block / ENTRIES_PER_BITMAP);
      const base = j * ENTRIES_PER_BITMAP;
      const stop = Math.min(ENTRIES_PER_BITMAP, end - base);
      const index = this.entries[j] as IndexEntry;
      const shadow = await this.tm.shadow(index.blocknr, bitmapValidator);
      index.blocknr = shadow.loc;
      this.dirty.add(j);
      const payload = bitmapPayload(shadow.buf);
      for (let e = block - base; e < stop; e++) {
        const before = getEntry(payload, e);
        if (before >= OVERFLOW_ENTRY - 1) {
          await this.inc(base + e);
          continue;
        }
        setEntry(payload, e, before + 1);
        if (before === 0) this.changeAllocated(index, e, -1);
      }
      block = base + stop;
    }
  }

  /** Allocates a free data block (count 1). */
  async newBlock(): Promise<number> {
    const found =
      (await this.findFree(this.lastAllocated + 1, this.nrBlocks)) ??
      (await this.findFree(0, this.nrBlocks));
    if (found === undefined) {
      throw new NoSpaceError(
        'data',
        `the pool's data device is full (${this.nrBlocks} blocks in use or freed in this transaction)`,
        { hint: "grow it with 'thinp pool resize --data-size', or remove devices and commit" },
      );
    }
    this.lastAllocated = found;
    await this.setCount(found, 1);
    return found;
  }

  /**
   * `newBlock` done at once, when it needs no I/O and no metadata allocation: the next free
   * block after the last one handed out lies in the same bitmap, which is cached and already
   * writable in this transaction, as is the committed bitmap it is checked against. Returns
   * the block (count 1), or undefined having changed nothing (then `newBlock`).
   */
  newBlockNow(): number | undefined {
    const from = this.lastAllocated + 1;
    if (from >= this.nrBlocks) return undefined;
    const j = Math.floor(from / ENTRIES_PER_BITMAP);
    const index = this.entries[j] as IndexEntry;
    if (index.nrFree === 0 || !this.tm.isWritableNow(index.blocknr, bitmapValidator)) {
      return undefined;
    }
    const old = this.committedEntries[j];
    let committed: Buffer | undefined;
    if (old !== undefined && old.blocknr !== index.blocknr) {
      const buf = this.tm.peek(old.blocknr, bitmapValidator);
      if (buf === undefined) return undefined;
      committed = bitmapPayload(buf);
    }
    const current = bitmapPayload(this.tm.peek(index.blocknr, bitmapValidator) as Buffer);
    const base = j * ENTRIES_PER_BITMAP;
    const end = Math.min(ENTRIES_PER_BITMAP, this.nrBlocks - base);
    const e = this.freeEntry(
      j,
      current,
      committed,
      Math.max(from - base, index.noneFreeBefore),
      end,
    );
    if (e === undefined) return undefined;
    this.tm.writableNow(index.blocknr, bitmapValidator);
    setEntry(current, e, 1);
    this.dirty.add(j);
    this.changeAllocated(index, e, -1);
    this.lastAllocated = base + e;
    return base + e;
  }

  /**
   * Gives back at once a block `newBlockNow` has just handed out, in the same step (its
   * bitmap is still writable): free again, and freed in this transaction like any other.
   */
  releaseNow(block: number): void {
    const j = Math.floor(block / ENTRIES_PER_BITMAP);
    const e = block - j * ENTRIES_PER_BITMAP;
    const index = this.entries[j] as IndexEntry;
    const bitmap = this.tm.writableNow(index.blocknr, bitmapValidator);
    if (bitmap === undefined || getEntry(bitmapPayload(bitmap), e) !== 1) {
      throw new InternalError(`data block ${block} was not just handed out by newBlockNow`);
    }
    setEntry(bitmapPayload(bitmap), e, 0);
    this.changeAllocated(index, e, 1);
    this.freed.add(block);
  }

  /** Grows the map to `nrBlocks` blocks, adding zeroed bitmaps as needed. */
  async extend(nrBlocks: number): Promise<void> {
    if (nrBlocks <= this.nrBlocks) return;
    const need = Math.ceil(nrBlocks / ENTRIES_PER_BITMAP);
    for (let j = this.entries.length; j < need; j++) {
      const { loc } = await this.tm.newBlock(bitmapValidator);
      this.entries.push({ blocknr: loc, nrFree: ENTRIES_PER_BITMAP, noneFreeBefore: 0 });
      this.dirty.add(j);
    }
    this.nrBlocks = nrBlocks;
  }

  /** Writes changed index entries to the index tree. */
  async commit(): Promise<void> {
    for (const j of this.dirty) {
      const v = Buffer.alloc(INDEX_ENTRY_SIZE);
      encodeIndexEntry(this.entries[j] as IndexEntry, v);
      this.indexRoot = (await btree.insert(this.indexInfo, this.indexRoot, j, v)).root;
    }
    this.dirty.clear();
  }

  /**
   * Called once the superblock is written. Returns the blocks freed by the transaction just
   * committed (they may still hold old data; nothing references them any more).
   */
  committedNow(): number[] {
    this.committedEntries = this.entries.map((e) => ({ ...e }));
    const freed = [...this.freed];
    this.freed.clear();
    return freed;
  }

  /**
   * Visits every run of free blocks as [first block, length], in order; for returning free
   * space to the host.
   */
  async forEachFreeRun(visit: (first: number, length: number) => Promise<void>): Promise<void> {
    let runStart = -1;
    for (let j = 0; j < this.entries.length; j++) {
      const payload = bitmapPayload(
        await this.tm.read((this.entries[j] as IndexEntry).blocknr, bitmapValidator),
      );
      const base = j * ENTRIES_PER_BITMAP;
      const end = Math.min(ENTRIES_PER_BITMAP, this.nrBlocks - base);
      for (let e = 0; e < end; e++) {
        const free = getEntry(payload, e) === 0;
        if (free && runStart < 0) runStart = base + e;
        if (!free && runStart >= 0) {
          await visit(runStart, base + e - runStart);
          runStart = -1;
        }
      }
    }
    if (runStart >= 0) await visit(runStart, this.nrBlocks - runStart);
  }

  root(): SpaceMapRoot {
    return {
      nrBlocks: this.nrBlocks,
      nrAllocated: this.allocated,
      bitmapRoot: this.indexRoot,
      refCountRoot: this.refRoot,
    };
  }

  private async readEntry(block: number): Promise<{ j: number; e: number; entry: number }> {
    if (!Number.isSafeInteger(block) || block < 0 || block >= this.nrBlocks) {
      throw new MetadataCorruptError(
        'data space map',
        undefined,
        `data block ${block} is beyond the end of the data device (${this.nrBlocks} blocks)`,
      );
    }
    const j = Math.floor(block / ENTRIES_PER_BITMAP);
    const e = block - j * ENTRIES_PER_BITMAP;
    const bitmap = await this.tm.read((this.entries[j] as IndexEntry).blocknr, bitmapValidator);
    return { j, e, entry: getEntry(bitmapPayload(bitmap), e) };
  }

  private async overflowCount(block: number): Promise<number> {
    const v = await btree.lookup(this.refInfo, this.refRoot, block);
    if (v === undefined) {
      throw new MetadataCorruptError(
        'data space map',
        undefined,
        `data block ${block}: its bitmap entry says 3 or more, but the ref-count tree has no entry`,
      );
    }
    return v.readUInt32LE(0);
  }

  private async setCount(block: number, c: number): Promise<void> {
    const { j, e, entry: before } = await this.readEntry(block);
    const after = Math.min(c, OVERFLOW_ENTRY);
    const index = this.entries[j] as IndexEntry;
    if (before !== after) {
      const shadow = await this.tm.shadow(index.blocknr, bitmapValidator);
      index.blocknr = shadow.loc;
      setEntry(bitmapPayload(shadow.buf), e, after);
      this.dirty.add(j);
    }
    if (after === OVERFLOW_ENTRY) {
      const v = Buffer.alloc(4);
      v.writeUInt32LE(c, 0);
      this.refRoot = (await btree.insert(this.refInfo, this.refRoot, block, v)).root;
    } else if (before === OVERFLOW_ENTRY) {
      this.refRoot = (await btree.remove(this.refInfo, this.refRoot, block)).root;
    }
    if (before === 0 && after !== 0) this.changeAllocated(index, e, -1);
    if (before !== 0 && after === 0) {
      this.changeAllocated(index, e, 1);
      this.freed.add(block);
    }
  }

  private changeAllocated(index: IndexEntry, e: number, free: number): void {
    this.allocated -= free;
    index.nrFree = Math.max(0, index.nrFree + free);
    if (free < 0 && e === index.noneFreeBefore) index.noneFreeBefore = e + 1;
    if (free > 0 && e < index.noneFreeBefore) index.noneFreeBefore = e;
  }

  /** A block free now and at the last commit, in [from, to). */
  private async findFree(from: number, to: number): Promise<number | undefined> {
    for (let j = Math.floor(from / ENTRIES_PER_BITMAP); j * ENTRIES_PER_BITMAP < to; j++) {
      const index = this.entries[j] as IndexEntry;
      if (index.nrFree === 0) continue;
      const base = j * ENTRIES_PER_BITMAP;
      const start = Math.max(from - base, index.noneFreeBefore, 0);
      const end = Math.min(ENTRIES_PER_BITMAP, to - base);
      const found = await this.findFreeIn(j, start, end);
      if (found !== undefined) return base + found;
    }
    return undefined;
  }

  private async findFreeIn(j: number, start: number, end: number): Promise<number | undefined> {
    const current = bitmapPayload(
      await this.tm.read((this.entries[j] as IndexEntry).blocknr, bitmapValidator),
    );
    const old = this.committedEntries[j];
    const committed =
      old === undefined || old.blocknr === (this.entries[j] as IndexEntry).blocknr
        ? undefined
        : bitmapPayload(await this.tm.read(old.blocknr, bitmapValidator));
    return this.freeEntry(j, current, committed, start, end);
  }

  /**
   * The first entry in [start, end) of bitmap `j` free now (`current`), free at the last
   * commit (`committed`, undefined when the bitmap is unchanged since) and not freed in
   * this transaction; undefined when there is none.
   */
  private freeEntry(
    j: number,
    current: Uint8Array,
    committed: Uint8Array | undefined,
    start: number,
    end: number,
  ): number | undefined {
    for (let e = start; e < end; e++) {
      e = findFreeEntry(current, e, end);
      if (e < 0) return undefined;
      const block = j * ENTRIES_PER_BITMAP + e;
      if ((committed === undefined || getEntry(committed, e) === 0) && !this.freed.has(block)) {
        return e;
      }
    }
    return undefined;
  }
}
