/**
 * DeviceSet: named thin devices on one thin pool, the "device set" of Docker's
 * devicemapper driver. The pool's metadata knows devices only by thin id and has no sizes;
 * the device set keeps a JSON file per device under ROOT/metadata with its id, size and
 * origin, and wraps every change in a transaction so that a crash mid-way is undone.
 *
 * A lifecycle:
 * - Make a pool: `DeviceSet.create(config)` makes ROOT/devicemapper/data and .../metadata
 *   as sparse files of dm.loopdatasize and dm.loopmetadatasize (loop mode), formats the
 *   metadata for dm.blocksize, writes metadata/deviceset-metadata and, last, ROOT/thinp.json.
 *   It refuses to overwrite a pool, and reports a half-made one.
 * - Open it later: `DeviceSet.open(config)` opens the pool, settles a transaction a crash
 *   left open (`recovered` says which), and finishes removals that were deferred while a
 *   device was busy (`finishedRemovals`).
 * - Make a device: `createDevice('scratch', 10 GiB)` takes the next free thin id from
 *   next_device_id (skipping ids the pool already has), creates it in the pool and writes
 *   metadata/scratch. `createSnapshot('monday', 'scratch')` makes an O(1) snapshot of the
 *   same size, also of an origin in use: the pool quiesces the origin meanwhile (its writes
 *   in flight finish, new ones wait), as Docker suspends it, so the snapshot is one point in
 *   time. Both refuse while free data or metadata space is below dm.min_free_space.
 * - Use it: `open('scratch')` gives its ThinDevice; the device is busy until `release`.
 * - Look: `list()` gives each device's mapped, exclusive and shared bytes; `status()` the
 *   pool's. Grow the pool with `resizeData` or `resizeMetadata`.
 * - Remove it: `removeDevice('monday')`. A busy device is a BusyError, or, with
 *   dm.use_deferred_removal, is marked `deleted` and removed once released. Snapshots are
 *   independent: removing the device one was taken from leaves it intact.
 * - `close()` commits and closes the pool's devices.
 *
 * Contracts:
 * - Every change is a transaction (transaction.ts): intent in transaction-metadata, the
 *   pool operation, the device's JSON file, then the pool's transaction id, which commits.
 *   After a crash at any point, the next open shows the state before the change or after it.
 * - Changes run one at a time. I/O on open devices runs alongside them.
 * - The caller holds the root lock (root-lock.ts) while the set is open: no other process
 *   writes these files meanwhile.
 */

import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config/index.js';
import { type PoolStatus, type ThinDevice, ThinPool, type ThinPoolOptions } from '../pool/index.js';
import { THIN_ID_LIMIT } from '../thin/index.js';
import {
  BadInputError,
  BusyError,
  crashPoint,
  ExistsError,
  Mutex,
  NoSpaceError,
  THINP_VERSION,
} from '../util/index.js';
import { checkDeviceName } from './device-names.js';
import { DeviceTable, refuseOldDeviceFiles } from './device-table.js';
import { blockUsage } from './device-usage.js';
import { checkGrowth, checkMinFreeSpace } from './free-space.js';
import {
  createPoolFiles,
  type OpenedPoolFiles,
  openPoolFiles,
  type PoolFiles,
  removePoolFiles,
} from './pool-files.js';
import { PoolSpace } from './pool-space.js';
import { ReplaceLog } from './replace-log.js';
import { readStateFile, writeStateFile } from './state-files.js';
import {
  DEVICE_SET_FILE,
  type DeviceRecord,
  decodeDeviceSet,
  encodeDeviceSet,
  encodePoolConfig,
  type PoolConfigRecord,
  type ReplaceRecord,
} from './state-records.js';
import { type OpenTransaction, TransactionLog } from './transaction.js';
import type { GroupDeviceUse as PoolDeviceUse, VolumeGroup } from './volume-group.js';

export type { PoolDeviceUse };

/** A device as the set knows it. */
export interface DeviceEntry {
  name: string;
  id: number;
  size: number;
  /** The device it was snapshotted from, as named then. */
  origin: string | undefined;
  /** The transaction that created it. */
  transactionId: number;
  /** False while a device is being set up (the base device before its filesystem is made). */
  initialized: boolean;
  /** For a layer: its parent layer ('' for the base device); undefined for other devices. */
  parent: string | undefined;
}

/** A device the set holds, live or waiting for a deferred removal. */
export interface HeldDevice extends DeviceEntry {
  deleted: boolean;
}

/** What `createDevice` and `createSnapshot` may add to a device. */
export interface NewDeviceOptions {
  /** False for a device whose setup is not finished (default true). */
  initialized?: boolean;
  /** Marks the device as a layer on `parent` ('' for the base device). */
  parent?: string;
}

/** The base device's filesystem as recorded in deviceset-metadata. */
export interface BaseFilesystemRecord {
  uuid: string;
  filesystem: string;
}

/** A line of `list()`: bytes the device maps, alone or shared with others. */
export interface DeviceListing {
  name: string;
  id: number;
  size: number;
  mappedBytes: number;
  exclusiveBytes: number;
  sharedBytes: number;
  /** The device it was snapshotted from, while that device exists; else null. */
  origin: string | null;
}

/** A transaction a crash left open, settled when the set was opened. */
export interface RecoveredTransaction {
  transactionId: number;
  device: string;
  deviceId: number;
}

export type RemoveOutcome = 'removed' | 'deferred';

/** How to open the set; `pool` overrides the pool options the config implies. */
export interface DeviceSetOptions {
  pool?: Omit<
    ThinPoolOptions,
    'zeroBlocks' | 'noSpacePolicy' | 'discardFreed' | 'uncachedWriteMin'
  >;
  /**
   * Keep the devices waiting for a deferred removal at open, for `finishDeferredRemovals()`
   * to remove later: a daemon first learns which of them still have a user (a mount that
   * outlived the previous daemon, whose relay comes back) and holds those open.
   */
  deferRemovals?: boolean;
}

const FIRST_DEVICE_ID = 1;
/** Tries when the pool reports a chosen id as taken (it should not: ids are checked first). */
const MAX_ID_RETRIES = 16;

export class DeviceSet {
  readonly config: Config;
  readonly pool: ThinPool;
  readonly files: PoolFiles;
  readonly recovered: RecoveredTransaction | undefined;
  readonly finishedRemovals: string[] = [];
  /** Devices whose replacement (`replaceDevice`) a crash cut short and the open finished. */
  readonly finishedReplacements: string[] = [];
  private readonly data: OpenedPoolFiles['data'];
  private readonly metadataDevice: OpenedPoolFiles['metadata'];
  /** Direct-lvm mode: the devices of the pool and the division of their space. */
  readonly group: VolumeGroup | undefined;
  /** dm.thinpooldev: the root whose pool this is, and the release of its lock. */
  private readonly adopted: OpenedPoolFiles['adopted'];
  /** The devices under the pool, and how they grow. */
  private readonly space: PoolSpace;
  /** thinp.json as last written or read. */
  private poolRecord: PoolConfigRecord | undefined;
  private readonly devices: DeviceTable;
  private readonly users = new Map<string, number>();
  private readonly changes = new Mutex();
  private readonly transactions: TransactionLog;
  private readonly replacements: ReplaceLog;
  private nextDeviceId = FIRST_DEVICE_ID;
  private baseFs: BaseFilesystemRecord = { uuid: '', filesystem: '' };
  private closed = false;

  private constructor(config: Config, files: OpenedPoolFiles, pool: ThinPool) {
    this.config = config;
    this.pool = pool;
    this.files = { mode: files.mode, dataFile: files.dataFile, metadataFile: files.metadataFile };
    this.data = files.data;
    this.metadataDevice = files.metadata;
    this.group = files.group;
    this.poolRecord = files.record;
    this.space = new PoolSpace(
      pool,
      { data: files.data, metadata: files.metadata },
      files.group,
      this.files,
    );
    this.adopted = files.adopted;
    this.transactions = new TransactionLog(config.layout.metadataDir, pool);
    this.devices = new DeviceTable(config.layout.metadataDir);
    this.replacements = new ReplaceLog(config.layout.metadataDir);
  }

  // -------------------------------------------------------------------------------------
  // Making and opening

  /** Creates the pool the options describe, and an empty device set on it. */
  static async create(config: Config, options: DeviceSetOptions = {}): Promise<DeviceSet> {
    await refuseOldDeviceFiles(config.layout.metadataDir);
    const files = await createPoolFiles(config);
    let pool: ThinPool;
    try {
      pool =
        files.adopted === undefined
          ? await ThinPool.create(files.data, files.metadata, {
              blockSize: config.storage.blockSize,
              ...poolOptions(config, options),
            })
          : await ThinPool.open(files.data, files.metadata, poolOptions(config, options));
    } catch (err) {
      await Promise.all([files.data.close(), files.metadata.close()]);
      if (files.adopted !== undefined) await files.adopted.release();
      else if (files.mode === 'loop') await removePoolFiles(files);
      else await files.group?.erase();
      throw err;
    }
    const set = new DeviceSet(config, files, pool);
    await mkdir(config.layout.metadataDir, { recursive: true, mode: 0o700 });
    await set.saveDeviceSet();
    await set.savePoolConfig({
      ...set.files,
      blockSize: pool.blockSize,
      created: new Date().toISOString(),
      version: THINP_VERSION,
    });
    return set;
  }

  /** Opens the pool at ROOT, settling what a crash left half-done. */
  static async open(config: Config, options: DeviceSetOptions = {}): Promise<DeviceSet> {
    const files = await openPoolFiles(config);
    let pool: ThinPool;
    try {
      pool = await ThinPool.open(files.data, files.metadata, poolOptions(config, options));
    } catch (err) {
      await Promise.all([files.data.close(), files.metadata.close()]);
      await files.adopted?.release();
      throw err;
    }
    const set = new DeviceSet(config, files, pool);
    try {
      if (files.record !== undefined && files.group !== undefined) {
        await set.notePaths(files.record);
      }
      await set.load(options.deferRemovals !== true);
    } catch (err) {
      await set.close().catch(() => undefined);
      throw err;
    }
    return set;
  }

  private async load(finishRemovals: boolean): Promise<void> {
    if (this.group !== undefined && this.pool.mode !== 'ro') await this.space.finishExtensions();
    const dir = this.config.layout.metadataDir;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const file = path.join(dir, DEVICE_SET_FILE);
    const json = await readStateFile(file);
    if (json !== undefined) {
      const record = decodeDeviceSet(file, json);
      this.nextDeviceId = record.nextDeviceId;
      this.baseFs = { uuid: record.baseDeviceUuid, filesystem: record.baseDeviceFilesystem };
    }
    (this as { recovered: RecoveredTransaction | undefined }).recovered = await this.recover();
    await this.devices.load();
    const replaced = await this.replacements.pending();
    if (replaced !== undefined) {
      await this.finishReplacement(replaced);
      this.finishedReplacements.push(replaced.name);
    }
    if (finishRemovals) await this.finishRemovals();
  }

  /** Removes every device waiting for a deferred removal that nobody holds open. */
  private async finishRemovals(): Promise<string[]> {
    const removed: string[] = [];
    for (const [name, record] of this.devices.entries()) {
      if (!record.deleted || this.users.has(name)) continue;
      await this.removeNow(name, record);
      this.finishedRemovals.push(name);
      removed.push(name);
    }
    return removed;
  }

  /**
   * After an open with `deferRemovals`: removes the devices waiting for a deferred removal
   * that nobody holds open now (the others go at their last release); returns their names.
   */
  finishDeferredRemovals(): Promise<string[]> {
    return this.change(() => this.finishRemovals());
  }

  /** Settles the transaction a crash left open, if any, and closes it. */
  private async recover(): Promise<RecoveredTransaction | undefined> {
    const t = await this.transactions.pending();
    if (t === undefined) return undefined;
    await this.settle(t);
    await this.transactions.close(t);
    return { transactionId: t.openTransactionId, device: t.deviceHash, deviceId: t.deviceId };
  }

  /**
   * Ends an open transaction without its operation's effect: a half-done creation is
   * undone, a half-done removal is finished. Either way the thin id leaves the pool and the
   * device's file goes, unless that file names another thin id (then it is not this one's).
   */
  private async settle(t: OpenTransaction): Promise<void> {
    if (await this.pool.metadata.exists(t.deviceId)) await this.pool.deleteDevice(t.deviceId);
    await this.devices.removeIfOf(t.deviceHash, t.deviceId);
  }

  /** Settles `t` after its operation failed; returns whether that worked. */
  private async abandon(t: OpenTransaction): Promise<boolean> {
    try {
      await this.settle(t);
      await this.transactions.close(t);
      return true;
    } catch {
      // The pool refuses changes now (read-only); the next open settles it.
      return false;
    }
  }

  // -------------------------------------------------------------------------------------
  // Changes

  /** Creates an empty thin device `name` of `size` bytes. */
  async createDevice(
    name: string,
    size: number,
    options: NewDeviceOptions = {},
  ): Promise<DeviceEntry> {
    checkDeviceName(name);
    checkDeviceSize(size);
    return this.change(async () => {
      this.devices.checkNew(name);
      checkMinFreeSpace(this.pool.status(), this.config.storage.minFreeSpace, 'device');
      const shape = { size, origin: undefined, ...options };
      return this.addDevice(name, shape, (id) => this.pool.createThin(id));
    });
  }

  /**
   * Creates `name` as a snapshot of `originName`, of the origin's size or of `size` when
   * given (never smaller than the origin: the origin's data would not fit). An origin in
   * use is quiesced for the moment of the snapshot, not refused.
   */
  async createSnapshot(
    name: string,
    originName: string,
    options: NewDeviceOptions & { size?: number } = {},
  ): Promise<DeviceEntry> {
    checkDeviceName(name);
    return this.change(async () => {
      const origin = this.devices.live(originName);
      this.devices.checkNew(name);
      const size = options.size ?? origin.size;
      checkDeviceSize(size);
      if (size < origin.size) {
        throw new BadInputError(
          `a snapshot of ${originName} cannot be smaller than it (${origin.size} bytes)`,
          { hint: `give a size of at least ${origin.size} bytes, or none` },
        );
      }
      checkMinFreeSpace(this.pool.status(), this.config.storage.minFreeSpace, 'snapshot');
      const shape = { ...options, size, origin: originName };
      return this.addDevice(name, shape, (id) => this.pool.createSnapshot(id, origin.deviceId));
    });
  }

  /**
   * Gives device `name` the thin device of `replacement`, which goes: `name`'s old thin
   * device leaves the pool, and `name` keeps its own record but for the thin id, size and
   * origin, which are the replacement's. Neither may be open. This is how new content is
   * made in a snapshot and kept only once complete. A crash part-way is finished at the next
   * open (replace-log.ts): afterwards `name` is the replacement, never half of each.
   */
  replaceDevice(name: string, replacement: string): Promise<DeviceEntry> {
    return this.change(async () => {
      const old = this.devices.live(name);
      this.devices.live(replacement);
      for (const busy of [name, replacement]) {
        const users = this.users.get(busy) ?? 0;
        if (users > 0) {
          throw new BusyError(`device ${busy} is in use (opened ${users} times)`, {
            hint: 'release it first, then replace it',
          });
        }
      }
      const intent = {
        name,
        replacement,
        oldDeviceId: old.deviceId,
        initialized: old.initialized,
        origin: old.origin,
        parent: old.parent,
      };
      await this.replacements.open(intent);
      crashPoint('replace:intent');
      await this.finishReplacement(intent);
      return entryOf(name, this.devices.record(name));
    });
  }

  /**
   * The steps of a replacement, each skipped when a crash left it done: remove `name`'s
   * old thin device, give `name` the replacement's, drop the replacement's file, close.
   */
  private async finishReplacement(intent: ReplaceRecord): Promise<void> {
    const { name, replacement, oldDeviceId } = intent;
    const current = this.devices.peek(name);
    const incoming = this.devices.peek(replacement);
    if (incoming !== undefined) {
      if (current !== undefined && current.deviceId === oldDeviceId) {
        await this.removeNow(name, current);
        crashPoint('replace:old-removed');
      }
      if (current?.deviceId !== incoming.deviceId) {
        const { initialized, origin, parent } = intent;
        await this.devices.save(name, { ...incoming, initialized, origin, parent });
        crashPoint('replace:renamed');
      }
      await this.devices.remove(replacement);
      crashPoint('replace:replacement-file');
    }
    await this.replacements.close();
  }

  /** Records that `name`'s setup is finished (the base device once it has a filesystem). */
  markInitialized(name: string): Promise<void> {
    return this.change(async () => {
      const record = this.devices.live(name);
      if (!record.initialized) await this.devices.save(name, { ...record, initialized: true });
    });
  }

  /**
   * Grows `name`'s virtual size to `size` bytes. Thin devices map blocks on demand, so this
   * changes only the device's record; a filesystem on it is grown by its owner.
   */
  growDevice(name: string, size: number): Promise<void> {
    checkDeviceSize(size);
    return this.change(async () => {
      const record = this.devices.live(name);
      checkGrowth(`device ${name}`, record.size, size);
      if (size > record.size) await this.devices.save(name, { ...record, size });
    });
  }

  /** The base device's filesystem UUID and type, as recorded ('' when not yet known). */
  get baseFilesystem(): BaseFilesystemRecord {
    return { ...this.baseFs };
  }

  /** Records the base device's filesystem UUID and type in deviceset-metadata. */
  setBaseFilesystem(record: BaseFilesystemRecord): Promise<void> {
    return this.change(async () => {
      this.baseFs = { ...record };
      await this.saveDeviceSet();
    });
  }

  /** Removes `name`; a busy device is refused or, with deferred removal, removed once released. */
  removeDevice(name: string): Promise<RemoveOutcome> {
    return this.change(async () => {
      const record = this.devices.record(name);
      const users = this.users.get(name) ?? 0;
      if (users === 0) {
        await this.removeNow(name, record);
        return 'removed';
      }
      if (!this.config.storage.useDeferredRemoval) {
        throw new BusyError(`device ${name} is in use (opened ${users} times)`, {
          hint: 'release it first, or set dm.use_deferred_removal=true to remove it once released',
        });
      }
      if (!record.deleted) {
        await this.devices.save(name, { ...record, deleted: true });
      }
      return 'deferred';
    });
  }

  /** Grows the data space to `bytes` (pool-space.ts says how, by mode). */
  resizeData(bytes: number): Promise<void> {
    return this.change(() => this.space.resize('data', bytes));
  }

  /** Grows the metadata space to `bytes`. */
  resizeMetadata(bytes: number): Promise<void> {
    return this.change(() => this.space.resize('metadata', bytes));
  }

  /** Grows `space` by up to `bytes` into what is free; the bytes added (autoextend.ts). */
  extendSpace(space: 'data' | 'metadata', bytes: number): Promise<number> {
    return this.change(() => this.space.extend(space, bytes));
  }

  /** Direct-lvm mode: adds the block device `path` to the data space; the bytes added. */
  addPoolDevice(path: string): Promise<number> {
    return this.change(async () => {
      const added = await this.space.addDevice(path, this.config.storage.directLvmDeviceForce);
      await this.savePoolConfig(this.poolRecord as PoolConfigRecord);
      return added;
    });
  }

  // -------------------------------------------------------------------------------------
  // Use

  /**
   * The I/O handle of `name`; the device is busy until `release(name)`. A device waiting for
   * a deferred removal can still be opened while someone holds it (as a dm device can until
   * its last close), so a user that reconnects keeps it; once released it is gone.
   */
  open(name: string): ThinDevice {
    const record = this.users.has(name) ? this.devices.record(name) : this.devices.live(name);
    return this.openRecord(name, record);
  }

  /**
   * Opens `name` for a user a restarted daemon found (a mount that outlived the previous
   * daemon), even when its removal was deferred: it then goes at that user's `release`.
   * Open the set with `deferRemovals` so such a device is still there to hold.
   */
  hold(name: string): ThinDevice {
    return this.openRecord(name, this.devices.record(name));
  }

  /** One more user of `name`, whose record the caller chose by its rule. */
  private openRecord(name: string, record: DeviceRecord): ThinDevice {
    this.users.set(name, (this.users.get(name) ?? 0) + 1);
    return this.pool.device(record.deviceId, record.size);
  }

  /** Ends one `open(name)`; the last one finishes a deferred removal. */
  async release(name: string): Promise<void> {
    const users = this.users.get(name) ?? 0;
    if (users === 0) {
      throw new BadInputError(`device ${name} is not open`, { hint: 'release only what you open' });
    }
    if (users > 1) {
      this.users.set(name, users - 1);
      return;
    }
    this.users.delete(name);
    await this.change(async () => {
      const record = this.devices.peek(name);
      if (record?.deleted === true && !this.users.has(name)) await this.removeNow(name, record);
    });
  }

  /** The device `name`; NotFoundError if there is none (or it is being removed). */
  get(name: string): DeviceEntry {
    return entryOf(name, this.devices.live(name));
  }

  /** As `get`, but also a device waiting for removal while it is still held open. */
  getInUse(name: string): DeviceEntry {
    return this.users.has(name) ? entryOf(name, this.devices.record(name)) : this.get(name);
  }

  /** The device `name` whether live or waiting for removal; undefined if there is none. */
  lookup(name: string): HeldDevice | undefined {
    const record = this.devices.peek(name);
    return record === undefined ? undefined : { ...entryOf(name, record), deleted: record.deleted };
  }

  /** Every device the set holds, live or waiting for removal, sorted by name. */
  held(): HeldDevice[] {
    return this.devices
      .entries()
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, r]) => ({ ...entryOf(name, r), deleted: r.deleted }));
  }

  /** How many `open(name)`s are not yet released. */
  openCount(name: string): number {
    return this.users.get(name) ?? 0;
  }

  /** The names of the live devices, sorted. */
  names(): string[] {
    return this.devices
      .entries()
      .filter(([, r]) => !r.deleted)
      .map(([name]) => name)
      .sort();
  }

  /** Every device, by name, with the bytes it maps alone and shares with others. */
  list(): Promise<DeviceListing[]> {
    return this.change(async () => {
      const live = this.devices.entries().filter(([, r]) => !r.deleted);
      live.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      const ids = live.map(([, r]) => r.deviceId);
      const usage = await blockUsage(this.pool, ids, await this.pool.metadata.deviceIds());
      const B = this.pool.blockSize;
      return live.map(([name, r]) => {
        const u = usage.get(r.deviceId) ?? { mappedBlocks: 0, exclusiveBlocks: 0 };
        return {
          name,
          id: r.deviceId,
          size: r.size,
          mappedBytes: u.mappedBlocks * B,
          exclusiveBytes: u.exclusiveBlocks * B,
          sharedBytes: (u.mappedBlocks - u.exclusiveBlocks) * B,
          origin: this.devices.originOf(r),
        };
      });
    });
  }

  status(): PoolStatus {
    return this.pool.status();
  }

  /** The devices that hold the pool, and how much of each is data, metadata and free. */
  heldBy(): PoolDeviceUse[] {
    return this.space.heldBy();
  }

  /** Devices whose removal waits for them to be released. */
  get deferredDeletedCount(): number {
    return this.devices.deferredCount;
  }

  /** Commits the pool and closes its devices. The set cannot be used afterwards. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.changes.run(async () => {
      try {
        await this.pool.close();
      } finally {
        await Promise.all([this.data.close(), this.metadataDevice.close()]);
        await this.adopted?.release();
      }
    });
  }

  // -------------------------------------------------------------------------------------
  // Internals

  private async change<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) {
      throw new BadInputError('the device set is closed', { hint: 'open it again' });
    }
    return this.changes.run(fn);
  }

  private async addDevice(
    name: string,
    shape: NewDeviceOptions & { size: number; origin: string | undefined },
    make: (id: number) => Promise<void>,
  ): Promise<DeviceEntry> {
    const t = await this.transactions.open(name, await this.freeId(this.nextDeviceId));
    const record: DeviceRecord = {
      deviceId: t.deviceId,
      size: shape.size,
      transactionId: t.openTransactionId,
      initialized: shape.initialized ?? true,
      deleted: false,
      origin: shape.origin,
      parent: shape.parent,
    };
    try {
      crashPoint('add:transaction-open');
      record.deviceId = await this.makeWithFreeId(t, make);
      crashPoint('add:pool-changed');
      await this.pool.commit();
      crashPoint('add:pool-committed');
      await this.devices.save(name, record);
      crashPoint('add:device-file');
      this.nextDeviceId = (t.deviceId + 1) % THIN_ID_LIMIT;
      await this.saveDeviceSet();
      crashPoint('add:device-set-file');
      await this.transactions.close(t);
      crashPoint('add:closed');
    } catch (err) {
      await this.abandon(t);
      throw err;
    }
    return entryOf(name, record);
  }

  /** Runs `make` with the transaction's id; an id the pool has already moves to the next. */
  private async makeWithFreeId(
    t: OpenTransaction,
    make: (id: number) => Promise<void>,
  ): Promise<number> {
    for (let tries = 1; ; tries++) {
      try {
        await make(t.deviceId);
        return t.deviceId;
      } catch (err) {
        if (!(err instanceof ExistsError) || tries >= MAX_ID_RETRIES) throw err;
        await this.transactions.refresh(t, await this.freeId(t.deviceId + 1));
      }
    }
  }

  private async removeNow(name: string, record: DeviceRecord): Promise<void> {
    const t = await this.transactions.open(name, record.deviceId);
    try {
      crashPoint('remove:transaction-open');
      await this.pool.deleteDevice(record.deviceId);
      crashPoint('remove:pool-changed');
      await this.pool.commit();
      crashPoint('remove:pool-committed');
      await this.devices.remove(name);
      crashPoint('remove:device-file');
      await this.transactions.close(t);
      crashPoint('remove:closed');
    } catch (err) {
      await this.abandon(t);
      throw err;
    }
  }

  /** The first thin id from `start` (wrapping at 2^24) that no device uses. */
  private async freeId(start: number): Promise<number> {
    const used = this.devices.usedIds();
    for (let i = 0; i < THIN_ID_LIMIT; i++) {
      const id = (start + i) % THIN_ID_LIMIT;
      if (!used.has(id) && !(await this.pool.metadata.exists(id))) return id;
    }
    throw new NoSpaceError('metadata', `all ${THIN_ID_LIMIT} thin device ids are in use`, {
      hint: 'remove devices you no longer need',
    });
  }

  /** Writes thinp.json: `record`, with the direct-lvm setup and devices as they are now. */
  private savePoolConfig(record: PoolConfigRecord): Promise<void> {
    const group = this.group;
    const { storage } = this.config;
    const directLvm =
      group === undefined
        ? undefined
        : {
            poolUuid: group.poolUuid,
            device: record.directLvm?.device ?? this.files.dataFile,
            thinpPercent: record.directLvm?.thinpPercent ?? storage.thinpPercent,
            thinpMetaPercent: record.directLvm?.thinpMetaPercent ?? storage.thinpMetaPercent,
            devices: group.devices.map((d) => ({ uuid: d.uuid, path: d.path })),
          };
    const { directLvm: _old, thinPoolDev: _theirs, ...rest } = record;
    const adopted = this.adopted === undefined ? {} : { thinPoolDev: this.adopted.root };
    this.poolRecord =
      directLvm === undefined ? { ...rest, ...adopted } : { ...rest, directLvm, ...adopted };
    return writeStateFile(this.config.layout.poolConfigFile, encodePoolConfig(this.poolRecord));
  }

  /** Records where the devices of a direct-lvm pool are attached now, if that changed. */
  private async notePaths(record: PoolConfigRecord): Promise<void> {
    const now = (this.group as VolumeGroup).devices.map((d) => `${d.uuid}=${d.path}`).join(',');
    const was = (record.directLvm?.devices ?? []).map((d) => `${d.uuid}=${d.path}`).join(',');
    if (now !== was) await this.savePoolConfig(record);
  }

  private saveDeviceSet(): Promise<void> {
    return writeStateFile(
      path.join(this.config.layout.metadataDir, DEVICE_SET_FILE),
      encodeDeviceSet({
        nextDeviceId: this.nextDeviceId,
        baseDeviceUuid: this.baseFs.uuid,
        baseDeviceFilesystem: this.baseFs.filesystem,
      }),
    );
  }
}

// ---------------------------------------------------------------------------------------

function poolOptions(config: Config, options: DeviceSetOptions): ThinPoolOptions {
  const { storage } = config;
  return {
    zeroBlocks: storage.zeroBlocks,
    noSpacePolicy: storage.noSpacePolicy,
    discardFreed: storage.blkdiscard,
    uncachedWriteMin: storage.uncachedWriteMin,
    ...options.pool,
  };
}

function entryOf(name: string, r: DeviceRecord): DeviceEntry {
  return {
    name,
    id: r.deviceId,
    size: r.size,
    origin: r.origin,
    transactionId: r.transactionId,
    initialized: r.initialized,
    parent: r.parent,
  };
}

function checkDeviceSize(size: number): void {
  if (!Number.isSafeInteger(size) || size <= 0 || size % 512 !== 0) {
    throw new BadInputError(`a device of ${size} bytes cannot be made`, {
      hint: 'give a size above 0 that is a whole number of 512-byte sectors, such as 10G',
    });
  }
}
