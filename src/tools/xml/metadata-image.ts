/**
 * The metadata image: what a thin_dump XML file says about a pool, as plain values. The
 * reader turns XML into a stream of events, the writer turns events back into XML, and
 * `checkImageLimits` checks the limits of the on-disk format that the XML itself cannot
 * express. All numbers are JavaScript safe integers.
 */

import { BadInputError } from '../../util/index.js';

/** The superblock fields the XML carries. */
export interface SuperblockInfo {
  uuid: string;
  time: number;
  transaction: number;
  flags: number;
  version: number;
  dataBlockSize: number;
  nrDataBlocks: number;
  metadataSnap?: number;
}

export interface DeviceInfo {
  devId: number;
  mappedBlocks: number;
  transaction: number;
  creationTime: number;
  snapTime: number;
}

/** `length` consecutive mappings: vblock+i -> dataBlock+i, all at `time`. */
export interface MappingRun {
  vblock: number;
  dataBlock: number;
  length: number;
  time: number;
}

export interface DeviceImage {
  info: DeviceInfo;
  runs: MappingRun[];
}

export interface MetadataImage {
  superblock: SuperblockInfo;
  devices: DeviceImage[];
}

/** A place in an XML text: 1-based line, and 1-based column in UTF-16 code units. */
export interface XmlPosition {
  line: number;
  column: number;
}

/**
 * One step of a dump, in document order: a superblock, then for each device a `device`,
 * its runs and an `endDevice`, then `end`. `at` is where the element starts, when the
 * event was read from a text.
 */
export type XmlEvent =
  | { kind: 'superblock'; info: SuperblockInfo; at?: XmlPosition }
  | { kind: 'device'; info: DeviceInfo; at?: XmlPosition }
  | { kind: 'run'; run: MappingRun; at?: XmlPosition }
  | { kind: 'endDevice'; at?: XmlPosition }
  | { kind: 'end'; at?: XmlPosition };

/** The events of an image, in the order a reader would produce them for its dump. */
export function* imageEvents(image: MetadataImage): Generator<XmlEvent> {
  yield { kind: 'superblock', info: image.superblock };
  for (const device of image.devices) {
    yield { kind: 'device', info: device.info };
    for (const run of device.runs) yield { kind: 'run', run };
    yield { kind: 'endDevice' };
  }
  yield { kind: 'end' };
}

/** Collects a well-ordered event stream (as a reader yields it) into an image. */
export class ImageBuilder {
  private superblock: SuperblockInfo | undefined;
  private readonly devices: DeviceImage[] = [];

  add(event: XmlEvent): void {
    if (event.kind === 'superblock') this.superblock = event.info;
    else if (event.kind === 'device') this.devices.push({ info: event.info, runs: [] });
    else if (event.kind === 'run') this.devices.at(-1)?.runs.push(event.run);
  }

  /** The image so far; throws if no superblock was added. */
  image(): MetadataImage {
    if (this.superblock === undefined) throw new BadInputError('the dump holds no <superblock>');
    return { superblock: this.superblock, devices: this.devices };
  }
}

/** The largest thin device id plus one: ids are 24 bits in the kernel's messages. */
export const DEV_ID_LIMIT = 2 ** 24;
/** Pool and mapping times are 24 bits in the packed mapping value. */
export const TIME_LIMIT = 2 ** 24;
/** Data block numbers are 40 bits in the packed mapping value. */
export const DATA_BLOCK_LIMIT = 2 ** 40;
/** Device creation and snapshot times are u32 fields of the details record. */
const U32_LIMIT = 2 ** 32;
const MIN_DATA_BLOCK_SIZE = 128;
const MAX_DATA_BLOCK_SIZE = 2_097_152;

/**
 * Checks, event by event, the limits of the on-disk format that a well-formed dump can still
 * break: block sizes, 24-bit ids and times, data blocks beyond the data device, repeated
 * devices and mappings out of order. Feed it the events of one dump in order; it throws a
 * `BadInputError` (prefixed with the event's line and column when it has one) at the first
 * violation. It does not check the XML grammar: the reader does that.
 */
export class ImageLimitChecker {
  private superblock: SuperblockInfo | undefined;
  private readonly devIds = new Set<number>();
  private device: DeviceInfo | undefined;
  /** The first vblock after the device's previous run. */
  private nextVblock = 0;

  check(event: XmlEvent): void {
    try {
      this.dispatch(event);
    } catch (error) {
      if (!(error instanceof BadInputError) || event.at === undefined) throw error;
      const { line, column } = event.at;
      throw new BadInputError(`line ${line}, column ${column}: ${error.message}`, {
        hint: error.hint,
      });
    }
  }

  private dispatch(event: XmlEvent): void {
    if (event.kind === 'superblock') this.checkSuperblock(event.info);
    else if (event.kind === 'device') this.checkDevice(event.info);
    else if (event.kind === 'run') this.checkRun(event.run);
    else if (event.kind === 'endDevice') this.device = undefined;
  }

  private checkSuperblock(sb: SuperblockInfo): void {
    const size = sb.dataBlockSize;
    if (
      size % MIN_DATA_BLOCK_SIZE !== 0 ||
      size < MIN_DATA_BLOCK_SIZE ||
      size > MAX_DATA_BLOCK_SIZE
    ) {
      throw new BadInputError(
        `data_block_size ${size} is not a multiple of 128 between 128 and 2097152 sectors`,
        { hint: 'give the data block size in 512-byte sectors, e.g. 128 for 64 KiB' },
      );
    }
    if (sb.nrDataBlocks > DATA_BLOCK_LIMIT) {
      throw new BadInputError(`nr_data_blocks ${sb.nrDataBlocks} is beyond 2^40`, {
        hint: 'a data device holds at most 2^40 blocks',
      });
    }
    checkTime('the superblock time', sb.time, TIME_LIMIT);
    this.superblock = sb;
  }

  private checkDevice(info: DeviceInfo): void {
    if (info.devId >= DEV_ID_LIMIT) {
      throw new BadInputError(`dev_id ${info.devId} is beyond the largest device id 16777215`, {
        hint: 'thin device ids are 24 bits: use an id below 16777216',
      });
    }
    if (this.devIds.has(info.devId)) {
      throw new BadInputError(`device ${info.devId} appears twice`, {
        hint: 'give each <device> its own dev_id',
      });
    }
    checkTime('creation_time', info.creationTime, U32_LIMIT);
    checkTime('snap_time', info.snapTime, U32_LIMIT);
    this.devIds.add(info.devId);
    this.device = info;
    this.nextVblock = 0;
  }

  private checkRun(run: MappingRun): void {
    const nrDataBlocks = this.superblock?.nrDataBlocks ?? 0;
    if (run.length === 0) {
      throw new BadInputError(`the mapping at vblock ${run.vblock} has length 0`, {
        hint: 'remove it, or give it a length of at least 1',
      });
    }
    checkTime('the mapping time', run.time, TIME_LIMIT);
    if (!Number.isSafeInteger(run.vblock + run.length)) {
      throw new BadInputError(`the mapping at vblock ${run.vblock} ends beyond 2^53 - 1`, {
        hint: 'thinp handles vblocks up to 9007199254740991',
      });
    }
    if (run.vblock < this.nextVblock) {
      throw new BadInputError(
        `device ${this.device?.devId}: the mapping at vblock ${run.vblock} overlaps or precedes the previous one, which ends at vblock ${this.nextVblock - 1}`,
        { hint: 'list the mappings of a device in increasing vblock order, without overlaps' },
      );
    }
    if (run.dataBlock + run.length > nrDataBlocks) {
      const dataBlock = Math.max(run.dataBlock, nrDataBlocks);
      const vblock = run.vblock + (dataBlock - run.dataBlock);
      throw new BadInputError(
        `mapping beyond end of data device: vblock ${vblock} maps to data block ${dataBlock}, but nr_data_blocks is ${nrDataBlocks}`,
        { hint: 'raise nr_data_blocks in the <superblock> or remap the block' },
      );
    }
    this.nextVblock = run.vblock + run.length;
  }
}

function checkTime(what: string, value: number, limit: number): void {
  if (value >= limit) {
    throw new BadInputError(`${what} ${value} does not fit in ${Math.log2(limit)} bits`, {
      hint: `use a value below ${limit}`,
    });
  }
}

/** Checks a whole image with `ImageLimitChecker`; throws a `BadInputError` at the first fault. */
export function checkImageLimits(image: MetadataImage): void {
  const checker = new ImageLimitChecker();
  for (const event of imageEvents(image)) checker.check(event);
}
