/**
 * VolumeGroup: the block devices of a direct-lvm pool and how their space is divided, as
 * LVM's volume group divides its physical volumes into the thin pool's data and metadata
 * volumes. The table lives in the label on every device (pool-label.ts).
 *
 * - `format` labels one device: LABEL_AREA for the labels, then the metadata segment, then
 *   the data segment, the rest free for growth.
 * - `open` turns the segments into two LinearDevices (data and metadata), each segment a
 *   region of its device.
 * - `extend(kind, bytes)` takes free extents (first right after the last segment of that
 *   space, so it usually just grows, then anywhere), writes the labels, then lets the open
 *   LinearDevice reach the new space. `addDevice` labels another device into the group, its
 *   whole space free.
 *
 * Labels are written before the space is used: a crash in between leaves a device larger
 * than the pool's metadata says, which the next open grows the pool into.
 * The caller serializes changes (the device set's change lock).
 */

import { randomBytes } from 'node:crypto';
import { BlockDevDevice, type BlockDevice, LinearDevice } from '../block/index.js';
import { BadInputError, NoSpaceError } from '../util/index.js';
import {
  EXTENT,
  encodeLabel,
  LABEL_AREA,
  LABEL_SLOT_SIZE,
  type LabelDevice,
  labelSlotOffset,
  MAX_DEVICES,
  type PoolLabel,
  type Segment,
  type SpaceKind,
} from './pool-label.js';

export interface GroupDevice extends LabelDevice {
  /** Where the device is attached now. */
  path: string;
}

/** What `describe()` says of each device. */
export interface GroupDeviceUse {
  path: string;
  uuid: string;
  size: number;
  dataBytes: number;
  metadataBytes: number;
  freeBytes: number;
}

export class VolumeGroup {
  readonly poolUuid: string;
  readonly dataBlockSize: number;
  readonly devices: GroupDevice[];
  readonly segments: Segment[];
  private seqno: number;
  private readonly open = new Map<SpaceKind, LinearDevice>();

  constructor(label: PoolLabel, paths: readonly string[]) {
    this.poolUuid = label.poolUuid;
    this.dataBlockSize = label.dataBlockSize;
    this.devices = label.devices.map((d, i) => ({ ...d, path: paths[i] as string }));
    this.segments = label.segments.map((s) => ({ ...s }));
    this.seqno = label.seqno;
  }

  /**
   * Labels `path` as the only device of a new pool: `metadataBytes` then `dataBytes`
   * (whole extents), after the label area.
   */
  static async format(
    path: string,
    deviceSize: number,
    space: { dataBytes: number; metadataBytes: number; dataBlockSize: number },
  ): Promise<VolumeGroup> {
    const label: PoolLabel = {
      seqno: 0,
      poolUuid: newUuid(),
      deviceUuid: '',
      dataBlockSize: space.dataBlockSize,
      devices: [{ uuid: newUuid(), size: deviceSize }],
      segments: [
        { kind: 'metadata', device: 0, offset: LABEL_AREA, length: space.metadataBytes },
        {
          kind: 'data',
          device: 0,
          offset: LABEL_AREA + space.metadataBytes,
          length: space.dataBytes,
        },
      ],
    };
    const group = new VolumeGroup(label, [path]);
    await group.writeLabels();
    return group;
  }

  /** The data and metadata spaces as LinearDevices; `close()` of each closes its regions. */
  async openSpaces(): Promise<{ data: LinearDevice; metadata: LinearDevice }> {
    const data = await this.openSpace('data');
    try {
      return { data, metadata: await this.openSpace('metadata') };
    } catch (err) {
      await data.close();
      throw err;
    }
  }

  spaceBytes(kind: SpaceKind): number {
    return this.segments.filter((s) => s.kind === kind).reduce((sum, s) => sum + s.length, 0);
  }

  /** Free bytes on every device, in whole extents. */
  freeBytes(): number {
    return this.devices.reduce(
      (sum, _d, i) => sum + this.gaps(i).reduce((n, g) => n + g.length, 0),
      0,
    );
  }

  describe(): GroupDeviceUse[] {
    return this.devices.map((d, i) => {
      const mine = this.segments.filter((s) => s.device === i);
      const bytes = (kind: SpaceKind) =>
        mine.filter((s) => s.kind === kind).reduce((n, s) => n + s.length, 0);
      const freeBytes = this.gaps(i).reduce((n, g) => n + g.length, 0);
      return {
        path: d.path,
        uuid: d.uuid,
        size: d.size,
        dataBytes: bytes('data'),
        metadataBytes: bytes('metadata'),
        freeBytes,
      };
    });
  }

  /**
   * Adds up to `bytes` (rounded up to extents, as much as is free) to the `kind` space;
   * returns the bytes added (0 when nothing is free). The open LinearDevice grows with it.
   */
  async extend(kind: SpaceKind, bytes: number): Promise<number> {
    let wanted = Math.ceil(bytes / EXTENT) * EXTENT;
    const added: Segment[] = [];
    for (const gap of this.orderedGaps(kind)) {
      if (wanted === 0) break;
      const length = Math.min(wanted, gap.length);
      added.push({ kind, device: gap.device, offset: gap.offset, length });
      wanted -= length;
    }
    if (added.length === 0) return 0;
    const before = this.segments.map((s) => ({ ...s }));
    for (const segment of added) this.addSegment(segment);
    try {
      await this.writeLabels();
    } catch (err) {
      this.segments.splice(0, this.segments.length, ...before);
      throw err;
    }
    await this.reachNewSpace(kind, before);
    return added.reduce((n, s) => n + s.length, 0);
  }

  /** Labels `path` (of `size` bytes) into the group, its space free. */
  async addDevice(path: string, size: number): Promise<void> {
    if (this.devices.length >= MAX_DEVICES) {
      throw new NoSpaceError('data', `a pool holds at most ${MAX_DEVICES} devices`, {
        hint: 'grow a device of the pool instead',
      });
    }
    if (this.devices.some((d) => d.path === path)) {
      throw new BadInputError(`${path} is already a device of this pool`, {
        hint: 'give a device the pool does not use',
      });
    }
    this.devices.push({ uuid: newUuid(), size, path });
    try {
      await this.writeLabels();
    } catch (err) {
      this.devices.pop();
      throw err;
    }
  }

  /** Zeros the label slots of every device: undoes `format` when the pool could not be made. */
  async erase(): Promise<void> {
    for (const device of this.devices) {
      const dev = await BlockDevDevice.open(device.path, { offset: 0, size: 2 * LABEL_SLOT_SIZE });
      try {
        await dev.write(Buffer.alloc(2 * LABEL_SLOT_SIZE), 0);
        await dev.flush();
      } finally {
        await dev.close();
      }
    }
  }

  /** Notes the current size of each device (it may have grown since it was labelled). */
  noteSizes(sizes: readonly number[]): void {
    sizes.forEach((size, i) => {
      const d = this.devices[i];
      if (d !== undefined && size > d.size) d.size = size;
    });
  }

  /** Closes nothing of its own: the LinearDevices it opened belong to their users. */
  forget(): void {
    this.open.clear();
  }

  // -------------------------------------------------------------------------------------

  /**
   * The `kind` space as a LinearDevice of regions. A writable one is the one `extend`
   * grows; `close()` of it closes its regions.
   */
  async openSpace(kind: SpaceKind, options: { readOnly?: boolean } = {}): Promise<LinearDevice> {
    const regions: BlockDevice[] = [];
    try {
      for (const s of this.segments.filter((x) => x.kind === kind)) {
        regions.push(await this.region(s, options.readOnly === true));
      }
    } catch (err) {
      await Promise.all(regions.map((r) => r.close()));
      throw err;
    }
    const linear = new LinearDevice(`${kind} of pool ${this.poolUuid}`, regions);
    if (options.readOnly !== true) this.open.set(kind, linear);
    return linear;
  }

  private region(s: Segment, readOnly = false): Promise<BlockDevDevice> {
    const device = this.devices[s.device] as GroupDevice;
    return BlockDevDevice.open(device.path, { offset: s.offset, size: s.length, readOnly });
  }

  /** Free ranges of device `i`, in whole extents, in order. */
  private gaps(i: number): Array<{ device: number; offset: number; length: number }> {
    const size = Math.floor((this.devices[i] as GroupDevice).size / EXTENT) * EXTENT;
    const used = this.segments.filter((s) => s.device === i).sort((a, b) => a.offset - b.offset);
    const gaps = [];
    let at = LABEL_AREA;
    for (const s of used) {
      if (s.offset > at) gaps.push({ device: i, offset: at, length: s.offset - at });
      at = Math.max(at, s.offset + s.length);
    }
    if (size > at) gaps.push({ device: i, offset: at, length: size - at });
    return gaps;
  }

  /** The gap right after the last segment of `kind` first, then the others in order. */
  private orderedGaps(kind: SpaceKind) {
    const all = this.devices.flatMap((_d, i) => this.gaps(i));
    const last = this.segments.filter((s) => s.kind === kind).at(-1);
    const next = (g: { device: number; offset: number }) =>
      last !== undefined && g.device === last.device && g.offset === last.offset + last.length;
    return [...all.filter(next), ...all.filter((g) => !next(g))];
  }

  /** Appends `segment` to its space, merging it into the last one when they touch. */
  private addSegment(segment: Segment): void {
    const last = this.segments.filter((s) => s.kind === segment.kind).at(-1);
    if (
      last !== undefined &&
      last.device === segment.device &&
      last.offset + last.length === segment.offset
    ) {
      last.length += segment.length;
    } else {
      this.segments.push(segment);
    }
  }

  /** Lets the open LinearDevice of `kind` reach the segments added since `before`. */
  private async reachNewSpace(kind: SpaceKind, before: readonly Segment[]): Promise<void> {
    const linear = this.open.get(kind);
    if (linear === undefined) return;
    const old = before.filter((s) => s.kind === kind);
    const now = this.segments.filter((s) => s.kind === kind);
    const lastOld = old.at(-1) as Segment;
    const grown = now[old.length - 1] as Segment;
    if (grown.length > lastOld.length) {
      await linear.grow(linear.size + (grown.length - lastOld.length));
    }
    for (const s of now.slice(old.length)) linear.append(await this.region(s));
  }

  /** Writes the next label to every device, each in its own slot, and flushes it. */
  private async writeLabels(): Promise<void> {
    this.seqno++;
    for (const device of this.devices) {
      const label = encodeLabel({
        seqno: this.seqno,
        poolUuid: this.poolUuid,
        deviceUuid: device.uuid,
        dataBlockSize: this.dataBlockSize,
        devices: this.devices.map(({ uuid, size }) => ({ uuid, size })),
        segments: this.segments,
      });
      const dev = await BlockDevDevice.open(device.path, { offset: 0, size: LABEL_AREA });
      try {
        await dev.write(label, labelSlotOffset(this.seqno));
        await dev.flush();
      } finally {
        await dev.close();
      }
    }
  }
}

function newUuid(): string {
  return randomBytes(16).toString('hex');
}
