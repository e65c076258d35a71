/**
 * What can still be read of a pool, from the roots of its details tree and its top-level
 * mapping tree: each device with its details and its mappings, and precisely what was lost —
 * devices whose entry sat in a damaged node of the top-level tree, and per device the vblock
 * ranges that sat in damaged nodes of its mapping tree.
 *
 * Rules: a device in the top-level tree whose details are lost is kept, with details made
 * safe (created at time 0, snapshotted at the pool's time, so that the kernel copies before
 * it writes over any block); a device whose mapping tree root cannot be read is kept empty
 * (as thin_repair keeps it), with all its vblocks reported lost; a mapping to a data block
 * beyond the data device, and a device whose id is beyond 2^24 - 1, are dropped and
 * reported; a vblock reached twice (a node whose keys stray out of its parent's range) keeps
 * its first mapping.
 */

import type { Node } from '../../pdata/index.js';
import { DETAILS_SIZE, decodeBlockTime, decodeDetails, THIN_ID_LIMIT } from '../../thin/index.js';
import { valueU64 } from '../check/node-checks.js';
import type { MappingRun } from '../xml/metadata-image.js';
import type { LostRange, SalvageWalker } from './salvage-walker.js';

const MAPPING_VALUE_SIZE = 8;

export interface SalvageRoots {
  mappingRoot: number;
  /** Undefined when no details tree was found. */
  detailsRoot: number | undefined;
  nrDataBlocks: number;
}

export interface KeptDetails {
  transaction: number;
  creationTime: number;
  snapTime: number;
}

export interface SalvagedDevice {
  id: number;
  details: KeptDetails;
  /** The details were lost and made up (see the contract above). */
  detailsLost: boolean;
  runs: MappingRun[];
  mappings: number;
  /** vblock ranges lost to damaged nodes, and single vblocks dropped, in vblock order. */
  lost: LostRange[];
  maxTime: number;
}

export interface LostDevice {
  id: number;
  block: number | undefined;
  problem: string;
}

export interface SalvagedPool {
  devices: SalvagedDevice[];
  /** Devices known from their details whose mapping tree entry was lost. */
  lostDevices: LostDevice[];
  /** Ranges of device ids lost from the top-level tree (devices there may be unknown). */
  lostDeviceRanges: LostRange[];
  /** Ranges of device ids whose details were lost. */
  lostDetailsRanges: LostRange[];
  /** The largest time any kept mapping or details record carries. */
  maxTime: number;
}

/** Reads everything below `roots` that can be read. */
export async function salvagePool(
  walker: SalvageWalker,
  roots: SalvageRoots,
): Promise<SalvagedPool> {
  const details = new Map<number, KeptDetails>();
  const lostDetailsRanges =
    roots.detailsRoot === undefined
      ? [{ begin: 0, end: undefined, block: undefined, problem: 'no details tree was found' }]
      : await walker.walk(roots.detailsRoot, DETAILS_SIZE, (leaf) => readDetails(leaf, details));
  const subtrees = new Map<number, number | undefined>();
  const lostDeviceRanges = await walker.walk(roots.mappingRoot, MAPPING_VALUE_SIZE, (leaf) =>
    readTopLevel(leaf, subtrees),
  );
  let maxTime = 0;
  const devices: SalvagedDevice[] = [];
  const badIds: LostDevice[] = [];
  for (const [id, root] of [...subtrees].sort((a, b) => a[0] - b[0])) {
    if (id >= THIN_ID_LIMIT) {
      const problem = `device id ${id} is beyond the largest, ${THIN_ID_LIMIT - 1}`;
      badIds.push({ id, block: undefined, problem });
      continue;
    }
    const device = await salvageDevice(walker, id, root, roots.nrDataBlocks);
    const known = details.get(id);
    device.detailsLost = known === undefined;
    if (known !== undefined) device.details = known;
    maxTime = Math.max(maxTime, device.maxTime, known?.creationTime ?? 0, known?.snapTime ?? 0);
    devices.push(device);
  }
  for (const device of devices) {
    if (device.detailsLost) device.details = { transaction: 0, creationTime: 0, snapTime: maxTime };
  }
  const lostDevices = [...devicesLost(details, subtrees, lostDeviceRanges), ...badIds];
  return {
    devices,
    lostDevices,
    lostDeviceRanges: lostDeviceRanges.filter((r) => !lostDevices.some((d) => within(d.id, r))),
    lostDetailsRanges,
    maxTime,
  };
}

/** Devices with details but no entry in the top-level tree, where that entry was lost. */
function devicesLost(
  details: Map<number, KeptDetails>,
  subtrees: Map<number, number | undefined>,
  lostRanges: LostRange[],
): LostDevice[] {
  const lost: LostDevice[] = [];
  for (const id of [...details.keys()].sort((a, b) => a - b)) {
    if (subtrees.has(id)) continue;
    const range = lostRanges.find((r) => within(id, r));
    if (range !== undefined) lost.push({ id, block: range.block, problem: range.problem });
  }
  return lost;
}

function within(key: number, range: LostRange): boolean {
  return key >= range.begin && (range.end === undefined || key < range.end);
}

function readDetails(leaf: Node, into: Map<number, KeptDetails>): void {
  for (let i = 0; i < leaf.nrEntries; i++) {
    const id = leaf.key(i);
    if (into.has(id)) continue;
    try {
      const d = decodeDetails(leaf.value(i));
      into.set(id, {
        transaction: d.transactionId,
        creationTime: d.creationTime,
        snapTime: d.snapshottedTime,
      });
    } catch {
      // A transaction id beyond 2^53: these details cannot be kept.
    }
  }
}

/** Device id → mapping tree root (undefined when the value lies beyond 2^53). */
function readTopLevel(leaf: Node, into: Map<number, number | undefined>): void {
  for (let i = 0; i < leaf.nrEntries; i++) {
    const id = leaf.key(i);
    if (!into.has(id)) into.set(id, valueU64(leaf, i));
  }
}

async function salvageDevice(
  walker: SalvageWalker,
  id: number,
  root: number | undefined,
  nrDataBlocks: number,
): Promise<SalvagedDevice> {
  const device: SalvagedDevice = {
    id,
    details: { transaction: 0, creationTime: 0, snapTime: 0 },
    detailsLost: false,
    runs: [],
    mappings: 0,
    lost: [],
    maxTime: 0,
  };
  if (root === undefined) {
    device.lost.push({
      begin: 0,
      end: undefined,
      block: undefined,
      problem: 'its mapping tree root lies beyond 2^53',
    });
    return device;
  }
  const entries = new Mappings();
  const lost = await walker.walk(root, MAPPING_VALUE_SIZE, (leaf) => entries.addLeaf(leaf));
  const { runs, dropped, maxTime, count } = entries.finish(nrDataBlocks);
  device.runs = runs;
  device.mappings = count;
  device.maxTime = maxTime;
  device.lost = [...lost, ...dropped].sort((a, b) => a.begin - b.begin);
  return device;
}

/** The mappings of one device as they are read, leaf by leaf. */
class Mappings {
  private vblocks: number[] = [];
  private dataBlocks: number[] = [];
  private times: number[] = [];
  private sorted = true;

  addLeaf(leaf: Node): void {
    for (let i = 0; i < leaf.nrEntries; i++) {
      const vblock = leaf.key(i);
      const last = this.vblocks.at(-1);
      if (last !== undefined && vblock <= last) this.sorted = false;
      const { dataBlock, time } = decodeBlockTime(leaf.value(i));
      this.vblocks.push(vblock);
      this.dataBlocks.push(dataBlock);
      this.times.push(time);
    }
  }

  /** The mappings as runs, in vblock order, without those beyond the data device. */
  finish(nrDataBlocks: number): {
    runs: MappingRun[];
    dropped: LostRange[];
    maxTime: number;
    count: number;
  } {
    const order = this.order();
    const runs: MappingRun[] = [];
    const dropped: LostRange[] = [];
    let maxTime = 0;
    let count = 0;
    let previous = -1;
    for (const i of order) {
      const vblock = this.vblocks[i] as number;
      const dataBlock = this.dataBlocks[i] as number;
      const time = this.times[i] as number;
      if (vblock === previous) continue;
      previous = vblock;
      if (dataBlock >= nrDataBlocks) {
        dropped.push({
          begin: vblock,
          end: vblock + 1,
          block: undefined,
          problem: `it mapped to data block ${dataBlock}, beyond the data device's ${nrDataBlocks} blocks`,
        });
        continue;
      }
      count++;
      maxTime = Math.max(maxTime, time);
      appendMapping(runs, vblock, dataBlock, time);
    }
    return { runs, dropped, maxTime, count };
  }

  /** Entry indexes in vblock order; the first read of a vblock comes first. */
  private order(): number[] {
    const order = this.vblocks.map((_, i) => i);
    if (!this.sorted)
      order.sort((a, b) => (this.vblocks[a] as number) - (this.vblocks[b] as number) || a - b);
    return order;
  }
}

function appendMapping(runs: MappingRun[], vblock: number, dataBlock: number, time: number): void {
  const last = runs.at(-1);
  if (
    last !== undefined &&
    last.time === time &&
    last.vblock + last.length === vblock &&
    last.dataBlock + last.length === dataBlock
  ) {
    last.length++;
    return;
  }
  runs.push({ vblock, dataBlock, length: 1, time });
}
