/**
 * The thin_dump XML writer. It prints exactly what thin_dump 0.9.0 prints for the same
 * metadata (dm-thin-format.md §13.2), so that its output can be compared byte for byte
 * with the real tool's.
 */

import { InternalError } from '../../util/index.js';
import {
  type DeviceInfo,
  imageEvents,
  type MappingRun,
  type MetadataImage,
  type SuperblockInfo,
  type XmlEvent,
} from './metadata-image.js';

/** Receives the text in order; a returned promise is awaited before the next chunk. */
export type DumpSink = (chunk: string) => void | Promise<void>;

/** The writer hands text to its sink in chunks of about this many characters. */
export const DUMP_CHUNK_SIZE = 64 * 1024;

type Place = 'start' | 'pool' | 'device' | 'done';

/**
 * The text of a dump, built step by step without I/O. Mappings are grouped into runs as
 * thin_dump groups them: a run continues while the next mapping has the next vblock, the
 * next data block and the same time. A run of length 1 prints as `<single_mapping>`, a
 * longer one as `<range_mapping>`. Calls must follow the document order: `superblock`, then
 * for each device `device`, its mappings and `endDevice`, then `end`; any other order throws
 * an `InternalError`.
 */
export class DumpText {
  private text = '';
  private place: Place = 'start';
  /** The run being grown; `runLength` 0 means none. */
  private runVblock = 0;
  private runData = 0;
  private runLength = 0;
  private runTime = 0;

  /** How many characters are waiting to be taken. */
  get size(): number {
    return this.text.length;
  }

  /** The text written since the last call, which is then forgotten. */
  take(): string {
    const text = this.text;
    this.text = '';
    return text;
  }

  /** Opens the pool. The uuid and `metadataSnap` are never printed, as in thin_dump 0.9.0. */
  superblock(info: SuperblockInfo): void {
    this.expect('start', '<superblock>');
    this.text +=
      `<superblock uuid="" time="${info.time}" transaction="${info.transaction}"` +
      ` flags="${info.flags}" version="${info.version}"` +
      ` data_block_size="${info.dataBlockSize}" nr_data_blocks="${info.nrDataBlocks}">\n`;
    this.place = 'pool';
  }

  device(info: DeviceInfo): void {
    this.expect('pool', '<device>');
    this.text +=
      `  <device dev_id="${info.devId}" mapped_blocks="${info.mappedBlocks}"` +
      ` transaction="${info.transaction}" creation_time="${info.creationTime}"` +
      ` snap_time="${info.snapTime}">\n`;
    this.place = 'device';
  }

  /** Adds `length` mappings; a run of length 0 adds nothing. */
  run(run: MappingRun): void {
    this.expect('device', 'a mapping');
    if (run.length === 0) return;
    this.extend(run.vblock, run.dataBlock, run.length, run.time);
  }

  /** Adds one mapping: `run` of length 1 without building the run. */
  mapping(vblock: number, dataBlock: number, time: number): void {
    this.expect('device', 'a mapping');
    this.extend(vblock, dataBlock, 1, time);
  }

  private extend(vblock: number, dataBlock: number, length: number, time: number): void {
    if (
      this.runLength > 0 &&
      vblock === this.runVblock + this.runLength &&
      dataBlock === this.runData + this.runLength &&
      time === this.runTime
    ) {
      this.runLength += length;
      return;
    }
    this.printRun();
    this.runVblock = vblock;
    this.runData = dataBlock;
    this.runLength = length;
    this.runTime = time;
  }

  endDevice(): void {
    this.expect('device', '</device>');
    this.printRun();
    this.text += '  </device>\n';
    this.place = 'pool';
  }

  end(): void {
    this.expect('pool', '</superblock>');
    this.text += '</superblock>\n';
    this.place = 'done';
  }

  /** Adds one event of a reader's stream. */
  event(event: XmlEvent): void {
    if (event.kind === 'superblock') this.superblock(event.info);
    else if (event.kind === 'device') this.device(event.info);
    else if (event.kind === 'run') this.run(event.run);
    else if (event.kind === 'endDevice') this.endDevice();
    else this.end();
  }

  private printRun(): void {
    const length = this.runLength;
    if (length === 0) return;
    this.text +=
      length === 1
        ? `    <single_mapping origin_block="${this.runVblock}" data_block="${this.runData}" time="${this.runTime}"/>\n`
        : `    <range_mapping origin_begin="${this.runVblock}" data_begin="${this.runData}" length="${length}" time="${this.runTime}"/>\n`;
    this.runLength = 0;
  }

  private expect(place: Place, what: string): void {
    if (this.place !== place) {
      throw new InternalError(`dump writer: ${what} cannot follow this point (${this.place})`);
    }
  }
}

/**
 * Writes a dump to a sink, in chunks of about `DUMP_CHUNK_SIZE` characters, so that a
 * million mappings make a handful of sink calls, not a million. Each method resolves once
 * the sink has accepted every full chunk; `end()` resolves once it has accepted the rest.
 * The call order is `DumpText`'s.
 */
export class DumpWriter {
  private readonly text = new DumpText();

  constructor(private readonly sink: DumpSink) {}

  async superblock(info: SuperblockInfo): Promise<void> {
    this.text.superblock(info);
    await this.flushFull();
  }

  async device(info: DeviceInfo): Promise<void> {
    this.text.device(info);
    await this.flushFull();
  }

  async mapping(vblock: number, dataBlock: number, time: number): Promise<void> {
    this.text.mapping(vblock, dataBlock, time);
    await this.flushFull();
  }

  /**
   * Adds one mapping without handing anything to the sink: for a batch of mappings (a
   * leaf), followed by `flush()`.
   */
  addMapping(vblock: number, dataBlock: number, time: number): void {
    this.text.mapping(vblock, dataBlock, time);
  }

  /** Hands the sink the text once a full chunk is waiting; nothing to await otherwise. */
  flush(): Promise<void> | undefined {
    return this.text.size >= DUMP_CHUNK_SIZE ? this.flushFull() : undefined;
  }

  async run(run: MappingRun): Promise<void> {
    this.text.run(run);
    await this.flushFull();
  }

  async endDevice(): Promise<void> {
    this.text.endDevice();
    await this.flushFull();
  }

  async end(): Promise<void> {
    this.text.end();
    await this.sink(this.text.take());
  }

  /** Writes one event of a reader's stream. */
  async event(event: XmlEvent): Promise<void> {
    this.text.event(event);
    await (event.kind === 'end' ? this.sink(this.text.take()) : this.flushFull());
  }

  private async flushFull(): Promise<void> {
    if (this.text.size >= DUMP_CHUNK_SIZE) await this.sink(this.text.take());
  }
}

/** The whole dump of a small image, as thin_dump 0.9.0 would print it. */
export function formatDumpXml(image: MetadataImage): string {
  const text = new DumpText();
  const parts: string[] = [];
  for (const event of imageEvents(image)) {
    text.event(event);
    if (text.size >= DUMP_CHUNK_SIZE) parts.push(text.take());
  }
  parts.push(text.take());
  return parts.join('');
}
