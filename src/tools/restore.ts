/**
 * thin_restore: pool metadata written from thin_dump XML (dm-thin-format.md §13.3).
 *
 * The XML is read as a stream of events and built as it arrives, in one transaction
 * (MetadataImport, dm-thin-format.md Appendix B): each device's mappings are packed into
 * leaves written as they fill, the trees' upper levels, the space maps and the superblock
 * come at `</superblock>`. Memory stays bounded whatever the number of mappings. Each
 * mapping takes its own reference on its data block, as thin_restore's do.
 *
 * Everything thin_restore rejects is rejected with a `BadInputError` that names the line and
 * column of the fault: bad XML, a mapping beyond the end of the data device, a repeated
 * device, mappings out of order, numbers beyond the format's fields. The device is then left
 * half written: a caller that must not lose what was there restores into a scratch copy and
 * replaces the original only on success.
 *
 * Two deliberate differences from thin_restore 0.9.0: the superblock's version is always 2
 * (thin_restore writes 1 when the attribute is absent, and any value it is given), and
 * `metadata_snap` is ignored (thin_restore copies it into `held_root` without making a held
 * copy, which leaves metadata that thin_check rejects).
 */

import type { BlockDevice } from '../block/index.js';
import { MetadataImport } from '../thin/index.js';
import { BadInputError, ExistsError } from '../util/index.js';
import { readDumpXml } from './xml/dump-reader.js';
import {
  type DeviceInfo,
  ImageLimitChecker,
  type MappingRun,
  type SuperblockInfo,
  type XmlEvent,
  type XmlPosition,
} from './xml/metadata-image.js';

/** The superblock's flags field is a u32. */
const U32_LIMIT = 2 ** 32;

export interface RestoreSummary {
  devices: number;
  mappings: number;
  dataBlockSize: number;
  nrDataBlocks: number;
}

/**
 * Formats `device` and writes the pool that the dump `source` describes. Resolves once the
 * last commit is durable.
 */
export async function restoreMetadata(
  source: AsyncIterable<string | Buffer>,
  device: BlockDevice,
): Promise<RestoreSummary> {
  const restore = new Restore(device);
  const checker = new ImageLimitChecker();
  for await (const event of readDumpXml(source)) {
    checker.check(event);
    if (event.kind === 'superblock') {
      // Errors of the format itself are about the device (too small), not about the text.
      await atPosition(event.at, async () => checkFlags(event.info));
      await restore.event(event);
    } else {
      await atPosition(event.at, () => restore.event(event));
    }
  }
  return restore.summary();
}

/**
 * Formats `device` and writes the pool that `events` describe (a metadata image, as repair
 * rebuilds it), through the same checks and the same writer as a restore from XML.
 */
export async function restoreEvents(
  events: Iterable<XmlEvent>,
  device: BlockDevice,
): Promise<RestoreSummary> {
  const restore = new Restore(device);
  const checker = new ImageLimitChecker();
  for (const event of events) {
    checker.check(event);
    if (event.kind === 'superblock') checkFlags(event.info);
    await restore.event(event);
  }
  return restore.summary();
}

/** The state of one restore between events. */
class Restore {
  private build: MetadataImport | undefined;
  private superblock: SuperblockInfo | undefined;
  private inDevice = false;
  private mappings = 0;
  private finished = false;

  constructor(private readonly device: BlockDevice) {}

  event(event: XmlEvent): Promise<void> {
    switch (event.kind) {
      case 'superblock':
        return this.start(event.info);
      case 'device':
        this.startDevice(event.info);
        return Promise.resolve();
      case 'run':
        return this.run(event.run);
      case 'endDevice':
        this.inDevice = false;
        return this.importer().endDevice();
      case 'end':
        return this.end();
    }
  }

  summary(): RestoreSummary {
    if (!this.finished || this.superblock === undefined || this.build === undefined) {
      // The reader fails on a dump that is cut short; this is a second line of defence.
      throw new BadInputError('the dump ends before </superblock>', {
        hint: 'the dump is cut short: dump the pool again',
      });
    }
    return {
      devices: this.build.deviceCount,
      mappings: this.mappings,
      dataBlockSize: this.superblock.dataBlockSize,
      nrDataBlocks: this.superblock.nrDataBlocks,
    };
  }

  private async start(sb: SuperblockInfo): Promise<void> {
    this.superblock = sb;
    this.build = await MetadataImport.begin(this.device, {
      dataBlockSize: sb.dataBlockSize,
      nrDataBlocks: sb.nrDataBlocks,
      time: sb.time,
      transactionId: sb.transaction,
      flags: sb.flags,
      uuid: sb.uuid,
    });
  }

  private startDevice(info: DeviceInfo): void {
    try {
      this.importer().beginDevice(info.devId, {
        transactionId: info.transaction,
        creationTime: info.creationTime,
        snapshottedTime: info.snapTime,
      });
    } catch (error) {
      if (!(error instanceof ExistsError)) throw error;
      throw new BadInputError(`device ${info.devId} appears twice (Device already exists)`, {
        hint: 'give each <device> its own dev_id',
      });
    }
    this.inDevice = true;
  }

  private async run(run: MappingRun): Promise<void> {
    const build = this.importer();
    if (!this.inDevice) throw new BadInputError('a mapping outside a <device>');
    await build.addRun(run.vblock, run.dataBlock, run.length, run.time);
    this.mappings += run.length;
  }

  private async end(): Promise<void> {
    await this.importer().finish();
    this.finished = true;
  }

  private importer(): MetadataImport {
    if (this.build === undefined) {
      throw new BadInputError('the dump does not start with <superblock>', {
        hint: 'a thin_dump file starts with <superblock ...>',
      });
    }
    return this.build;
  }
}

/** The one superblock field the limit checker leaves to the writer: flags is a u32. */
function checkFlags(sb: SuperblockInfo): void {
  if (sb.flags >= U32_LIMIT) {
    throw new BadInputError(`flags ${sb.flags} does not fit in 32 bits`, {
      hint: 'flags is 0, or 1 for needs_check',
    });
  }
}

/** Runs `fn`; a `BadInputError` it throws is prefixed with the event's line and column. */
async function atPosition(at: XmlPosition | undefined, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (error) {
    if (!(error instanceof BadInputError) || at === undefined || /^line \d+/.test(error.message)) {
      throw error;
    }
    throw new BadInputError(`line ${at.line}, column ${at.column}: ${error.message}`, {
      hint: error.hint,
      cause: error,
    });
  }
}
