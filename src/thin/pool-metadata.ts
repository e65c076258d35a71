/**
 * PoolMetadata: the metadata of one thin pool, in the kernel's on-disk format — what
 * dm-thin-metadata.c is to the kernel. It formats and opens metadata devices, creates thin
 * devices and snapshots, maps virtual blocks to data blocks, and commits.
 *
 * Lifecycle: `format` or `open` → operations (each is a small transaction step, run one at a
 * time) → `commit` makes everything so far durable at once → `close`. `abort` forgets
 * everything since the last commit. A crash at any point leaves the last commit intact.
 *
 * Contracts:
 * - Device details (mapped count, times) are kept in memory and written at commit, as the
 *   kernel does.
 * - Data blocks freed in a transaction are not handed out again before the next commit.
 * - A failure in the middle of a change (I/O, damaged metadata, metadata space exhausted)
 *   leaves the object failed: every later call rethrows until `abort()` re-reads the last
 *   commit. Errors found before anything changed (no such device, device exists, data
 *   space full) leave it usable.
 */

import type { BlockDevice } from '../block/index.js';
import {
  BlockManager,
  type BlockManagerOptions,
  btree,
  DiskSpaceMap,
  MAX_METADATA_BLOCKS,
  METADATA_BLOCK_SIZE,
  MetadataSpaceMap,
  TransactionManager,
  valueAsU64,
} from '../pdata/index.js';
import {
  BadInputError,
  BusyError,
  ExistsError,
  InternalError,
  IoError,
  MetadataCorruptError,
  Mutex,
  NoSpaceError,
  NotFoundError,
  ThinpError,
  writeU64LE,
} from '../util/index.js';
import {
  DATA_BLOCK_LIMIT,
  decodeBlockTime,
  encodeBlockTime,
  TIME_LIMIT,
} from './format/block-time.js';
import { type DeviceDetails, decodeDetails, encodeDetails } from './format/device-details.js';
import {
  checkSuperblockForOpen,
  decodeSuperblock,
  encodeSuperblock,
  METADATA_BLOCK_SECTORS,
  NEEDS_CHECK_FLAG,
  SUPERBLOCK_MAGIC,
  SUPERBLOCK_VERSION,
  type Superblock,
  superblockValidator,
} from './format/superblock.js';
import { type ThinTrees, thinTrees } from './value-types.js';

/** Thin device ids the kernel accepts: 0 .. 2^24 - 1. */
export const THIN_ID_LIMIT = 2 ** 24;
/** Data block sizes in sectors: 64 KiB .. 1 GiB in steps of 64 KiB. */
export const MIN_DATA_BLOCK_SECTORS = 128;
export const MAX_DATA_BLOCK_SECTORS = 2_097_152;

export interface FormatOptions {
  /** Data block size in 512-byte sectors. */
  dataBlockSize: number;
  /** Size of the data device in data blocks. */
  nrDataBlocks: number;
  /** Format even though block 0 is not blank. */
  force?: boolean;
  cacheBlocks?: number;
  maxCacheBlocks?: number;
}

/**
 * The metadata block cache: `cacheBlocks` fixes its size; without it the cache holds the
 * metadata in use (and a quarter more), re-sized at every open and commit, from 4 MiB up to
 * `maxCacheBlocks` (default 64 MiB).
 */
export interface OpenOptions {
  cacheBlocks?: number;
  maxCacheBlocks?: number;
}

export interface Mapping {
  dataBlock: number;
  time: number;
  /** The block may be shared with another device: a write must copy it first. */
  shared: boolean;
}

export interface SpaceUsage {
  usedBlocks: number;
  totalBlocks: number;
}

/** The roots of a set of trees: the live ones or a held metadata snapshot's. */
export interface TreeRoots {
  mappingRoot: number;
  detailsRoot: number;
}

export class PoolMetadata {
  readonly device: BlockDevice;
  private readonly bm: BlockManager;
  private readonly tm: TransactionManager;
  private readonly lock = new Mutex();
  /** `subtreeRootNow`'s roots, valid for one value of `lock.released`. */
  private readonly subtreeRoots = { section: -1, byId: new Map<number, number>() };
  private msm!: MetadataSpaceMap;
  private dsm!: DiskSpaceMap;
  private trees!: ThinTrees;
  private committed!: Superblock;
  private mappingRoot = 0;
  private detailsRoot = 0;
  private poolTime = 0;
  private transId = 0;
  private flags = 0;
  private held = 0;
  private readonly details = new Map<number, { d: DeviceDetails; changed: boolean }>();
  private failure: unknown;
  /** Data blocks freed by commits that `commit()` has not yet handed to its caller. */
  private freedSinceCommit: number[] = [];

  private constructor(device: BlockDevice, cache: OpenOptions) {
    this.device = device;
    this.bm = new BlockManager(device, cacheOptions(cache));
    this.tm = new TransactionManager(this.bm);
  }

  /** Writes a new, empty pool's metadata to `device` and commits it. */
  static async format(device: BlockDevice, options: FormatOptions): Promise<PoolMetadata> {
    checkDataBlockSize(options.dataBlockSize);
    checkDataBlocks(options.nrDataBlocks);
    const nrBlocks = Math.min(Math.floor(device.size / METADATA_BLOCK_SIZE), MAX_METADATA_BLOCKS);
    if (nrBlocks < 16) {
      throw new BadInputError(
        `${device.name}: a metadata device of ${device.size} bytes is too small`,
        { hint: 'give it at least 64 KiB (thinp defaults to 2G in loop mode)' },
      );
    }
    if (options.force !== true && !(await isBlank(device))) {
      throw new ExistsError(`${device.name} already holds metadata (block 0 is not blank)`, {
        hint: 'open it instead, or wipe its first 4 KiB to start over',
      });
    }
    const md = new PoolMetadata(device, options);
    md.msm = await MetadataSpaceMap.create(md.tm, nrBlocks, 1);
    md.dsm = await DiskSpaceMap.create(md.tm);
    md.trees = thinTrees(md.tm, md.dsm);
    md.mappingRoot = await btree.emptyTree(md.trees.top);
    md.detailsRoot = await btree.emptyTree(md.trees.details);
    await md.dsm.extend(options.nrDataBlocks);
    md.committed = {
      flags: 0,
      uuid: Buffer.alloc(16),
      magic: SUPERBLOCK_MAGIC,
      version: SUPERBLOCK_VERSION,
      time: 0,
      transId: 0,
      heldRoot: 0,
      dataSpaceMap: md.dsm.root(),
      metadataSpaceMap: md.msm.root(),
      dataMappingRoot: md.mappingRoot,
      deviceDetailsRoot: md.detailsRoot,
      dataBlockSize: options.dataBlockSize,
      metadataBlockSize: METADATA_BLOCK_SECTORS,
      metadataNrBlocks: nrBlocks,
      compatFlags: 0,
      compatRoFlags: 0,
      incompatFlags: 0,
    };
    await md.commit();
    return md;
  }

  /** Opens the metadata on `device` as its last commit left it. */
  static async open(device: BlockDevice, options: OpenOptions = {}): Promise<PoolMetadata> {
    const md = new PoolMetadata(device, options);
    await md.load();
    return md;
  }

  private async load(): Promise<void> {
    this.bm.discardAll();
    this.details.clear();
    const sb = decodeSuperblock(await this.bm.read(0, superblockValidator));
    checkSuperblockForOpen(sb);
    checkDataBlockSize(sb.dataBlockSize, 'superblock');
    if (sb.metadataSpaceMap.nrBlocks > this.bm.nrBlocks) {
      throw new MetadataCorruptError(
        'superblock',
        0,
        `the metadata space map covers ${sb.metadataSpaceMap.nrBlocks} blocks but ` +
          `${this.device.name} holds only ${this.bm.nrBlocks}`,
      );
    }
    this.committed = sb;
    this.msm = await MetadataSpaceMap.open(this.tm, sb.metadataSpaceMap);
    this.bm.fitCacheTo(this.msm.nrAllocated);
    this.dsm = await DiskSpaceMap.open(this.tm, sb.dataSpaceMap);
    this.trees = thinTrees(this.tm, this.dsm);
    this.mappingRoot = sb.dataMappingRoot;
    this.detailsRoot = sb.deviceDetailsRoot;
    this.poolTime = sb.time;
    this.transId = sb.transId;
    this.flags = sb.flags;
    this.held = sb.heldRoot;
    this.tm.forgetShadows();
    this.failure = undefined;
  }

  // -------------------------------------------------------------------------------------
  // Devices

  /** Creates thin device `id` with no mappings. */
  createThin(id: number): Promise<void> {
    return this.change(async () => {
      checkThinId(id);
      await this.mustNotExist(id);
      const root = await btree.emptyTree(this.trees.bottom);
      this.mappingRoot = (await btree.insert(this.trees.top, this.mappingRoot, id, u64(root))).root;
      const t = this.poolTime;
      this.details.set(id, {
        d: { mappedBlocks: 0, transactionId: this.transId, creationTime: t, snapshottedTime: t },
        changed: true,
      });
    });
  }

  /** Creates `id` as a snapshot of `origin`: both share every mapping until written. O(1). */
  createSnapshot(id: number, origin: number): Promise<void> {
    return this.change(async () => {
      checkThinId(id);
      await this.mustNotExist(id);
      const originDetails = await this.detailsOf(origin);
      if (this.poolTime + 1 >= TIME_LIMIT) {
        throw new NoSpaceError(
          'metadata',
          `the pool has taken ${this.poolTime} snapshots, its limit`,
        );
      }
      const root = await this.subtreeRoot(origin);
      this.tm.inc(root);
      this.mappingRoot = (await btree.insert(this.trees.top, this.mappingRoot, id, u64(root))).root;
      const t = ++this.poolTime;
      this.details.set(id, {
        d: {
          mappedBlocks: originDetails.mappedBlocks,
          transactionId: this.transId,
          creationTime: t,
          snapshottedTime: t,
        },
        changed: true,
      });
      this.markChanged(origin, { ...originDetails, snapshottedTime: t });
    });
  }

  /** Deletes device `id`; blocks no one else references become free after the commit. */
  deleteDevice(id: number): Promise<void> {
    return this.change(async () => {
      await this.detailsOf(id);
      this.details.delete(id);
      this.detailsRoot = (await btree.remove(this.trees.details, this.detailsRoot, id)).root;
      const r = await btree.remove(this.trees.top, this.mappingRoot, id);
      if (r.removed === undefined) throw this.corruptDevice(id, 'has details but no mapping tree');
      this.mappingRoot = r.root;
    });
  }

  /** Whether device `id` exists. */
  exists(id: number): Promise<boolean> {
    return this.query(async () => this.hasDevice(id));
  }

  /** The details of device `id` as they would be committed now. */
  deviceDetails(id: number): Promise<DeviceDetails> {
    return this.query(async () => ({ ...(await this.detailsOf(id)) }));
  }

  /** Every device id, in increasing order. */
  deviceIds(): Promise<number[]> {
    return this.query(async () => {
      const ids: number[] = [];
      await btree.walk(this.trees.top, this.mappingRoot, (key) => {
        ids.push(key);
      });
      return ids;
    });
  }

  // -------------------------------------------------------------------------------------
  // Mappings

  /** The mapping of `vblock` in device `id`, or undefined when it is unmapped. */
  lookup(id: number, vblock: number): Promise<Mapping | undefined> {
    return this.query(async () => {
      const d = await this.detailsOf(id);
      const v = await btree.lookup(this.trees.bottom, await this.subtreeRoot(id), vblock);
      if (v === undefined) return undefined;
      const bt = decodeBlockTime(v);
      return { ...bt, shared: d.snapshottedTime > bt.time };
    });
  }

  /**
   * `lookup` at once, without the lock: the mapping, undefined when unmapped, or null when
   * it cannot be known without waiting (an operation holds or awaits the lock, a block on
   * the way is not cached, the device is unknown, or the metadata has failed); then call
   * `lookup`. With the lock free no operation is part-way through, so the live trees are
   * whole; the answer is the one `lookup` would give now.
   */
  lookupNow(id: number, vblock: number): Mapping | undefined | null {
    if (this.lock.locked || this.failure !== undefined) return null;
    const d = this.detailsNow(id);
    if (d === undefined) return null;
    const root = this.subtreeRootNow(id);
    if (root === undefined) return null;
    const v = btree.lookupCached(this.trees.bottom, root, vblock);
    if (v === null) return null;
    if (v === undefined) return undefined;
    const bt = decodeBlockTime(v);
    return { dataBlock: bt.dataBlock, time: bt.time, shared: d.snapshottedTime > bt.time };
  }

  /**
   * The root of device `id`'s mapping tree, from cached blocks, or undefined. Kept between
   * calls until the metadata lock's next critical section (`Mutex.released`): every change
   * of the top-level tree runs inside one, and this runs only while the lock is free.
   */
  private subtreeRootNow(id: number): number | undefined {
    const roots = this.subtreeRoots;
    if (roots.section !== this.lock.released) {
      roots.section = this.lock.released;
      roots.byId.clear();
    }
    let root = roots.byId.get(id);
    if (root !== undefined) return root;
    root = this.cachedSubtreeRoot(id);
    if (root !== undefined) roots.byId.set(id, root);
    return root;
  }

  /** The root of device `id`'s mapping tree from the live top-level tree's cached nodes. */
  private cachedSubtreeRoot(id: number): number | undefined {
    const top = btree.lookupCached(this.trees.top, this.mappingRoot, id);
    return top === undefined || top === null ? undefined : valueAsU64(top);
  }

  /** Device `id`'s details if known at once (kept in memory, or a cached block). */
  private detailsNow(id: number): DeviceDetails | undefined {
    const cached = this.details.get(id);
    if (cached !== undefined) return cached.d;
    const v = btree.lookupCached(this.trees.details, this.detailsRoot, id);
    return v === undefined || v === null ? undefined : decodeDetails(v);
  }

  /** Allocates a free data block (reference count 1) for a new mapping. */
  allocDataBlock(): Promise<number> {
    return this.change(async () => this.dsm.newBlockNow() ?? this.dsm.newBlock());
  }

  /**
   * A new mapping of unmapped `vblock` of device `id`, done at once when it needs no I/O: the
   * lock is free, the device's details are in memory, the data block comes from
   * `DiskSpaceMap.newBlockNow` and the mapping goes in with `btree.insertNow` (every block
   * on its path cached and already this transaction's own, so the tree's root stays where it
   * is), after `btree.makeRoomNow` has split or rebalanced a full leaf at once if it had to.
   * `fill(block)` writes the data block in between, at once: true when written. Returns
   * true when mapped. False when any of it cannot be done at once (then `allocDataBlock`,
   * the fill and `insertMapping`), having changed nothing but, it may be, a leaf split at
   * once (a change of the tree's shape alone); a block whose fill returns false or throws is
   * given back, freed in this transaction as `releaseDataBlock` would, and the fill's error
   * is rethrown.
   */
  provisionNow(id: number, vblock: number, fill: (block: number) => boolean): boolean {
    if (this.lock.locked || this.failure !== undefined) return false;
    const entry = this.details.get(id);
    const root = this.subtreeRootNow(id);
    if (entry === undefined || root === undefined) return false;
    if (!btree.makeRoomNow(this.trees.bottom, root, vblock)) return false;
    const block = this.dsm.newBlockNow();
    if (block === undefined) return false;
    let filled = false;
    try {
      filled = fill(block);
    } finally {
      if (!filled) this.dsm.releaseNow(block);
    }
    if (!filled) return false;
    const value = encodeBlockTime({ dataBlock: block, time: this.poolTime });
    if (!btree.insertNow(this.trees.bottom, root, vblock, value)) {
      this.dsm.releaseNow(block);
      throw new InternalError(
        `block ${vblock} of thin device ${id}: checked, yet not mapped at once`,
      );
    }
    const d = entry.d;
    this.markChanged(id, { ...d, mappedBlocks: d.mappedBlocks + 1 });
    return true;
  }

  /** Gives back a data block from `allocDataBlock` that was never mapped. */
  releaseDataBlock(block: number): Promise<void> {
    return this.change(() => this.dsm.dec(block));
  }

  /** The first mapping of device `id` at or after `vblock`, or undefined. */
  nextMapping(id: number, vblock: number): Promise<(Mapping & { vblock: number }) | undefined> {
    return this.query(async () => {
      const d = await this.detailsOf(id);
      const next = await btree.lookupNext(this.trees.bottom, await this.subtreeRoot(id), vblock);
      if (next === undefined) return undefined;
      const bt = decodeBlockTime(next.value);
      return { vblock: next.key, ...bt, shared: d.snapshottedTime > bt.time };
    });
  }

  /** Visits every run of free data blocks as [first, length] (committed or not). */
  forEachFreeDataRun(visit: (first: number, length: number) => Promise<void>): Promise<void> {
    return this.query(() => this.dsm.forEachFreeRun(visit));
  }

  /**
   * Maps `vblock` of device `id` to `dataBlock` at the current pool time. The data block's
   * count is not changed (the allocation gave it its reference); an overwritten mapping to a
   * different block releases that block. Returns whether the mapping is new.
   */
  insertMapping(id: number, vblock: number, dataBlock: number): Promise<boolean> {
    return this.change(async () => {
      checkVblock(vblock);
      if (!Number.isSafeInteger(dataBlock) || dataBlock < 0 || dataBlock >= this.dsm.size) {
        throw new BadInputError(
          `data block ${dataBlock} is beyond the data device (${this.dsm.size} blocks)`,
        );
      }
      const d = await this.detailsOf(id);
      const value = encodeBlockTime({ dataBlock, time: this.poolTime });
      // In place when the path is this transaction's own (see provisionNow), else walked.
      const root = this.cachedSubtreeRoot(id);
      const inserted =
        (root !== undefined && btree.insertNow(this.trees.bottom, root, vblock, value)) ||
        (await this.inSubtree(id, async (subtree) => {
          const r = await btree.insert(this.trees.bottom, subtree, vblock, value);
          return { root: r.root, result: r.inserted };
        }));
      if (inserted) this.markChanged(id, { ...d, mappedBlocks: d.mappedBlocks + 1 });
      return inserted;
    });
  }

  /** Unmaps `vblock` of device `id`, releasing its data block. Returns whether it was mapped. */
  removeMapping(id: number, vblock: number): Promise<boolean> {
    return this.change(async () => {
      const d = await this.detailsOf(id);
      const removed = await this.inSubtree(id, async (root) => {
        const r = await btree.remove(this.trees.bottom, root, vblock);
        return { root: r.root, result: r.removed !== undefined };
      });
      if (removed) this.markChanged(id, { ...d, mappedBlocks: d.mappedBlocks - 1 });
      return removed;
    });
  }

  /** Unmaps every block in [begin, end) of device `id`; returns how many were mapped. */
  removeRange(id: number, begin: number, end: number): Promise<number> {
    return this.change(async () => {
      const d = await this.detailsOf(id);
      const count = await this.inSubtree(id, async (root) => {
        const r = await btree.removeRange(this.trees.bottom, root, begin, end);
        return { root: r.root, result: r.count };
      });
      if (count > 0) this.markChanged(id, { ...d, mappedBlocks: d.mappedBlocks - count });
      return count;
    });
  }

  /** Mapped blocks of device `id`. */
  async mappedBlocks(id: number): Promise<number> {
    return (await this.deviceDetails(id)).mappedBlocks;
  }

  /** The highest mapped virtual block of device `id`, or undefined. */
  highestMapped(id: number): Promise<number | undefined> {
    return this.query(async () => btree.highestKey(this.trees.bottom, await this.subtreeRoot(id)));
  }

  /** Levels of device `id`'s mapping tree: 1 while its mappings fit one leaf. */
  mappingTreeDepth(id: number): Promise<number> {
    return this.query(async () => btree.depth(this.trees.bottom, await this.subtreeRoot(id)));
  }

  /** Visits the mappings of device `id` in increasing virtual block order. */
  walkMappings(
    id: number,
    visit: (vblock: number, dataBlock: number, time: number) => void | Promise<void>,
    roots?: TreeRoots,
  ): Promise<void> {
    return this.query(async () => {
      const root =
        roots === undefined
          ? await this.subtreeRoot(id)
          : await this.subtreeRootIn(roots.mappingRoot, id);
      await btree.walk(this.trees.bottom, root, (vblock, v) => {
        const bt = decodeBlockTime(v);
        return visit(vblock, bt.dataBlock, bt.time);
      });
    });
  }

  /** The committed details and ids of the trees at `roots` (e.g. a held snapshot's). */
  devicesIn(roots: TreeRoots): Promise<Array<{ id: number; details: DeviceDetails }>> {
    return this.query(async () => {
      const out: Array<{ id: number; details: DeviceDetails }> = [];
      await btree.walk(this.trees.details, roots.detailsRoot, (id, v) => {
        out.push({ id, details: decodeDetails(v) });
      });
      return out;
    });
  }

  // -------------------------------------------------------------------------------------
  // Pool state

  get dataBlockSize(): number {
    return this.committed.dataBlockSize;
  }

  get time(): number {
    return this.poolTime;
  }

  get transactionId(): number {
    return this.transId;
  }

  /** Sets the transaction id if it is `current` now (compare and swap). */
  setTransactionId(current: number, next: number): Promise<void> {
    return this.change(async () => {
      if (current !== this.transId) {
        throw new BadInputError(
          `transaction id mismatch: the pool is at ${this.transId}, not ${current}`,
          { hint: "read it with 'thinp pool status' and retry" },
        );
      }
      if (!Number.isSafeInteger(next) || next < 0) {
        throw new BadInputError(`transaction id ${next} is not a non-negative integer`);
      }
      this.transId = next;
    });
  }

  get needsCheck(): boolean {
    return (this.flags & NEEDS_CHECK_FLAG) !== 0;
  }

  /** Sets the needs_check flag and writes it to the superblock at once, outside a commit. */
  async setNeedsCheck(): Promise<void> {
    await this.lock.run(async () => {
      this.flags |= NEEDS_CHECK_FLAG;
      this.committed = { ...this.committed, flags: this.committed.flags | NEEDS_CHECK_FLAG };
      const buf = Buffer.alloc(METADATA_BLOCK_SIZE);
      encodeSuperblock(this.committed, buf);
      await this.bm.writeSuperblock(buf, superblockValidator);
    });
  }

  /** The held metadata snapshot's superblock copy, or 0. */
  get heldRoot(): number {
    return this.held;
  }

  get dataUsage(): SpaceUsage {
    return { usedBlocks: this.dsm.nrAllocated, totalBlocks: this.dsm.size };
  }

  get metadataUsage(): SpaceUsage {
    return { usedBlocks: this.msm.nrAllocated, totalBlocks: this.msm.size };
  }

  /** How the metadata block cache is doing. */
  get cacheStats(): { cachedBlocks: number; capacity: number; reads: number; writes: number } {
    return {
      cachedBlocks: this.bm.cachedBlocks,
      capacity: this.bm.cacheCapacity,
      reads: this.bm.deviceReads,
      writes: this.bm.deviceWrites,
    };
  }

  /** The live trees' roots (as of the last operation). */
  get roots(): TreeRoots {
    return { mappingRoot: this.mappingRoot, detailsRoot: this.detailsRoot };
  }

  /** Grows the data device to `nrBlocks` data blocks. */
  resizeData(nrBlocks: number): Promise<void> {
    return this.change(async () => {
      checkDataBlocks(nrBlocks);
      if (nrBlocks < this.dsm.size) {
        throw new BadInputError(
          `the data device cannot shrink from ${this.dsm.size} to ${nrBlocks} blocks`,
        );
      }
      await this.dsm.extend(nrBlocks);
    });
  }

  /** Grows the metadata space map to `nrBlocks` (the device must already be that large). */
  resizeMetadata(nrBlocks: number): Promise<void> {
    return this.change(async () => {
      if (nrBlocks < this.msm.size) {
        throw new BadInputError(
          `the metadata device cannot shrink from ${this.msm.size} to ${nrBlocks} blocks`,
        );
      }
      if (nrBlocks > this.bm.nrBlocks || nrBlocks > MAX_METADATA_BLOCKS) {
        throw new BadInputError(
          `${nrBlocks} metadata blocks do not fit ${this.device.name} ` +
            `(${this.bm.nrBlocks} blocks; the format's limit is ${MAX_METADATA_BLOCKS})`,
        );
      }
      this.msm.extend(nrBlocks);
    });
  }

  // -------------------------------------------------------------------------------------
  // Metadata snapshot

  /**
   * Commits, then keeps a frozen copy of the trees readable at `heldRoot`, and commits again:
   * one critical section, so no other operation moves the roots between the copy and the
   * references it takes.
   */
  reserveMetadataSnap(): Promise<number> {
    return this.change(async () => {
      if (this.held !== 0) {
        throw new BusyError(`a metadata snapshot is already held (block ${this.held})`, {
          hint: 'release it first',
        });
      }
      await this.commitLocked();
      const copy = await this.tm.newBlock(superblockValidator);
      encodeSuperblock(
        {
          ...this.committed,
          heldRoot: 0,
          dataSpaceMap: zeroRoot(),
          metadataSpaceMap: zeroRoot(),
        },
        copy.buf,
      );
      this.tm.inc(this.committed.dataMappingRoot);
      this.tm.inc(this.committed.deviceDetailsRoot);
      this.held = copy.loc;
      await this.commitLocked();
      return this.held;
    });
  }

  /** Drops the held metadata snapshot, freeing what only it referenced. */
  async releaseMetadataSnap(): Promise<void> {
    await this.change(async () => {
      if (this.held === 0) {
        throw new NotFoundError('no metadata snapshot is held', { hint: 'nothing to release' });
      }
      const copy = decodeSuperblock(await this.tm.read(this.held, superblockValidator), this.held);
      await btree.deleteTree(this.trees.top, copy.dataMappingRoot);
      await btree.deleteTree(this.trees.details, copy.deviceDetailsRoot);
      this.tm.dec(this.held);
      this.held = 0;
    });
  }

  /** The roots of the held metadata snapshot. */
  heldRoots(): Promise<TreeRoots> {
    return this.query(async () => {
      if (this.held === 0) throw new NotFoundError('no metadata snapshot is held');
      const copy = decodeSuperblock(await this.tm.read(this.held, superblockValidator), this.held);
      return { mappingRoot: copy.dataMappingRoot, detailsRoot: copy.deviceDetailsRoot };
    });
  }

  // -------------------------------------------------------------------------------------
  // Transactions

  /**
   * Makes every change so far durable: dirty blocks, flush, superblock, flush. Resolves with
   * the data blocks freed by the commits since the last `commit()` resolved (its own and
   * those inside `reserveMetadataSnap`): free from now on, and the caller's to discard
   * before it hands them out again.
   */
  commit(): Promise<number[]> {
    return this.change(async () => {
      await this.commitLocked();
      const freed = this.freedSinceCommit;
      this.freedSinceCommit = [];
      return freed;
    });
  }

  /** The commit itself, run by an operation that holds the lock. */
  private async commitLocked(): Promise<void> {
    for (const [id, entry] of this.details) {
      if (!entry.changed) continue;
      const v = encodeDetails(entry.d);
      this.detailsRoot = (await btree.insert(this.trees.details, this.detailsRoot, id, v)).root;
      entry.changed = false;
    }
    await this.dsm.commit();
    await this.msm.prepareCommit();
    await this.tm.endOperation();
    await this.bm.flush();
    const sb: Superblock = {
      ...this.committed,
      flags: this.flags,
      version: SUPERBLOCK_VERSION,
      time: this.poolTime,
      transId: this.transId,
      heldRoot: this.held,
      dataSpaceMap: this.dsm.root(),
      metadataSpaceMap: this.msm.root(),
      dataMappingRoot: this.mappingRoot,
      deviceDetailsRoot: this.detailsRoot,
    };
    const buf = Buffer.alloc(METADATA_BLOCK_SIZE);
    encodeSuperblock(sb, buf);
    await this.bm.writeSuperblock(buf, superblockValidator);
    this.committed = sb;
    this.tm.forgetShadows();
    this.msm.committedNow();
    this.bm.fitCacheTo(this.msm.nrAllocated);
    for (const b of this.dsm.committedNow()) this.freedSinceCommit.push(b);
  }

  /** Forgets every change since the last commit. */
  abort(): Promise<void> {
    return this.lock.run(() => this.load());
  }

  /** Releases the device; uncommitted changes are lost. Does not close the device. */
  async close(): Promise<void> {
    await this.lock.run(async () => {
      this.bm.discardAll();
    });
  }

  // -------------------------------------------------------------------------------------
  // Internals

  private query<T>(fn: () => Promise<T>): Promise<T> {
    return this.lock.run(async () => {
      this.throwIfFailed();
      try {
        return await fn();
      } finally {
        await this.tm.endOperation();
      }
    });
  }

  private change<T>(fn: () => Promise<T>): Promise<T> {
    return this.lock.run(async () => {
      this.throwIfFailed();
      try {
        return await fn();
      } catch (err) {
        if (breaksTransaction(err)) this.failure = err;
        throw err;
      } finally {
        await this.tm.endOperation().catch((err: unknown) => {
          this.failure ??= err;
        });
      }
    });
  }

  private throwIfFailed(): void {
    if (this.failure === undefined) return;
    throw new IoError(this.device.name, 'metadata', 'an earlier metadata change failed', {
      cause: this.failure,
      hint: 'abort the transaction or reopen the pool; the last commit is intact',
    });
  }

  private async hasDevice(id: number): Promise<boolean> {
    if (this.details.has(id)) return true;
    return (await btree.lookup(this.trees.top, this.mappingRoot, id)) !== undefined;
  }

  private async mustNotExist(id: number): Promise<void> {
    if (await this.hasDevice(id)) {
      throw new ExistsError(`thin device ${id} already exists`, { hint: 'pick another id' });
    }
  }

  private async detailsOf(id: number): Promise<DeviceDetails> {
    const cached = this.details.get(id);
    if (cached !== undefined) return cached.d;
    const v = await btree.lookup(this.trees.details, this.detailsRoot, id);
    if (v === undefined) {
      if ((await btree.lookup(this.trees.top, this.mappingRoot, id)) !== undefined) {
        throw this.corruptDevice(id, 'has a mapping tree but no details');
      }
      throw new NotFoundError(`thin device ${id} does not exist`, {
        hint: "list the pool's devices to see which ids exist",
      });
    }
    const d = decodeDetails(v);
    this.details.set(id, { d, changed: false });
    return d;
  }

  private markChanged(id: number, d: DeviceDetails): void {
    this.details.set(id, { d, changed: true });
  }

  private subtreeRoot(id: number): Promise<number> {
    return this.subtreeRootIn(this.mappingRoot, id);
  }

  private async subtreeRootIn(mappingRoot: number, id: number): Promise<number> {
    const v = await btree.lookup(this.trees.top, mappingRoot, id);
    if (v === undefined) {
      throw new NotFoundError(`thin device ${id} does not exist`, {
        hint: "list the pool's devices to see which ids exist",
      });
    }
    return valueAsU64(v);
  }

  /**
   * Runs `fn` on device `id`'s bottom tree after shadowing the top-level path to it, then
   * stores the bottom tree's new root in the (already writable) top-level leaf — the
   * kernel's order, so that a shared top-level leaf is copied before its subtree is changed.
   */
  private async inSubtree<T>(
    id: number,
    fn: (root: number) => Promise<{ root: number; result: T }>,
  ): Promise<T> {
    const slot = await btree.insertSlot(this.trees.top, this.mappingRoot, id);
    if (!slot.exists) throw this.corruptDevice(id, 'has details but no mapping tree');
    this.mappingRoot = slot.root;
    const r = await fn(valueAsU64(slot.leaf.value(slot.index)));
    slot.leaf.setValueU64(slot.index, r.root);
    return r.result;
  }

  private corruptDevice(id: number, problem: string): MetadataCorruptError {
    return new MetadataCorruptError('thin device trees', undefined, `thin device ${id} ${problem}`);
  }
}

function cacheOptions(o: OpenOptions): BlockManagerOptions {
  return {
    ...(o.cacheBlocks === undefined ? {} : { cacheBlocks: o.cacheBlocks }),
    ...(o.maxCacheBlocks === undefined ? {} : { maxCacheBlocks: o.maxCacheBlocks }),
  };
}

/**
 * Whether `err`, thrown by a metadata change, leaves the transaction broken (I/O, damaged
 * metadata, metadata space exhausted): the object is failed until `abort()`, and a pool over
 * it goes read-only. Errors found before anything changed (bad input, no such device, data
 * space full) do not.
 */
export function breaksTransaction(err: unknown): boolean {
  if (!(err instanceof ThinpError)) return true;
  if (err instanceof NoSpaceError) return err.space === 'metadata';
  return err instanceof MetadataCorruptError || err instanceof IoError;
}

function checkThinId(id: number): void {
  if (!Number.isSafeInteger(id) || id < 0 || id >= THIN_ID_LIMIT) {
    throw new BadInputError(`thin device id ${id} is out of range`, {
      hint: `use an id from 0 to ${THIN_ID_LIMIT - 1}`,
    });
  }
}

function checkVblock(vblock: number): void {
  if (!Number.isSafeInteger(vblock) || vblock < 0) {
    throw new BadInputError(`virtual block ${vblock} is not a non-negative integer`);
  }
}

function checkDataBlockSize(sectors: number, source = 'data block size'): void {
  if (
    !Number.isSafeInteger(sectors) ||
    sectors < MIN_DATA_BLOCK_SECTORS ||
    sectors > MAX_DATA_BLOCK_SECTORS ||
    sectors % MIN_DATA_BLOCK_SECTORS !== 0
  ) {
    throw new BadInputError(`${source}: ${sectors} sectors is not a valid data block size`, {
      hint: 'use a multiple of 128 sectors (64 KiB) from 64 KiB to 1 GiB',
    });
  }
}

function checkDataBlocks(n: number): void {
  if (!Number.isSafeInteger(n) || n < 0 || n >= DATA_BLOCK_LIMIT) {
    throw new BadInputError(`${n} data blocks is out of range (0 .. 2^40 - 1)`);
  }
}

async function isBlank(device: BlockDevice): Promise<boolean> {
  const buf = Buffer.alloc(METADATA_BLOCK_SIZE);
  await device.read(buf, 0);
  return buf.every((b) => b === 0);
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  writeU64LE(b, 0, n);
  return b;
}

function zeroRoot() {
  return { nrBlocks: 0, nrAllocated: 0, bitmapRoot: 0, refCountRoot: 0 };
}
