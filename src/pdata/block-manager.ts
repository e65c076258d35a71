/**
 * The block manager: 4 KiB metadata blocks of a BlockDevice, through a bounded cache.
 *
 * Contracts:
 * - `read` returns a validated block. The buffer is shared with the cache and must not be
 *   modified; it stays valid (its contents unchanged) for as long as the caller holds it.
 * - `readMany` returns validated blocks too, cached ones from the cache; the others are read
 *   with one device read per run of neighbouring blocks, all runs at once, and are not
 *   cached: a walk over a tree bigger than the cache does not push out what is hot.
 * - Writable buffers (`create`, `copy`, `writable`) are dirty and pinned until `unpinAll`;
 *   the caller may change them freely until then. Only the transaction manager asks for
 *   them, and only for blocks that are not part of the committed state. Those made at once
 *   (`createNow`, `copyNow`, `writableNow`) are dirty but not pinned: the change that asked
 *   runs without awaiting, so nothing evicts them before it is over. `createNow` and
 *   `copyNow` add a block without evicting one, up to `AT_ONCE_OVERFLOW` blocks beyond the
 *   cache's size; the next eviction takes the cache back to its size.
 * - When the cache is over its size, unpinned blocks not used since the clock hand last
 *   passed them leave it (the CLOCK approximation of LRU); dirty ones are written out first
 *   (safe: no committed state lives in a dirty block).
 * - `writeNew` writes a block the transaction has just allocated straight to the device,
 *   bypassing the cache (for building whole structures at once): it is staged and written
 *   with its neighbours in one device write, at the latest by `flush`.
 * - `flush` writes every dirty and staged block (neighbours in one device write, several
 *   writes at once), then flushes the device. `writeSuperblock` writes
 *   block 0 and flushes again. Nothing else ever writes block 0.
 * - Once a write or flush fails the manager is failed: every later call rethrows.
 */

import type { BlockDevice } from '../block/index.js';
import { InternalError, IoError, MetadataCorruptError } from '../util/index.js';
import { METADATA_BLOCK_SIZE } from './checksum.js';
import type { BlockValidator } from './validator.js';

/** The most blocks `readMany` reads with one device read (256 KiB). */
export const READ_RUN_BLOCKS = 64;
/** Device writes a flush keeps in flight at once. */
const FLUSH_WRITES_IN_FLIGHT = 8;

/** Dirty blocks (sorted by location) grouped into runs of consecutive locations. */
function dirtyRuns<T>(sorted: Array<[number, T]>): Array<Array<[number, T]>> {
  const runs: Array<Array<[number, T]>> = [];
  let run: Array<[number, T]> = [];
  for (const item of sorted) {
    const last = run[run.length - 1];
    if (last !== undefined && (last[0] + 1 !== item[0] || run.length === WRITE_RUN_BLOCKS)) {
      runs.push(run);
      run = [];
    }
    run.push(item);
  }
  if (run.length > 0) runs.push(run);
  return runs;
}

/** The most blocks `writeNew` stages for one device write (1 MiB). */
export const WRITE_RUN_BLOCKS = 256;

interface CacheEntry {
  buf: Buffer;
  validator: BlockValidator;
  dirty: boolean;
  pinned: boolean;
  /** Used since the clock hand last passed: spared once more. */
  referenced: boolean;
}

/** The smallest cache, and the cache until `fitCacheTo` says otherwise (4 MiB). */
export const MIN_CACHE_BLOCKS = 1024;
/** The largest cache `fitCacheTo` grows to unless told otherwise (64 MiB). */
export const DEFAULT_MAX_CACHE_BLOCKS = 16_384;
/** `fitCacheTo` leaves this much room beyond the blocks in use, for a transaction's shadows. */
const CACHE_HEADROOM = 1.25;
/**
 * Blocks `createNow` and `copyNow` may add beyond the cache's size, until the next eviction
 * (which only an awaited operation runs): a node split or shadowed at once needs no write.
 */
export const AT_ONCE_OVERFLOW = 64;

export interface BlockManagerOptions {
  /**
   * A fixed cache: blocks kept in memory besides the pinned ones. Without it the cache
   * follows the metadata in use (`fitCacheTo`), from `MIN_CACHE_BLOCKS` up to
   * `maxCacheBlocks`.
   */
  cacheBlocks?: number;
  /** The bound of a cache that follows the metadata in use (default 16,384: 64 MiB). */
  maxCacheBlocks?: number;
}

export class BlockManager {
  readonly device: BlockDevice;
  private capacity: number;
  /** The bound of `fitCacheTo`; undefined for a fixed cache. */
  private readonly maxCapacity: number | undefined;
  private readonly cache = new Map<number, CacheEntry>();
  private readonly pinned = new Set<number>();
  /** The clock hand: a live iterator over the cache, restarted when it runs out. */
  private hand: Iterator<[number, CacheEntry]> | undefined;
  private failure: unknown;
  /** Blocks of `writeNew` waiting to be written: `count` blocks from `first`. */
  private readonly staged = {
    first: 0,
    count: 0,
    buf: Buffer.alloc(WRITE_RUN_BLOCKS * METADATA_BLOCK_SIZE),
  };
  /** Reads from the device since creation (for tests and statistics). */
  deviceReads = 0;
  deviceWrites = 0;

  constructor(device: BlockDevice, options: BlockManagerOptions = {}) {
    this.device = device;
    const fixed = options.cacheBlocks;
    this.capacity = Math.max(16, fixed ?? MIN_CACHE_BLOCKS);
    this.maxCapacity =
      fixed === undefined
        ? Math.max(MIN_CACHE_BLOCKS, options.maxCacheBlocks ?? DEFAULT_MAX_CACHE_BLOCKS)
        : undefined;
  }

  /**
   * Sizes a cache that follows the metadata in use: room for `blocksInUse` blocks and a
   * quarter more, between `MIN_CACHE_BLOCKS` and the bound. A fixed cache keeps its size.
   * A smaller size takes effect as blocks come and go (nothing is evicted here).
   */
  fitCacheTo(blocksInUse: number): void {
    if (this.maxCapacity === undefined) return;
    const wanted = Math.ceil(blocksInUse * CACHE_HEADROOM);
    this.capacity = Math.min(this.maxCapacity, Math.max(MIN_CACHE_BLOCKS, wanted));
  }

  /** Blocks the device holds. */
  get nrBlocks(): number {
    return Math.floor(this.device.size / METADATA_BLOCK_SIZE);
  }

  get cachedBlocks(): number {
    return this.cache.size;
  }

  /** The cache's size limit (pinned blocks come on top of it while an operation runs). */
  get cacheCapacity(): number {
    return this.capacity;
  }

  /**
   * Block `loc` if it is cached and checked as `validator`'s kind, at once; undefined
   * otherwise (then `read` it). For lookups that run without awaiting, between operations.
   */
  peek(loc: number, validator: BlockValidator): Buffer | undefined {
    if (this.failure !== undefined) return undefined;
    const hit = this.cache.get(loc);
    if (hit === undefined || hit.validator !== validator) return undefined;
    hit.referenced = true;
    return hit.buf;
  }

  /** Reads block `loc` and checks it with `validator` unless it is cached as that kind. */
  async read(loc: number, validator: BlockValidator): Promise<Buffer> {
    this.throwIfFailed();
    const hit = this.touch(loc);
    if (hit !== undefined) {
      if (hit.validator !== validator) {
        if (!hit.dirty) validator.check(hit.buf, loc);
        hit.validator = validator;
      }
      return hit.buf;
    }
    this.checkRange(loc, validator);
    const buf = Buffer.allocUnsafe(METADATA_BLOCK_SIZE);
    await this.device.read(buf, loc * METADATA_BLOCK_SIZE);
    this.deviceReads++;
    validator.check(buf, loc);
    await this.insert(loc, { buf, validator, dirty: false, pinned: false, referenced: true });
    return buf;
  }

  /**
   * Blocks `locs`, validated, in the order asked. Misses are read together: neighbouring
   * locations in one device read (up to `READ_RUN_BLOCKS`), every run at once. The first
   * invalid block (in the order asked) fails the whole call.
   */
  async readMany(locs: readonly number[], validator: BlockValidator): Promise<Buffer[]> {
    this.throwIfFailed();
    const out: Array<Buffer | undefined> = new Array(locs.length);
    const misses: number[] = [];
    for (let i = 0; i < locs.length; i++) {
      const loc = locs[i] as number;
      const hit = this.touch(loc);
      if (hit === undefined) {
        this.checkRange(loc, validator);
        misses.push(loc);
      } else {
        if (hit.validator !== validator && !hit.dirty) validator.check(hit.buf, loc);
        out[i] = hit.buf;
      }
    }
    if (misses.length === 0) return out as Buffer[];
    const read = await this.readRuns(misses);
    for (let i = 0; i < locs.length; i++) {
      if (out[i] !== undefined) continue;
      const loc = locs[i] as number;
      const buf = read.get(loc) as Buffer;
      validator.check(buf, loc);
      out[i] = buf;
    }
    return out as Buffer[];
  }

  /** Reads `locs` (not cached) in runs of neighbouring blocks, all runs at once. */
  private async readRuns(locs: number[]): Promise<Map<number, Buffer>> {
    const sorted = [...new Set(locs)].sort((a, b) => a - b);
    const runs: Array<{ first: number; count: number }> = [];
    for (const loc of sorted) {
      const last = runs[runs.length - 1];
      if (last !== undefined && last.first + last.count === loc && last.count < READ_RUN_BLOCKS) {
        last.count++;
      } else {
        runs.push({ first: loc, count: 1 });
      }
    }
    const blocks = new Map<number, Buffer>();
    await Promise.all(
      runs.map(async ({ first, count }) => {
        const buf = Buffer.allocUnsafe(count * METADATA_BLOCK_SIZE);
        await this.device.read(buf, first * METADATA_BLOCK_SIZE);
        this.deviceReads++;
        for (let k = 0; k < count; k++) {
          blocks.set(
            first + k,
            buf.subarray(k * METADATA_BLOCK_SIZE, (k + 1) * METADATA_BLOCK_SIZE),
          );
        }
      }),
    );
    return blocks;
  }

  /** A zeroed, writable block at `loc`, which must not be in use. */
  async create(loc: number, validator: BlockValidator): Promise<Buffer> {
    this.throwIfFailed();
    this.checkRange(loc, validator);
    const buf = Buffer.alloc(METADATA_BLOCK_SIZE);
    await this.insertWritable(loc, buf, validator);
    return buf;
  }

  /** A writable block at `loc` holding a copy of `source`. */
  async copy(loc: number, source: Buffer, validator: BlockValidator): Promise<Buffer> {
    this.throwIfFailed();
    this.checkRange(loc, validator);
    const buf = Buffer.allocUnsafe(METADATA_BLOCK_SIZE);
    source.copy(buf);
    await this.insertWritable(loc, buf, validator);
    return buf;
  }

  /** Block `loc`, which this transaction created, made writable again. */
  async writable(loc: number, validator: BlockValidator): Promise<Buffer> {
    const buf = await this.read(loc, validator);
    const entry = this.cache.get(loc);
    if (entry === undefined) throw new InternalError(`block ${loc} left the cache while in use`);
    entry.dirty = true;
    entry.pinned = true;
    this.pinned.add(loc);
    return buf;
  }

  /**
   * Cached block `loc`, checked as `validator`'s kind, made dirty at once; undefined when it
   * is not cached as that kind. Only for a block this transaction already made writable, by
   * a change that runs without awaiting: nothing can evict the block before that change is
   * over, so it is not pinned.
   */
  writableNow(loc: number, validator: BlockValidator): Buffer | undefined {
    const buf = this.peek(loc, validator);
    if (buf === undefined) return undefined;
    (this.cache.get(loc) as CacheEntry).dirty = true;
    return buf;
  }

  /**
   * Whether `createNow` or `copyNow` can add a block now: the manager has not failed and the
   * cache takes one more without writing a block out (see `AT_ONCE_OVERFLOW`).
   */
  get canAddNow(): boolean {
    return (
      this.failure === undefined &&
      this.cache.size < this.capacity + this.pinned.size + AT_ONCE_OVERFLOW
    );
  }

  /**
   * `create` at once, for a caller that checked `canAddNow`: a zeroed block at `loc`, dirty
   * and not pinned (see `writableNow`).
   */
  createNow(loc: number, validator: BlockValidator): Buffer {
    const buf = Buffer.alloc(METADATA_BLOCK_SIZE);
    this.addNow(loc, buf, validator);
    return buf;
  }

  /** `copy` at once, for a caller that checked `canAddNow` (see `createNow`). */
  copyNow(loc: number, source: Buffer, validator: BlockValidator): Buffer {
    const buf = Buffer.allocUnsafe(METADATA_BLOCK_SIZE);
    source.copy(buf);
    this.addNow(loc, buf, validator);
    return buf;
  }

  /** Ends an operation: its writable blocks may now leave the cache (written out if dirty). */
  async unpinAll(): Promise<void> {
    for (const loc of this.pinned) {
      const entry = this.cache.get(loc);
      if (entry !== undefined) entry.pinned = false;
    }
    this.pinned.clear();
    await this.evict();
  }

  /**
   * Writes `buf` as block `loc`, stamped by `validator`, without caching it. `loc` must be
   * newly allocated in this transaction. The block is staged: blocks at consecutive
   * locations go out in one device write, when the run is full or broken, or at `flush`.
   * `buf` may be reused once the call returns.
   */
  async writeNew(loc: number, buf: Buffer, validator: BlockValidator): Promise<void> {
    this.throwIfFailed();
    this.checkRange(loc, validator);
    this.cache.delete(loc);
    const st = this.staged;
    if (st.count > 0 && (st.first + st.count !== loc || st.count === WRITE_RUN_BLOCKS)) {
      await this.writeStaged();
    }
    if (st.count === 0) st.first = loc;
    const slot = st.buf.subarray(
      st.count * METADATA_BLOCK_SIZE,
      (st.count + 1) * METADATA_BLOCK_SIZE,
    );
    buf.copy(slot, 0, 0, METADATA_BLOCK_SIZE);
    validator.prepare(slot, loc);
    st.count++;
  }

  private async writeStaged(): Promise<void> {
    const st = this.staged;
    if (st.count === 0) return;
    const bytes = st.buf.subarray(0, st.count * METADATA_BLOCK_SIZE);
    await this.guard(() => this.device.write(bytes, st.first * METADATA_BLOCK_SIZE));
    this.deviceWrites++;
    st.count = 0;
  }

  /** Writes every dirty and staged block, then flushes the device. */
  async flush(): Promise<void> {
    this.throwIfFailed();
    await this.writeStaged();
    const dirty = [...this.cache.entries()].filter(([, e]) => e.dirty).sort((a, b) => a[0] - b[0]);
    const runs = dirtyRuns(dirty);
    for (let i = 0; i < runs.length; i += FLUSH_WRITES_IN_FLIGHT) {
      await Promise.all(runs.slice(i, i + FLUSH_WRITES_IN_FLIGHT).map((r) => this.writeRun(r)));
    }
    await this.guard(() => this.device.flush());
  }

  /** Writes a run of dirty blocks at consecutive locations with one device write. */
  private async writeRun(run: Array<[number, CacheEntry]>): Promise<void> {
    const first = run[0];
    if (first === undefined) return;
    if (run.length === 1) return this.writeOut(first[0], first[1]);
    const bytes = Buffer.allocUnsafe(run.length * METADATA_BLOCK_SIZE);
    run.forEach(([loc, entry], k) => {
      entry.validator.prepare(entry.buf, loc);
      entry.buf.copy(bytes, k * METADATA_BLOCK_SIZE);
    });
    await this.guard(() => this.device.write(bytes, first[0] * METADATA_BLOCK_SIZE));
    this.deviceWrites++;
    for (const [, entry] of run) entry.dirty = false;
  }

  /** Writes block 0 (already prepared by the caller's validator) and flushes. */
  async writeSuperblock(buf: Buffer, validator: BlockValidator): Promise<void> {
    this.throwIfFailed();
    validator.prepare(buf, 0);
    await this.guard(() => this.device.write(buf, 0));
    this.deviceWrites++;
    await this.guard(() => this.device.flush());
    this.cache.delete(0);
  }

  /** Forgets every cached block, dirty and staged ones included (abort). */
  discardAll(): void {
    this.staged.count = 0;
    this.cache.clear();
    this.pinned.clear();
    this.hand = undefined;
  }

  /** Marks the manager failed with `cause` (every later call rethrows it). */
  fail(cause: unknown): void {
    this.failure ??= cause;
  }

  get failed(): boolean {
    return this.failure !== undefined;
  }

  private addNow(loc: number, buf: Buffer, validator: BlockValidator): void {
    if (!this.canAddNow) {
      throw new InternalError(`block ${loc} made at once with no room in the cache for it`);
    }
    this.checkRange(loc, validator);
    this.cache.delete(loc);
    this.cache.set(loc, { buf, validator, dirty: true, pinned: false, referenced: true });
  }

  private async insertWritable(loc: number, buf: Buffer, validator: BlockValidator) {
    this.cache.delete(loc);
    this.pinned.add(loc);
    await this.insert(loc, { buf, validator, dirty: true, pinned: true, referenced: true });
  }

  private touch(loc: number): CacheEntry | undefined {
    const entry = this.cache.get(loc);
    if (entry !== undefined) entry.referenced = true;
    return entry;
  }

  private async insert(loc: number, entry: CacheEntry): Promise<void> {
    this.cache.set(loc, entry);
    await this.evict();
  }

  private async evict(): Promise<void> {
    // Two full turns of the hand clear every reference bit, so the loop ends.
    for (let steps = 2 * this.cache.size; steps > 0; steps--) {
      if (this.cache.size <= this.capacity + this.pinned.size) return;
      const next = this.nextOnClock();
      if (next === undefined) return;
      const [loc, entry] = next;
      if (entry.pinned) continue;
      if (entry.referenced) {
        entry.referenced = false;
        continue;
      }
      if (entry.dirty) await this.writeOut(loc, entry);
      if (this.cache.get(loc) === entry && !entry.pinned) this.cache.delete(loc);
    }
  }

  private nextOnClock(): [number, CacheEntry] | undefined {
    for (let restarts = 0; restarts < 2; restarts++) {
      this.hand ??= this.cache.entries();
      const step = this.hand.next();
      if (step.done !== true) return step.value;
      this.hand = undefined;
    }
    return undefined;
  }

  private async writeOut(loc: number, entry: CacheEntry): Promise<void> {
    entry.validator.prepare(entry.buf, loc);
    await this.guard(() => this.device.write(entry.buf, loc * METADATA_BLOCK_SIZE));
    this.deviceWrites++;
    entry.dirty = false;
  }

  private checkRange(loc: number, validator: BlockValidator): void {
    if (!Number.isSafeInteger(loc) || loc < 0 || loc >= this.nrBlocks) {
      throw new MetadataCorruptError(
        validator.name,
        loc,
        `the block lies beyond the end of the metadata device (${this.nrBlocks} blocks)`,
      );
    }
  }

  private async guard<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      this.fail(err);
      throw err;
    }
  }

  private throwIfFailed(): void {
    if (this.failure === undefined) return;
    if (this.failure instanceof IoError) throw this.failure;
    throw new IoError(this.device.name, 'metadata I/O', 'an earlier write or flush failed', {
      cause: this.failure,
      hint: 'reopen the pool; the last committed transaction is intact',
    });
  }
}
