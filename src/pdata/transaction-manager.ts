/**
 * The transaction manager: the only way to change metadata blocks. Committed blocks are
 * never written; the first change to one in a transaction goes to a copy (a shadow) at a new
 * location, and the caller redirects the parent to it.
 *
 * Contracts:
 * - `shadow(b)` of a block created or shadowed in this transaction whose count is 1 returns
 *   the same block, writable. Otherwise it copies `b` to a new block, decrements `b`, and
 *   reports `incChildren` when `b` was shared (count > 1 before the copy): the caller must
 *   then increment everything the copy references.
 * - `endOperation()` must be called when a metadata operation is over; until then every
 *   writable block handed out stays in memory.
 * - `forgetShadows()` is called once a commit has written the superblock.
 * - `isWritableNow`/`writableNow` serve changes made without awaiting: only blocks this
 *   transaction already owns. `newBlockNow` and `shadowNow` allocate or copy at once when
 *   the space map has a free block and the cache has room without a write; a shared block
 *   is never shadowed at once (its children would need incrementing).
 */

import { NoSpaceError } from '../util/index.js';
import type { BlockManager } from './block-manager.js';
import type { MetadataAllocator } from './space-map/space-map.js';
import type { BlockValidator } from './validator.js';

export interface WritableBlock {
  loc: number;
  buf: Buffer;
}

export interface Shadow extends WritableBlock {
  /** The original was shared: increment every child or value the copy holds. */
  incChildren: boolean;
}

export class TransactionManager {
  readonly bm: BlockManager;
  private sm: MetadataAllocator | undefined;
  private readonly shadowed = new Set<number>();

  constructor(bm: BlockManager) {
    this.bm = bm;
  }

  /** Connects the metadata space map (which itself needs this manager to open). */
  attach(sm: MetadataAllocator): void {
    this.sm = sm;
  }

  get spaceMap(): MetadataAllocator {
    if (this.sm === undefined) throw new Error('transaction manager has no space map attached');
    return this.sm;
  }

  read(loc: number, validator: BlockValidator): Promise<Buffer> {
    return this.bm.read(loc, validator);
  }

  /** A cached block at once, or undefined (see BlockManager.peek). */
  peek(loc: number, validator: BlockValidator): Buffer | undefined {
    return this.bm.peek(loc, validator);
  }

  /** Several blocks at once (see BlockManager.readMany). */
  readMany(locs: readonly number[], validator: BlockValidator): Promise<Buffer[]> {
    return this.bm.readMany(locs, validator);
  }

  /** A new zeroed block with count 1. */
  async newBlock(validator: BlockValidator): Promise<WritableBlock> {
    const loc = this.spaceMap.newBlock();
    const buf = await this.bm.create(loc, validator);
    this.shadowed.add(loc);
    return { loc, buf };
  }

  /**
   * Allocates a block (count 1) and writes `buf` there, bypassing the cache (see
   * BlockManager.writeNew); returns its location. For structures built whole, never
   * changed again in the transaction.
   */
  async writeNewBlock(buf: Buffer, validator: BlockValidator): Promise<number> {
    const loc = this.spaceMap.newBlock();
    await this.bm.writeNew(loc, buf, validator);
    return loc;
  }

  async shadow(loc: number, validator: BlockValidator): Promise<Shadow> {
    const sm = this.spaceMap;
    const count = sm.count(loc);
    if (this.shadowed.has(loc) && count === 1) {
      return { loc, buf: await this.bm.writable(loc, validator), incChildren: false };
    }
    const source = await this.bm.read(loc, validator);
    const copyLoc = sm.newBlock();
    const buf = await this.bm.copy(copyLoc, source, validator);
    sm.dec(loc);
    this.shadowed.add(copyLoc);
    return { loc: copyLoc, buf, incChildren: count > 1 };
  }

  /**
   * Whether `shadow(loc)` would hand back `loc` itself without waiting: the block was
   * created or shadowed in this transaction, its count is 1, and it is cached as
   * `validator`'s kind. Changes nothing.
   */
  isWritableNow(loc: number, validator: BlockValidator): boolean {
    return (
      this.shadowed.has(loc) &&
      this.spaceMap.count(loc) === 1 &&
      this.bm.peek(loc, validator) !== undefined
    );
  }

  /**
   * `shadow(loc)` at once, for a block `isWritableNow` accepts: the block itself, writable
   * until the caller's next await; undefined otherwise. For changes that run without
   * awaiting from their checks to their last write (see BlockManager.writableNow).
   */
  writableNow(loc: number, validator: BlockValidator): Buffer | undefined {
    if (!this.shadowed.has(loc) || this.spaceMap.count(loc) !== 1) return undefined;
    return this.bm.writableNow(loc, validator);
  }

  /**
   * `newBlock` at once: undefined, having changed nothing, when the cache has no room for
   * it without a write or the metadata device is full (then `newBlock`).
   */
  newBlockNow(validator: BlockValidator): WritableBlock | undefined {
    const loc = this.allocateNow();
    if (loc === undefined) return undefined;
    const buf = this.bm.createNow(loc, validator);
    this.shadowed.add(loc);
    return { loc, buf };
  }

  /**
   * `shadow(loc)` at once for a block with one referrer: the block itself when this
   * transaction owns it, else a copy at a new location (and `loc` loses its referrer).
   * Undefined, having changed nothing, when the block is shared, not cached as `validator`'s
   * kind, or a copy cannot be made at once (see `newBlockNow`).
   */
  shadowNow(loc: number, validator: BlockValidator): WritableBlock | undefined {
    if (this.spaceMap.count(loc) !== 1) return undefined;
    const owned = this.writableNow(loc, validator);
    if (owned !== undefined) return { loc, buf: owned };
    const source = this.bm.peek(loc, validator);
    if (source === undefined) return undefined;
    const copyLoc = this.allocateNow();
    if (copyLoc === undefined) return undefined;
    const buf = this.bm.copyNow(copyLoc, source, validator);
    this.spaceMap.dec(loc);
    this.shadowed.add(copyLoc);
    return { loc: copyLoc, buf };
  }

  /** A free block for `newBlockNow`/`shadowNow`, or undefined when there is none at once. */
  private allocateNow(): number | undefined {
    if (!this.bm.canAddNow) return undefined;
    try {
      return this.spaceMap.newBlock();
    } catch (err) {
      if (err instanceof NoSpaceError) return undefined;
      throw err;
    }
  }

  inc(loc: number): void {
    this.spaceMap.inc(loc);
  }

  dec(loc: number): void {
    this.spaceMap.dec(loc);
  }

  refCount(loc: number): number {
    return this.spaceMap.count(loc);
  }

  isShadowed(loc: number): boolean {
    return this.shadowed.has(loc);
  }

  endOperation(): Promise<void> {
    return this.bm.unpinAll();
  }

  forgetShadows(): void {
    this.shadowed.clear();
  }
}
