/**
 * MetadataImport: a whole pool's metadata built at once from a description given in order
 * (a thin_dump XML being restored), the recipe of dm-thin-format.md Appendix B, in one
 * transaction:
 *
 * 1. `begin` sets up the space maps on a fresh transaction (the data space map sized for
 *    `nrDataBlocks`); nothing is written to block 0 until `finish`.
 * 2. Each device's mappings arrive in increasing vblock order; they go straight into a
 *    bottom-level tree built bottom-up (BTreeBuilder: leaves packed full, written as they
 *    fill, internal levels at the device's end). Each mapping takes one reference on its
 *    data block, as thin_restore's do, a run of mappings as one range of the data map.
 * 3. `finish` builds the top-level tree and the details tree over the devices in id
 *    order, writes the space maps (their final counts are known only now), flushes, then
 *    writes the superblock and flushes again.
 *
 * Memory does not grow with the mappings: a device's leaves are written as they fill; only
 * the first key and location of each node (16 bytes per 252 mappings) and one entry per
 * device stay until the end.
 *
 * Contracts:
 * - Calls follow the order begin → (beginDevice → addRun* → endDevice)* → finish, each
 *   awaited before the next; anything else is an `InternalError`.
 * - Errors of the input (a device id out of range or repeated, a mapping beyond the data
 *   device or out of order, a time or flags out of range) are `BadInputError`s or an
 *   `ExistsError`, thrown before anything of them is built. After any error the device
 *   holds a half-written pool with its old superblock (or none): start again.
 */

import type { BlockDevice } from '../block/index.js';
import {
  BlockManager,
  BTreeBuilder,
  DiskSpaceMap,
  MAX_METADATA_BLOCKS,
  METADATA_BLOCK_SIZE,
  MetadataSpaceMap,
  TransactionManager,
} from '../pdata/index.js';
import { BadInputError, ExistsError, InternalError, writeU64LE } from '../util/index.js';
import { DATA_BLOCK_LIMIT, TIME_LIMIT } from './format/block-time.js';
import { DETAILS_SIZE, type DeviceDetails, encodeDetails } from './format/device-details.js';
import {
  encodeSuperblock,
  METADATA_BLOCK_SECTORS,
  SUPERBLOCK_MAGIC,
  SUPERBLOCK_VERSION,
  superblockValidator,
  UUID_SIZE,
} from './format/superblock.js';
import { MAX_DATA_BLOCK_SECTORS, MIN_DATA_BLOCK_SECTORS, THIN_ID_LIMIT } from './pool-metadata.js';

/** What the superblock of the imported pool says besides its roots. */
export interface ImportedPool {
  /** Data block size in 512-byte sectors. */
  dataBlockSize: number;
  nrDataBlocks: number;
  time: number;
  transactionId: number;
  flags: number;
  uuid?: string;
}

/** The smallest metadata device that holds a pool, in blocks. */
const MIN_METADATA_BLOCKS = 16;
/** Leaves written between two unpinnings of the data space map's bitmaps. */
const UNPIN_EVERY = 1024;

interface ImportedDevice {
  id: number;
  root: number;
  details: DeviceDetails;
}

/** The device whose mappings are arriving. */
interface OpenDevice {
  id: number;
  details: Omit<DeviceDetails, 'mappedBlocks'>;
  tree: BTreeBuilder;
  /** The first vblock a next mapping may have. */
  next: number;
}

export class MetadataImport {
  private readonly devices: ImportedDevice[] = [];
  private readonly ids = new Set<number>();
  private open: OpenDevice | undefined;
  private sinceUnpin = 0;
  private done = false;
  private readonly value = Buffer.alloc(8);

  private constructor(
    private readonly bm: BlockManager,
    private readonly tm: TransactionManager,
    private readonly msm: MetadataSpaceMap,
    private readonly dsm: DiskSpaceMap,
    private readonly nrMetadataBlocks: number,
    private readonly pool: ImportedPool,
  ) {}

  /** Starts importing a pool onto `device`, whatever it holds now. */
  static async begin(device: BlockDevice, pool: ImportedPool): Promise<MetadataImport> {
    checkPool(pool);
    const nrBlocks = Math.min(Math.floor(device.size / METADATA_BLOCK_SIZE), MAX_METADATA_BLOCKS);
    if (nrBlocks < MIN_METADATA_BLOCKS) {
      throw new BadInputError(
        `${device.name}: a metadata device of ${device.size} bytes is too small`,
        { hint: 'give it at least 64 KiB (thinp defaults to 2G in loop mode)' },
      );
    }
    const bm = new BlockManager(device);
    const tm = new TransactionManager(bm);
    const msm = await MetadataSpaceMap.create(tm, nrBlocks, 1);
    const dsm = await DiskSpaceMap.create(tm);
    await dsm.extend(pool.nrDataBlocks);
    await tm.endOperation();
    return new MetadataImport(bm, tm, msm, dsm, nrBlocks, pool);
  }

  /** Opens device `id`; its mappings follow. */
  beginDevice(id: number, details: Omit<DeviceDetails, 'mappedBlocks'>): void {
    this.expect(!this.done && this.open === undefined, 'a device');
    if (!Number.isSafeInteger(id) || id < 0 || id >= THIN_ID_LIMIT) {
      throw new BadInputError(`thin device id ${id} is out of range`, {
        hint: `use an id from 0 to ${THIN_ID_LIMIT - 1}`,
      });
    }
    if (this.ids.has(id)) {
      throw new ExistsError(`thin device ${id} already exists`, { hint: 'pick another id' });
    }
    this.ids.add(id);
    this.open = { id, details, tree: new BTreeBuilder(this.tm, 8), next: 0 };
  }

  /** Maps `length` vblocks from `vblock` to the data blocks from `dataBlock`, at `time`. */
  async addRun(vblock: number, dataBlock: number, length: number, time: number): Promise<void> {
    const dev = this.open;
    this.expect(dev !== undefined, 'a mapping');
    if (dev === undefined) return;
    this.checkRun(dev, vblock, dataBlock, length, time);
    await this.dsm.incRange(dataBlock, length);
    const value = this.value;
    for (let i = 0; i < length; i++) {
      const block = dataBlock + i;
      value.writeUInt32LE((((block % 256) << 24) | time) >>> 0, 0);
      value.writeUInt32LE(Math.floor(block / 256), 4);
      const pending = dev.tree.add(vblock + i, value);
      if (pending !== undefined) {
        await pending;
        await this.leafWritten();
      }
    }
    dev.next = vblock + length;
  }

  /** Closes the open device: its tree's upper levels are built. */
  async endDevice(): Promise<void> {
    const dev = this.open;
    this.expect(dev !== undefined, '</device>');
    if (dev === undefined) return;
    const root = await dev.tree.finish();
    this.devices.push({
      id: dev.id,
      root,
      details: { ...dev.details, mappedBlocks: dev.tree.size },
    });
    this.open = undefined;
    await this.tm.endOperation();
  }

  /** Devices imported so far. */
  get deviceCount(): number {
    return this.devices.length;
  }

  /** Builds the top level, the details and the space maps, then commits the superblock. */
  async finish(): Promise<void> {
    this.expect(!this.done && this.open === undefined, 'the end');
    this.done = true;
    const devices = [...this.devices].sort((a, b) => a.id - b.id);
    const top = new BTreeBuilder(this.tm, 8);
    const details = new BTreeBuilder(this.tm, DETAILS_SIZE);
    const root = Buffer.alloc(8);
    for (const d of devices) {
      writeU64LE(root, 0, d.root);
      await top.add(d.id, root);
      await details.add(d.id, encodeDetails(d.details));
    }
    const mappingRoot = await top.finish();
    const detailsRoot = await details.finish();
    await this.dsm.commit();
    await this.msm.prepareCommit();
    await this.tm.endOperation();
    await this.bm.flush();
    await this.writeSuperblock(mappingRoot, detailsRoot);
  }

  private async writeSuperblock(mappingRoot: number, detailsRoot: number): Promise<void> {
    const uuid = Buffer.alloc(UUID_SIZE);
    if (this.pool.uuid !== undefined)
      Buffer.from(this.pool.uuid, 'utf8').copy(uuid, 0, 0, UUID_SIZE);
    const buf = Buffer.alloc(METADATA_BLOCK_SIZE);
    encodeSuperblock(
      {
        flags: this.pool.flags,
        uuid,
        magic: SUPERBLOCK_MAGIC,
        version: SUPERBLOCK_VERSION,
        time: this.pool.time,
        transId: this.pool.transactionId,
        heldRoot: 0,
        dataSpaceMap: this.dsm.root(),
        metadataSpaceMap: this.msm.root(),
        dataMappingRoot: mappingRoot,
        deviceDetailsRoot: detailsRoot,
        dataBlockSize: this.pool.dataBlockSize,
        metadataBlockSize: METADATA_BLOCK_SECTORS,
        metadataNrBlocks: this.nrMetadataBlocks,
        compatFlags: 0,
        compatRoFlags: 0,
        incompatFlags: 0,
      },
      buf,
    );
    await this.bm.writeSuperblock(buf, superblockValidator);
  }

  /** Every so many leaves, the data map's bitmaps may leave memory (written out if needed). */
  private async leafWritten(): Promise<void> {
    if (++this.sinceUnpin < UNPIN_EVERY) return;
    this.sinceUnpin = 0;
    await this.tm.endOperation();
  }

  private checkRun(
    dev: OpenDevice,
    vblock: number,
    dataBlock: number,
    length: number,
    time: number,
  ): void {
    if (!Number.isSafeInteger(length) || length < 1) {
      throw new BadInputError(`the mapping at vblock ${vblock} has length ${length}`, {
        hint: 'give every mapping a length of at least 1',
      });
    }
    if (
      !Number.isSafeInteger(vblock) ||
      vblock < dev.next ||
      !Number.isSafeInteger(vblock + length)
    ) {
      throw new BadInputError(
        `thin device ${dev.id}: the mapping at vblock ${vblock} overlaps or precedes the previous one`,
        { hint: "list each device's mappings in increasing vblock order, each vblock once" },
      );
    }
    const end = dataBlock + length;
    if (!Number.isSafeInteger(dataBlock) || dataBlock < 0 || end > this.dsm.size) {
      throw new BadInputError(
        `mapping beyond end of data device: data block ${end - 1} of ${this.dsm.size}`,
        { hint: 'raise nr_data_blocks, or drop the mapping' },
      );
    }
    if (!Number.isSafeInteger(time) || time < 0 || time >= TIME_LIMIT) {
      throw new BadInputError(`mapping time ${time} is out of range (0 .. 2^24 - 1)`, {
        hint: 'mapping times are 24 bits: use a time below 16777216',
      });
    }
  }

  private expect(ok: boolean, what: string): void {
    if (!ok) throw new InternalError(`metadata import: ${what} cannot come here`);
  }
}

function checkPool(pool: ImportedPool): void {
  const sectors = pool.dataBlockSize;
  if (
    !Number.isSafeInteger(sectors) ||
    sectors < MIN_DATA_BLOCK_SECTORS ||
    sectors > MAX_DATA_BLOCK_SECTORS ||
    sectors % MIN_DATA_BLOCK_SECTORS !== 0
  ) {
    throw new BadInputError(`data block size: ${sectors} sectors is not a valid data block size`, {
      hint: 'use a multiple of 128 sectors (64 KiB) from 64 KiB to 1 GiB',
    });
  }
  if (
    !Number.isSafeInteger(pool.nrDataBlocks) ||
    pool.nrDataBlocks < 0 ||
    pool.nrDataBlocks >= DATA_BLOCK_LIMIT
  ) {
    throw new BadInputError(`${pool.nrDataBlocks} data blocks is out of range (0 .. 2^40 - 1)`, {
      hint: 'a data device holds at most 2^40 - 1 blocks',
    });
  }
  if (!Number.isSafeInteger(pool.time) || pool.time < 0 || pool.time >= TIME_LIMIT) {
    throw new BadInputError(`pool time ${pool.time} is out of range (0 .. 2^24 - 1)`, {
      hint: 'the pool time is 24 bits: use a time below 16777216',
    });
  }
  if (!Number.isInteger(pool.flags) || pool.flags < 0 || pool.flags >= 2 ** 32) {
    throw new BadInputError(`superblock flags ${pool.flags} do not fit 32 bits`, {
      hint: 'flags is 0, or 1 for needs_check',
    });
  }
  if (!Number.isSafeInteger(pool.transactionId) || pool.transactionId < 0) {
    throw new BadInputError(`transaction id ${pool.transactionId} is out of range`, {
      hint: 'use a transaction id from 0 to 2^53 - 1',
    });
  }
}
