/**
 * PoolSpace: the devices under a pool's data and metadata spaces, and how they grow, by
 * mode: a loop file within its filesystem's free space, a given device up to its end, a
 * direct-lvm pool into the free extents of its volume group (and onto added devices).
 * The device set calls it under its change lock, so no two growths overlap.
 *
 * Order of a growth: the devices first (a file's size, a region's reach, the labels of a
 * volume group), then the pool's metadata (`resizeData` / `resizeMetadata`, which commit).
 * A crash in between leaves devices larger than the pool counts, which `finishExtensions`
 * grows the pool into at the next open.
 */

import type { BlockDevice } from '../block/index.js';
import type { ThinPool } from '../pool/index.js';
import { MAX_METADATA_BLOCKS, METADATA_BLOCK_SIZE } from '../thin/index.js';
import { BadInputError, NoSpaceError } from '../util/index.js';
import { checkNewDevice, deviceSize } from './direct-lvm.js';
import { checkGrowth } from './free-space.js';
import { growRoom } from './grow-room.js';
import type { PoolFiles } from './pool-files.js';
import type { GroupDeviceUse, VolumeGroup } from './volume-group.js';

export type SpaceKind = 'data' | 'metadata';

export class PoolSpace {
  constructor(
    private readonly pool: ThinPool,
    private readonly devices: Record<SpaceKind, BlockDevice>,
    readonly group: VolumeGroup | undefined,
    private readonly files: PoolFiles,
  ) {}

  /** Bytes of `space` the pool's metadata counts. */
  bytes(space: SpaceKind): number {
    const s = this.pool.status();
    return space === 'data'
      ? s.data.totalBlocks * s.data.blockSize
      : s.metadata.totalBlocks * METADATA_BLOCK_SIZE;
  }

  /** Grows `space` to `bytes`; in direct-lvm mode from free extents, or refuses. */
  async resize(space: SpaceKind, bytes: number): Promise<void> {
    const device = this.devices[space];
    checkGrowth(`${space} space`, device.size, bytes);
    await this.reserveInGroup(space, bytes);
    if (space === 'data') await this.pool.resizeData(bytes);
    else await this.pool.resizeMetadata(bytes);
  }

  /**
   * Grows `space` by up to `bytes`, into what its devices have free (grow-room.ts; free
   * extents in direct-lvm mode); returns the bytes added, 0 when nothing is free.
   */
  async extend(space: SpaceKind, bytes: number): Promise<number> {
    const before = this.bytes(space);
    const device = this.devices[space];
    if (this.group !== undefined) {
      if ((await this.group.extend(space, bytes)) === 0) return 0;
      await this.resizeTo(space, device.size);
    } else {
      // The device may already be larger than the pool (a device grown while closed).
      const other = this.devices[space === 'data' ? 'metadata' : 'data'];
      const room = Math.min(bytes, device.size - before + (await growRoom(device, [other])));
      const unit = space === 'data' ? this.pool.blockSize : METADATA_BLOCK_SIZE;
      const limit = space === 'data' ? Number.MAX_SAFE_INTEGER : MAX_METADATA_BLOCKS * unit;
      const target = Math.min(limit, Math.floor((before + room) / unit) * unit);
      if (target <= before) return 0;
      await this.resizeTo(space, target);
    }
    return this.bytes(space) - before;
  }

  /**
   * Direct-lvm mode: adds the block device `path` to the pool, its whole space to the data
   * space (as vgextend then lvextend). It must hold nothing blkid recognizes, unless
   * `force`. Returns the bytes the data space grew by.
   */
  async addDevice(path: string, force: boolean): Promise<number> {
    const group = this.group;
    if (group === undefined) {
      throw new BadInputError(`a ${this.files.mode}-mode pool cannot take another device`, {
        hint: 'devices are added to direct-lvm pools (dm.directlvm_device); grow this one with --data-size',
      });
    }
    await checkNewDevice(path, force);
    const before = this.bytes('data');
    await group.addDevice(path, await deviceSize(path));
    await group.extend('data', group.freeBytes());
    await this.resizeTo('data', this.devices.data.size);
    return this.bytes('data') - before;
  }

  /**
   * A crash between writing the labels of a growth and the pool's commit leaves regions
   * larger than the pool counts: grow the pool into them.
   */
  async finishExtensions(): Promise<void> {
    for (const space of ['data', 'metadata'] as const) {
      const unit = space === 'data' ? this.pool.blockSize : METADATA_BLOCK_SIZE;
      const size = this.devices[space].size;
      if (size >= this.bytes(space) + unit) await this.resizeTo(space, size);
    }
  }

  /** The devices that hold the pool, and how much of each is data, metadata and free. */
  heldBy(): GroupDeviceUse[] {
    if (this.group !== undefined) return this.group.describe();
    const use = (path: string, dataBytes: number, metadataBytes: number) => ({
      path,
      uuid: '',
      size: dataBytes + metadataBytes,
      dataBytes,
      metadataBytes,
      freeBytes: 0,
    });
    return [
      use(this.files.dataFile, this.devices.data.size, 0),
      use(this.files.metadataFile, 0, this.devices.metadata.size),
    ];
  }

  /** Direct-lvm mode: takes free extents so that `space` reaches `bytes`, or refuses. */
  private async reserveInGroup(space: SpaceKind, bytes: number): Promise<void> {
    const group = this.group;
    const device = this.devices[space];
    if (group === undefined || bytes <= device.size) return;
    const free = group.freeBytes();
    if (bytes - device.size > free) {
      throw new NoSpaceError(
        space,
        `the ${space} space cannot grow to ${bytes} bytes: its devices have ${free} bytes free`,
        { hint: "add a device with 'thinp pool resize --add-device /dev/...'" },
      );
    }
    await group.extend(space, bytes - device.size);
  }

  private async resizeTo(space: SpaceKind, bytes: number): Promise<void> {
    if (space === 'data') {
      await this.pool.resizeData(Math.floor(bytes / this.pool.blockSize) * this.pool.blockSize);
    } else {
      const blocks = Math.min(Math.floor(bytes / METADATA_BLOCK_SIZE), MAX_METADATA_BLOCKS);
      await this.pool.resizeMetadata(blocks * METADATA_BLOCK_SIZE);
    }
  }
}
