/**
 * Random valid metadata images for property tests, and the canonical form thin_dump gives
 * an image (runs merged, devices in id order, no uuid).
 */

import fc from 'fast-check';
import type {
  DeviceImage,
  MappingRun,
  MetadataImage,
  SuperblockInfo,
} from '../../src/tools/xml/metadata-image.js';

export interface ImageOptions {
  /** Most devices in one image (default 5). */
  maxDevices?: number;
  /** Most runs generated per device (default 8); some may be dropped or merged. */
  maxRunsPerDevice?: number;
  /** Longest run generated (default 64). */
  maxRunLength?: number;
}

const MAX_DEV_ID = 2 ** 24 - 1;
const MAX_TIME = 2 ** 24 - 1;
/** Keeps the data space map small enough for a 64 MiB metadata file. */
const MAX_DATA_BLOCKS = 2 ** 22;

/**
 * Images that thin_restore accepts and thin_check passes: version 2, flags 0, uuid "",
 * unique device ids in increasing order (0 and 16777215 among them now and then), and per
 * device increasing, non-overlapping runs whose data blocks are below nr_data_blocks and
 * distinct within the device (devices often share blocks). Times are at most the superblock
 * time, device transactions at most the superblock's, creation_time ≤ snap_time, and
 * mapped_blocks is the number of mappings.
 */
export function arbMetadataImage(options: ImageOptions = {}): fc.Arbitrary<MetadataImage> {
  const limits = {
    maxDevices: options.maxDevices ?? 5,
    maxRuns: options.maxRunsPerDevice ?? 8,
    maxRunLength: options.maxRunLength ?? 64,
  };
  return arbSuperblock().chain((superblock) =>
    fc
      .uniqueArray(arbDevId(), { maxLength: limits.maxDevices })
      .chain((ids) =>
        fc
          .tuple(...ids.sort((a, b) => a - b).map((id) => arbDevice(superblock, id, limits)))
          .map((devices): MetadataImage => ({ superblock, devices })),
      ),
  );
}

function arbSuperblock(): fc.Arbitrary<SuperblockInfo> {
  return fc.record({
    uuid: fc.constant(''),
    time: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: MAX_TIME })),
    transaction: fc.oneof(fc.integer({ min: 0, max: 10 }), fc.maxSafeNat()),
    flags: fc.constant(0),
    version: fc.constant(2),
    dataBlockSize: fc
      .oneof(fc.constant(128), fc.integer({ min: 1, max: 16384 }))
      .map((n) => (n === 128 ? n : n * 128)),
    nrDataBlocks: fc.oneof(
      fc.integer({ min: 1, max: 64 }),
      fc.integer({ min: 1, max: MAX_DATA_BLOCKS }),
    ),
  });
}

function arbDevId(): fc.Arbitrary<number> {
  return fc.oneof(
    fc.constantFrom(0, MAX_DEV_ID),
    fc.integer({ min: 0, max: 20 }),
    fc.integer({ min: 0, max: MAX_DEV_ID }),
  );
}

/** A run before its data blocks are chosen: `data` undefined continues the previous run. */
interface RawRun {
  gap: number;
  length: number;
  time: number;
  data: number | undefined;
}

interface Limits {
  maxRuns: number;
  maxRunLength: number;
}

function arbDevice(sb: SuperblockInfo, devId: number, limits: Limits): fc.Arbitrary<DeviceImage> {
  const lastData = sb.nrDataBlocks - 1;
  const rawRun = fc.record({
    gap: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 16 }), fc.nat(2 ** 32)),
    length: fc.integer({ min: 1, max: limits.maxRunLength }),
    time: fc.oneof(fc.constantFrom(0, sb.time), fc.integer({ min: 0, max: sb.time })),
    data: fc.option(fc.oneof(fc.nat(Math.min(lastData, 64)), fc.nat(lastData)), { nil: undefined }),
  });
  return fc
    .record({
      transaction: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: sb.transaction })),
      times: fc
        .tuple(fc.nat(sb.time), fc.nat(sb.time))
        .map(([a, b]) => [a, b].sort((x, y) => x - y)),
      firstVblock: fc.oneof(fc.constant(0), fc.nat(1000), fc.nat(2 ** 40)),
      rawRuns: fc.array(rawRun, { maxLength: limits.maxRuns }),
    })
    .map(({ transaction, times: [creationTime = 0, snapTime = 0], firstVblock, rawRuns }) => {
      const runs = placeRuns(firstVblock, rawRuns, sb.nrDataBlocks);
      const mappedBlocks = runs.reduce((sum, run) => sum + run.length, 0);
      return { info: { devId, mappedBlocks, transaction, creationTime, snapTime }, runs };
    });
}

/**
 * Lays the raw runs out at increasing vblocks and gives them data blocks. A run is cut short
 * where it would reach the end of the data device or a block this device already uses, and
 * dropped if nothing is left of it.
 */
function placeRuns(firstVblock: number, rawRuns: RawRun[], nrDataBlocks: number): MappingRun[] {
  const used = new Set<number>();
  const runs: MappingRun[] = [];
  let vblock = firstVblock;
  let nextData = 0;
  for (const raw of rawRuns) {
    vblock += raw.gap;
    const dataBlock = raw.data ?? nextData;
    let length = 0;
    while (
      length < raw.length &&
      dataBlock + length < nrDataBlocks &&
      !used.has(dataBlock + length)
    ) {
      used.add(dataBlock + length);
      length++;
    }
    if (length > 0) runs.push({ vblock, dataBlock, length, time: raw.time });
    nextData = dataBlock + length;
    vblock += raw.length;
  }
  return runs;
}

/** Every mapping of the runs, in order, as [vblock, dataBlock, time]. */
export function expandRuns(runs: readonly MappingRun[]): Array<[number, number, number]> {
  const mappings: Array<[number, number, number]> = [];
  for (const run of runs) {
    for (let i = 0; i < run.length; i++) {
      mappings.push([run.vblock + i, run.dataBlock + i, run.time]);
    }
  }
  return mappings;
}

/**
 * The image as thin_dump would print it after thin_restore: devices in increasing id order,
 * adjacent runs merged (next vblock, next data block, same time), runs of length 0 gone,
 * uuid "" and no metadata_snap. For an image whose devices are already in id order,
 * `parseDumpXml(formatDumpXml(image))` deep-equals `canonicalImage(image)`.
 */
export function canonicalImage(image: MetadataImage): MetadataImage {
  const { metadataSnap: _, ...superblock } = image.superblock;
  const devices = [...image.devices]
    .sort((a, b) => a.info.devId - b.info.devId)
    .map((device) => ({ info: { ...device.info }, runs: mergeRuns(device.runs) }));
  return { superblock: { ...superblock, uuid: '' }, devices };
}

/** The runs with each one that continues its predecessor folded into it. */
export function mergeRuns(runs: readonly MappingRun[]): MappingRun[] {
  const merged: MappingRun[] = [];
  for (const run of runs) {
    if (run.length === 0) continue;
    const last = merged.at(-1);
    if (
      last !== undefined &&
      run.vblock === last.vblock + last.length &&
      run.dataBlock === last.dataBlock + last.length &&
      run.time === last.time
    ) {
      last.length += run.length;
    } else {
      merged.push({ ...run });
    }
  }
  return merged;
}
