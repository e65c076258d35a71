/**
 * ThinPool: a data device and a metadata device made into thin devices — the data path of
 * dm-thin.c. Thin devices allocate data blocks when first written, copy a shared block
 * before writing it, and read unmapped blocks as zeros.
 *
 * Lifecycle: `create` (formats the metadata for the data device's size) or `open` →
 * `createThin` / `createSnapshot` / `deleteDevice` and I/O through `device(id)` → `commit`
 * (also on FLUSH, on FUA writes, and every `commitIntervalMs` while the metadata has changed)
 * → `close`.
 *
 * Contracts:
 * - Durability order: data writes complete, the data device is flushed, then the metadata
 *   commits. A mapping is inserted only after its data write completed, so a commit never
 *   publishes a mapping to data that is not on disk.
 * - Data blocks freed by a commit are discarded (holes punched in loop mode) before any
 *   other metadata operation can run, so a block handed out again reads as zeros; partial
 *   writes to new blocks then need no zeroing. Without discard, new blocks are zero-filled
 *   around partial writes (unless zeroing is off, as the kernel's skip_block_zeroing).
 * - Out of data space: the write fails with NoSpaceError (policy `error`) or waits up to
 *   `queueTimeoutMs` for space (policy `queue`); the mode is `out_of_data_space` meanwhile.
 *   A metadata failure (I/O, damage, metadata space exhausted) aborts the transaction, sets
 *   needs_check and turns the pool read-only (`ro`): writes and changes fail with
 *   ReadOnlyError, flushes with IoError (EIO, as the kernel's), reads go on.
 * - A failed flush of the data device puts the pool in `fail` mode: the writes it covered may
 *   be lost (Linux reports a failed fsync once), so the transaction is aborted rather than
 *   retried, needs_check is set, and writes and flushes fail with IoError (EIO) from then on.
 * - Snapshots are points in time: `createSnapshot` closes the origin's quiesce gate, waits
 *   for the changes in flight to it, snapshots, and opens it again (the kernel's suspend).
 *   `deleteDevice` quiesces the device the same way.
 * - A data block freed by a commit is neither discarded nor handed out again until every
 *   read or in-place write that looked it up has finished (the kernel's `all_io_ds`).
 *
 * Locks, in the order they are taken (docs/ARCHITECTURE.md, "Locks"): a device's quiesce
 * gate → its cells → `commitLock` → `provisioning` → the metadata lock. The in-flight set is
 * not a lock: a commit waits on it holding `provisioning`, and its entries take no lock but
 * the metadata one.
 */

import { EventEmitter } from 'node:events';
import type { BlockDevice } from '../block/index.js';
import {
  breaksTransaction,
  DATA_BLOCK_LIMIT,
  MAX_METADATA_BLOCKS,
  type Mapping,
  METADATA_BLOCK_SIZE,
  PoolMetadata,
} from '../thin/index.js';
import {
  AsyncRwLock,
  BadInputError,
  DeferredSet,
  IoError,
  KeyedLock,
  Mutex,
  NoSpaceError,
  QuiesceGate,
  ReadOnlyError,
  SECTOR_SIZE,
} from '../util/index.js';
import { cellKey, type DataPath, type IoCounters } from './data-path.js';
import { ThinDevice } from './thin-device.js';

/** From best to worst; `ro` and `fail` are left only by reopening the pool. */
export type PoolMode = 'rw' | 'out_of_data_space' | 'ro' | 'fail';
const MODE_RANK: Readonly<Record<PoolMode, number>> = {
  rw: 0,
  out_of_data_space: 1,
  ro: 2,
  fail: 3,
};

/** An unmap takes the cells of at most this many blocks at once. */
const UNMAP_BATCH = 1024;
export type NoSpacePolicy = 'error' | 'queue';

export interface ThinPoolOptions {
  /** Zero the rest of a new block around a partial write (dm.zero_blocks). */
  zeroBlocks?: boolean;
  /** What a write does when the data device is full (dm.no_space_policy). */
  noSpacePolicy?: NoSpacePolicy;
  /** How long a queued write waits for space. */
  queueTimeoutMs?: number;
  /** Commit this often while mappings changed (writes in place wait for a FLUSH); 0: no timer. */
  commitIntervalMs?: number;
  /** Discard data blocks once they are freed (dm.blkdiscard). */
  discardFreed?: boolean;
  /**
   * Emit 'lowWater' once the free share of the data device falls below this percentage
   * (Docker's low water mark: 100 − dm.thinp_autoextend_threshold). Again after a resize.
   */
  lowWaterPercent?: number;
  /**
   * On open, discard every free data block (a crash may have come between a commit and the
   * discard of what it freed), so that new blocks need no zeroing afterwards. Costs one
   * discard per free run: for long-running owners such as the daemon, not for one command.
   */
  sweepOnOpen?: boolean;
  /**
   * A write of at least this many bytes goes to the data device around its page cache
   * (`BlockDevice.writeUncached`): a client streaming data (an image copied in, a file
   * system writing back) will not read it back from here soon, and the kernel's dm-thin has
   * no page cache under it either. 0: every write is cached. Default `UNCACHED_WRITE_MIN`.
   */
  uncachedWriteMin?: number;
  /**
   * Leave the kernel's readahead on for the data device (`BlockDevice.stopReadahead` not
   * called). Off by default: a thin device's readers (a filesystem mounted on it, an NBD
   * client) read ahead themselves, as they do over the kernel's dm-thin, which has no page
   * cache below it, and the data device's own readahead reads more than asked into the
   * host's cache. Measured on ext4: over a region the pool's reads had brought in with
   * readahead, each later 4 KiB write cost the kernel 2.5 times as much (45 µs against 18)
   * and overwrites ran at a third of their rate; with it off, as fast as over pages written.
   */
  dataReadahead?: boolean;
  cacheBlocks?: number;
}

/** The default `uncachedWriteMin`: writes of 256 KiB and more go around the page cache. */
export const UNCACHED_WRITE_MIN = 256 * 1024;

export interface CreateOptions extends ThinPoolOptions {
  /** Data block size in bytes: a multiple of 64 KiB from 64 KiB to 1 GiB. */
  blockSize: number;
}

export interface PoolStatus {
  transactionId: number;
  mode: PoolMode;
  needsCheck: boolean;
  heldRoot: number;
  data: { usedBlocks: number; totalBlocks: number; blockSize: number };
  metadata: { usedBlocks: number; totalBlocks: number };
}

export interface PoolEvents {
  lowWater: [{ freeBlocks: number; totalBlocks: number }];
  outOfSpace: [{ space: 'data' | 'metadata' }];
  mode: [PoolMode];
  commit: [{ transactionId: number; durationMs: number }];
}

const DEFAULT_QUEUE_TIMEOUT_MS = 60_000;

export class ThinPool extends EventEmitter<PoolEvents> implements DataPath {
  readonly data: BlockDevice;
  readonly metadata: PoolMetadata;
  readonly blockSize: number;
  /** Serializes the work on one (device, virtual block): provisioning, copies, unmaps. */
  readonly cells = new KeyedLock<string>();
  private readonly options: Required<Omit<ThinPoolOptions, 'cacheBlocks'>>;
  /** One commit at a time. */
  private readonly commitLock = new Mutex();
  /** Provisions hold it shared (allocate, fill, map); a commit holds it alone. */
  private readonly provisioning = new AsyncRwLock();
  /** Reads and in-place writes of looked-up data blocks, which a commit's frees wait for. */
  private readonly allIo = new DeferredSet();
  /** Per device: its changes pass it; snapshots of it and its removal quiesce it. */
  private readonly gates = new Map<number, QuiesceGate>();
  private readonly devices = new Map<number, ThinDevice>();
  private poolMode: PoolMode = 'rw';
  /**
   * Mappings were added or removed since the last commit (the kernel's
   * dm_pool_changed_this_transaction): the commit timer commits only then. Writes in place
   * change no metadata; as in the kernel, they are made durable by a FLUSH or FUA, and a
   * timer that flushed the data device every second for them would only force writeback.
   */
  private changed = false;
  private freeReadsZero = false;
  private timer: NodeJS.Timeout | undefined;
  private spaceWaiters: Array<() => void> = [];
  private lowWaterSignalled = false;
  /** `counters.provisions` when the last commit started. */
  private provisionsAtCommit = 0;
  /** I/O and commit counters, for status and metrics. */
  readonly counters: IoCounters = {
    reads: 0,
    writes: 0,
    provisions: 0,
    copies: 0,
    discards: 0,
    commits: 0,
  };

  private constructor(data: BlockDevice, metadata: PoolMetadata, options: ThinPoolOptions) {
    super();
    this.data = data;
    this.metadata = metadata;
    this.blockSize = metadata.dataBlockSize * SECTOR_SIZE;
    this.options = {
      zeroBlocks: options.zeroBlocks ?? true,
      noSpacePolicy: options.noSpacePolicy ?? 'error',
      queueTimeoutMs: options.queueTimeoutMs ?? DEFAULT_QUEUE_TIMEOUT_MS,
      commitIntervalMs: options.commitIntervalMs ?? 1000,
      discardFreed: options.discardFreed ?? true,
      lowWaterPercent: options.lowWaterPercent ?? 0,
      sweepOnOpen: options.sweepOnOpen ?? false,
      uncachedWriteMin: options.uncachedWriteMin ?? UNCACHED_WRITE_MIN,
      dataReadahead: options.dataReadahead ?? false,
    };
  }

  /** Formats `metadata` for a pool over all of `data` and opens it. */
  static async create(
    data: BlockDevice,
    metadata: BlockDevice,
    options: CreateOptions,
  ): Promise<ThinPool> {
    const sectors = checkBlockSize(options.blockSize);
    const md = await PoolMetadata.format(metadata, {
      dataBlockSize: sectors,
      nrDataBlocks: Math.floor(data.size / options.blockSize),
      ...(options.cacheBlocks === undefined ? {} : { cacheBlocks: options.cacheBlocks }),
    });
    return ThinPool.start(data, md, options, true);
  }

  /** Opens the pool whose metadata is on `metadata`. */
  static async open(
    data: BlockDevice,
    metadata: BlockDevice,
    options: ThinPoolOptions = {},
  ): Promise<ThinPool> {
    const md = await PoolMetadata.open(
      metadata,
      options.cacheBlocks === undefined ? {} : { cacheBlocks: options.cacheBlocks },
    );
    const blockBytes = md.dataBlockSize * SECTOR_SIZE;
    if (md.dataUsage.totalBlocks * blockBytes > data.size) {
      throw new BadInputError(
        `${data.name} holds ${data.size} bytes but the pool's metadata describes ` +
          `${md.dataUsage.totalBlocks} blocks of ${blockBytes} bytes`,
        { hint: 'give the data device the pool was created with, at its full size' },
      );
    }
    return ThinPool.start(data, md, options);
  }

  private static async start(
    data: BlockDevice,
    md: PoolMetadata,
    options: ThinPoolOptions,
    fresh = false,
  ): Promise<ThinPool> {
    const pool = new ThinPool(data, md, options);
    if (!pool.options.dataReadahead) data.stopReadahead?.();
    if (md.needsCheck) pool.poolMode = 'ro';
    if (fresh || pool.options.sweepOnOpen) await pool.sweepFreeSpace();
    if (pool.options.commitIntervalMs > 0) {
      pool.timer = setInterval(() => {
        // A failed commit has changed the mode already and said so in events.
        if (pool.changed && pool.writable) pool.commit().catch(() => undefined);
      }, pool.options.commitIntervalMs);
      pool.timer.unref();
    }
    return pool;
  }

  /**
   * With discards on, makes every free data block read as zeros (a crash may have come
   * between a commit and the discard of what it freed); from then on new blocks need no
   * zeroing.
   */
  private async sweepFreeSpace(): Promise<void> {
    const discard = this.data.discard?.bind(this.data);
    if (!this.options.discardFreed || discard === undefined || !this.writable) return;
    if (!canPunchHoles(this.data)) return;
    let punching = true;
    await this.metadata.forEachFreeDataRun(async (first, length) => {
      if (!punching) return;
      // One block first: a device that cannot punch holes writes zeros instead, and a
      // whole free space of zeros is not worth writing.
      await discard(first * this.blockSize, this.blockSize);
      punching = canPunchHoles(this.data);
      if (punching && length > 1) {
        await discard((first + 1) * this.blockSize, (length - 1) * this.blockSize);
      }
    });
    this.freeReadsZero = punching;
  }

  get mode(): PoolMode {
    return this.poolMode;
  }

  /** The pool takes writes and commits (`rw` or `out_of_data_space`). */
  get writable(): boolean {
    return MODE_RANK[this.poolMode] < MODE_RANK.ro;
  }

  /** New data blocks are known to read as zeros. */
  get newBlocksAreZero(): boolean {
    return this.freeReadsZero;
  }

  get zeroBlocks(): boolean {
    return this.options.zeroBlocks;
  }

  /** Whether a write of `length` bytes goes around the data device's cache. */
  writesUncached(length: number): boolean {
    const min = this.options.uncachedWriteMin;
    return min > 0 && length >= min && this.data.writeUncached !== undefined;
  }

  // -------------------------------------------------------------------------------------
  // Devices

  async createThin(id: number): Promise<void> {
    this.checkWritable('create a thin device');
    return this.metadataChange(() => this.metadata.createThin(id));
  }

  /**
   * Snapshots `origin` as `id`, at one point in time: the origin's changes in flight finish
   * first, and new ones wait until the snapshot exists (the kernel's suspend and resume).
   */
  async createSnapshot(id: number, origin: number): Promise<void> {
    this.checkWritable('snapshot');
    return this.gate(origin).quiesce(() =>
      this.metadataChange(() => this.metadata.createSnapshot(id, origin)),
    );
  }

  /** Deletes device `id` once its changes in flight have finished; later ones fail. */
  async deleteDevice(id: number): Promise<void> {
    this.checkWritable('delete a thin device');
    await this.gate(id).quiesce(() => this.metadataChange(() => this.metadata.deleteDevice(id)));
    this.devices.delete(id);
    this.gates.delete(id);
  }

  /** The I/O handle of thin device `id`, `size` bytes long (the metadata keeps no sizes). */
  device(id: number, size: number): ThinDevice {
    let dev = this.devices.get(id);
    if (dev === undefined || dev.size !== size) {
      dev = new ThinDevice(this, id, size);
      this.devices.set(id, dev);
    }
    return dev;
  }

  /** Compare-and-set of the transaction id, committed at once. */
  async setTransactionId(current: number, next: number): Promise<void> {
    this.checkWritable('set the transaction id');
    await this.metadataChange(() => this.metadata.setTransactionId(current, next));
    await this.commit();
  }

  // -------------------------------------------------------------------------------------
  // The data path's metadata steps (used by ThinDevice)

  /**
   * Fails unless the pool takes writes: ReadOnlyError after a metadata failure, IoError
   * (EIO) after a failed data flush.
   */
  checkWritable(op = 'write'): void {
    if (this.poolMode === 'ro') {
      throw new ReadOnlyError('the pool is read-only after a metadata failure', {
        hint: "run 'thinp check', then repair or restore the metadata",
      });
    }
    if (this.poolMode === 'fail') {
      throw new IoError(
        this.data.name,
        op,
        'the pool has failed: a flush of its data device failed, so recent writes may be lost',
        { hint: "check the data device, run 'thinp check', then reopen the pool" },
      );
    }
  }

  /**
   * Fails unless a commit can run. A flush the pool cannot carry out is an I/O error (EIO),
   * as the kernel fails the flush bios of a read-only pool, in `ro` mode as in `fail` mode.
   */
  private checkCanCommit(): void {
    if (this.poolMode === 'ro') {
      throw new IoError(
        this.data.name,
        'flush',
        'the pool is read-only after a metadata failure, so nothing more can be made durable',
        { hint: "run 'thinp check', then repair or restore the metadata" },
      );
    }
    this.checkWritable('flush');
  }

  changing<T>(id: number, fn: () => Promise<T>): Promise<T> {
    return this.gate(id).pass(fn);
  }

  /** Whether a change of device `id` may run at once: no snapshot is quiescing it. */
  changeableNow(id: number): boolean {
    return this.gates.get(id)?.open ?? true;
  }

  inFlight<T>(fn: () => Promise<T>): Promise<T> {
    return this.allIo.run(fn);
  }

  enterIo(): number {
    return this.allIo.enter();
  }

  readonly leaveIo = (entry: number): void => this.allIo.leave(entry);

  private gate(id: number): QuiesceGate {
    let gate = this.gates.get(id);
    if (gate === undefined) {
      gate = new QuiesceGate();
      this.gates.set(id, gate);
    }
    return gate;
  }

  lookup(id: number, vblock: number): Promise<Mapping | undefined> {
    return this.metadata.lookup(id, vblock);
  }

  nextMapping(id: number, vblock: number): Promise<(Mapping & { vblock: number }) | undefined> {
    return this.metadata.nextMapping(id, vblock);
  }

  lookupNow(id: number, vblock: number): Mapping | undefined | null {
    return this.metadata.lookupNow(id, vblock);
  }

  /**
   * Gives virtual block `vblock` of device `id` a new data block: allocates it, lets
   * `fill(block)` write its contents, then maps it. No commit can run in between, so a
   * commit never records a block as used that no mapping holds (which a crash would leak).
   * When the data device is full this follows the no-space policy, outside that window.
   */
  async provision(
    id: number,
    vblock: number,
    fill: (block: number) => Promise<void>,
  ): Promise<void> {
    this.checkWritable();
    const deadline = Date.now() + this.options.queueTimeoutMs;
    let triedCommit = false;
    for (;;) {
      const full = await this.provisioning.read(() => this.provisionNow(id, vblock, fill));
      if (full === undefined) return;
      if (!triedCommit) {
        // Blocks freed in this transaction become usable once it is committed.
        triedCommit = true;
        await this.commit();
        continue;
      }
      if (this.poolMode !== 'out_of_data_space') {
        this.setMode('out_of_data_space');
        this.emit('outOfSpace', { space: 'data' });
      }
      if (this.options.noSpacePolicy === 'error' || Date.now() >= deadline) throw full;
      await this.waitForSpace(deadline - Date.now());
      this.checkWritable();
    }
  }

  /**
   * `provision` done at once, with no promise, when it can be: the pool is `rw`, no commit
   * holds or awaits `provisioning` (so the work runs as if it held it shared, and no commit
   * can come between the fill and the mapping), and the metadata allocates and maps at once
   * (PoolMetadata.provisionNow). `fill(block)` writes the new block at once: true when
   * written. True when provisioned; false when `provision` must do it, nothing changed. A
   * fill that throws gives its block back and the error is rethrown.
   */
  provisionAtOnce(id: number, vblock: number, fill: (block: number) => boolean): boolean {
    if (this.poolMode !== 'rw' || !this.provisioning.readableNow) return false;
    if (!this.metadata.provisionNow(id, vblock, fill)) return false;
    this.counters.provisions++;
    this.changed = true;
    this.afterAllocation();
    return true;
  }

  /** One attempt; the NoSpaceError when there is no free data block, else undefined. */
  private async provisionNow(
    id: number,
    vblock: number,
    fill: (block: number) => Promise<void>,
  ): Promise<NoSpaceError | undefined> {
    let block: number;
    try {
      block = await this.metadataChange(() => this.metadata.allocDataBlock());
    } catch (err) {
      if (err instanceof NoSpaceError && err.space === 'data') return err;
      throw err;
    }
    this.counters.provisions++;
    this.afterAllocation();
    try {
      await fill(block);
    } catch (err) {
      await this.metadataChange(() => this.metadata.releaseDataBlock(block)).catch(() => undefined);
      throw err;
    }
    await this.metadataChange(() => this.metadata.insertMapping(id, vblock, block));
    this.changed = true;
    return undefined;
  }

  /**
   * Unmaps [begin, end) of device `id`, a batch of blocks at a time, each batch holding the
   * cells of its blocks (the kernel's bio prison): an unmap never runs alongside a lookup,
   * provision, copy or in-place write of the same block.
   */
  async unmapRange(id: number, begin: number, end: number): Promise<number> {
    this.checkWritable('discard');
    let n = 0;
    for (let from = begin; from < end; from += UNMAP_BATCH) {
      const to = Math.min(end, from + UNMAP_BATCH);
      const keys: string[] = [];
      for (let v = from; v < to; v++) keys.push(cellKey(id, v));
      n += await this.cells.runAll(keys, () =>
        this.metadataChange(() => this.metadata.removeRange(id, from, to)),
      );
    }
    if (n > 0) this.changed = true;
    return n;
  }

  // -------------------------------------------------------------------------------------
  // Commit, space, status

  /**
   * Makes every completed write durable: flushes the data device, then commits the
   * metadata, then discards what the transaction freed once the I/O in flight to it has
   * drained. Fails with IoError (EIO) in `ro` and `fail` mode, as the kernel fails a flush
   * it cannot carry out. A failed data flush fails the pool.
   */
  commit(): Promise<void> {
    return this.commitLock.run(async () => {
      await this.preflush();
      await this.provisioning.write(() => this.commitNow());
    });
  }

  /**
   * The long part of a commit's data flush, done before `provisioning` is taken alone, so
   * that provisions go on meanwhile instead of waiting for the disk. Only when blocks were
   * provisioned since the last commit (the flush then has allocations to write out). It
   * proves nothing: the commit still flushes under the lock, which covers every write that
   * completed before a mapping was inserted; that second flush finds little left to write.
   * A failure fails the pool, as any failed flush of the data device.
   */
  private async preflush(): Promise<void> {
    if (this.counters.provisions === this.provisionsAtCommit || !this.writable) return;
    try {
      await this.data.flush();
    } catch (err) {
      await this.failData();
      throw err;
    }
  }

  private async commitNow(): Promise<void> {
    this.checkCanCommit();
    const started = performance.now();
    this.provisionsAtCommit = this.counters.provisions;
    // Changes that complete while this commit runs set the flag again.
    this.changed = false;
    try {
      await this.data.flush();
    } catch (err) {
      await this.failData();
      throw err;
    }
    let freed: number[];
    try {
      freed = await this.metadataChange(() => this.metadata.commit());
    } catch (err) {
      this.changed = true;
      throw err;
    }
    // Still holding `provisioning`: no freed block can be handed out before this is done.
    if (freed.length > 0) {
      await this.allIo.drained();
      await this.discardFreed(freed);
    }
    this.counters.commits++;
    this.emit('commit', {
      transactionId: this.metadata.transactionId,
      durationMs: performance.now() - started,
    });
    if (
      this.poolMode === 'out_of_data_space' &&
      this.metadata.dataUsage.usedBlocks < this.metadata.dataUsage.totalBlocks
    ) {
      this.setMode('rw');
    }
    this.wakeSpaceWaiters();
  }

  private async discardFreed(blocks: number[]): Promise<void> {
    const discard = this.data.discard?.bind(this.data);
    if (!this.options.discardFreed || discard === undefined) return;
    blocks.sort((a, b) => a - b);
    try {
      for (let i = 0; i < blocks.length; ) {
        let j = i + 1;
        while (j < blocks.length && (blocks[j] as number) === (blocks[j - 1] as number) + 1) j++;
        const first = blocks[i] as number;
        await discard(first * this.blockSize, (j - i) * this.blockSize);
        this.counters.discards++;
        i = j;
      }
    } catch {
      // The blocks are free either way; they just may not read as zeros any more.
      this.freeReadsZero = false;
    }
  }

  /** Grows the pool's data device to `bytes`; never shrinks. */
  async resizeData(bytes: number): Promise<void> {
    const blocks = Math.floor(bytes / this.blockSize);
    const current = this.metadata.dataUsage.totalBlocks;
    if (!Number.isSafeInteger(bytes) || blocks < current || blocks >= DATA_BLOCK_LIMIT) {
      throw new BadInputError(
        `the data device cannot be resized to ${bytes} bytes: it holds ${current} blocks of ` +
          `${this.blockSize} bytes and may only grow (below 2^40 blocks)`,
        { hint: 'give a larger size' },
      );
    }
    this.checkWritable('resize');
    if (bytes > this.data.size) await this.data.grow(bytes);
    await this.metadataChange(() => this.metadata.resizeData(blocks));
    await this.commit();
    if (this.poolMode === 'out_of_data_space') this.setMode('rw');
    this.lowWaterSignalled = false;
    this.wakeSpaceWaiters();
  }

  /** Grows the metadata device to `bytes`; never shrinks. */
  async resizeMetadata(bytes: number): Promise<void> {
    const dev = this.metadata.device;
    const blocks = Math.floor(bytes / METADATA_BLOCK_SIZE);
    const current = this.metadata.metadataUsage.totalBlocks;
    if (!Number.isSafeInteger(bytes) || blocks < current || blocks > MAX_METADATA_BLOCKS) {
      throw new BadInputError(
        `the metadata device cannot be resized to ${bytes} bytes: it holds ${current} blocks ` +
          `and may only grow, up to ${MAX_METADATA_BLOCKS} blocks (about 16 GiB)`,
        { hint: 'give a size between the current one and 16 GiB' },
      );
    }
    this.checkWritable('resize');
    if (bytes > dev.size) await dev.grow(bytes);
    await this.metadataChange(() => this.metadata.resizeMetadata(blocks));
    await this.commit();
  }

  status(): PoolStatus {
    const data = this.metadata.dataUsage;
    const meta = this.metadata.metadataUsage;
    return {
      transactionId: this.metadata.transactionId,
      mode: this.poolMode,
      needsCheck: this.metadata.needsCheck,
      heldRoot: this.metadata.heldRoot,
      data: {
        usedBlocks: data.usedBlocks,
        totalBlocks: data.totalBlocks,
        blockSize: this.blockSize,
      },
      metadata: { usedBlocks: meta.usedBlocks, totalBlocks: meta.totalBlocks },
    };
  }

  /** Commits and stops the commit timer. The devices stay open (their owner closes them). */
  async close(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    if (this.writable) await this.commit();
    await this.metadata.close();
  }

  // -------------------------------------------------------------------------------------

  /**
   * Runs a metadata step; a failure that breaks the transaction aborts it, sets needs_check
   * and turns the pool read-only, as the kernel does.
   */
  private async metadataChange<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (breaksTransaction(err)) await this.failMetadata(err);
      throw err;
    }
  }

  private async failMetadata(err: unknown): Promise<void> {
    if (!this.writable) return;
    this.setMode('ro');
    if (err instanceof NoSpaceError) this.emit('outOfSpace', { space: 'metadata' });
    await this.abortAndMark();
  }

  /**
   * A flush of the data device failed: the writes it covered may never reach the disk, and
   * a retry could succeed over pages the kernel has dropped. Fail the pool instead: abort
   * the transaction (its mappings may point at lost data), set needs_check, refuse writes.
   */
  private async failData(): Promise<void> {
    this.changed = true;
    if (this.poolMode === 'fail') return;
    this.setMode('fail');
    await this.abortAndMark();
  }

  private async abortAndMark(): Promise<void> {
    try {
      await this.metadata.abort();
      await this.metadata.setNeedsCheck();
    } catch {
      // The metadata device itself is failing; refusing writes is all that is left.
    }
    this.wakeSpaceWaiters();
  }

  /** Moves to `mode`; once `ro` or `fail`, only to a worse one. */
  private setMode(mode: PoolMode): void {
    if (this.poolMode === mode) return;
    if (!this.writable && MODE_RANK[mode] < MODE_RANK[this.poolMode]) return;
    this.poolMode = mode;
    this.emit('mode', mode);
  }

  private afterAllocation(): void {
    const { usedBlocks, totalBlocks } = this.metadata.dataUsage;
    const free = totalBlocks - usedBlocks;
    if (!this.lowWaterSignalled && free * 100 < totalBlocks * this.options.lowWaterPercent) {
      this.lowWaterSignalled = true;
      this.emit('lowWater', { freeBlocks: free, totalBlocks });
    }
  }

  private waitForSpace(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.spaceWaiters = this.spaceWaiters.filter((w) => w !== done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      this.spaceWaiters.push(done);
    });
  }

  private wakeSpaceWaiters(): void {
    const waiters = this.spaceWaiters;
    this.spaceWaiters = [];
    for (const w of waiters) w();
  }
}

function checkBlockSize(bytes: number): number {
  const unit = 64 * 1024;
  if (!Number.isSafeInteger(bytes) || bytes < unit || bytes > 2 ** 30 || bytes % unit !== 0) {
    throw new BadInputError(`a data block size of ${bytes} bytes is not supported`, {
      hint: 'use a multiple of 64 KiB from 64 KiB to 1 GiB (dm.blocksize)',
    });
  }
  return bytes / SECTOR_SIZE;
}

/** Whether discarding on `dev` returns space (punches holes) rather than writing zeros. */
function canPunchHoles(dev: BlockDevice): boolean {
  return dev.punchesHoles !== false;
}
