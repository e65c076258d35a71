/**
 * The label thinp writes at the start of every device of a direct-lvm pool (the role of an
 * LVM physical-volume label and its metadata area): which pool the device belongs to, every
 * device of the pool by uuid, and the segments of the pool's data and metadata spaces.
 * Every device carries the whole table, so any one of them names all the others.
 *
 * A device begins with LABEL_AREA bytes that hold two label slots of 4096 bytes, at 0 and
 * 4096; a change writes the slot of its sequence number's parity, so a torn write leaves the
 * other slot whole. Readers take the valid slot with the higher sequence number. Segments
 * are laid out from LABEL_AREA on, in whole extents of EXTENT bytes.
 *
 * Slot layout (little-endian):
 *
 * | offset | size | field                                                             |
 * | ------ | ---- | ----------------------------------------------------------------- |
 * | 0      | 8    | magic "THINPLBL"                                                   |
 * | 8      | 4    | csum: CRC-32C of bytes 12..4096                                    |
 * | 12     | 4    | version (1)                                                        |
 * | 16     | 8    | seqno: grows by one with every change                              |
 * | 24     | 16   | poolUuid                                                           |
 * | 40     | 16   | deviceUuid: this device's                                          |
 * | 56     | 4    | nrDevices                                                          |
 * | 60     | 4    | nrSegments                                                         |
 * | 64     | 4    | dataBlockSize (bytes)                                              |
 * | 128    | 32×n | devices: uuid (16), size (8), 8 reserved                           |
 * | 640    | 24×m | segments, in order within each space: kind (4: 1 data, 2 metadata), device index (4), offset (8), length (8) |
 */

import { BadInputError, crc32c } from '../util/index.js';

export const LABEL_SLOT_SIZE = 4096;
/** Bytes kept at the start of each device for the two label slots (and alignment). */
export const LABEL_AREA = 1024 * 1024;
/** The unit of allocation on a device. */
export const EXTENT = 1024 * 1024;
export const MAX_DEVICES = 16;
export const MAX_SEGMENTS = 144;

export const LABEL = {
  magic: 0,
  csum: 8,
  version: 12,
  seqno: 16,
  poolUuid: 24,
  deviceUuid: 40,
  nrDevices: 56,
  nrSegments: 60,
  dataBlockSize: 64,
  devices: 128,
  segments: 640,
} as const;

export const DEVICE_ENTRY = { size: 32, uuid: 0, bytes: 16 } as const;
export const SEGMENT_ENTRY = { size: 24, kind: 0, device: 4, offset: 8, length: 16 } as const;

export const LABEL_MAGIC = Buffer.from('THINPLBL', 'latin1');
export const LABEL_VERSION = 1;

export type SpaceKind = 'data' | 'metadata';
const KIND_CODE: Record<SpaceKind, number> = { data: 1, metadata: 2 };

export interface LabelDevice {
  /** 32 hex digits. */
  uuid: string;
  /** The device's size in bytes when last labelled. */
  size: number;
}

export interface Segment {
  kind: SpaceKind;
  /** Index into `devices`. */
  device: number;
  offset: number;
  length: number;
}

export interface PoolLabel {
  seqno: number;
  poolUuid: string;
  /** The device this copy of the label is on. */
  deviceUuid: string;
  dataBlockSize: number;
  devices: LabelDevice[];
  segments: Segment[];
}

/** The 4096 bytes of `label`, checksum included. */
export function encodeLabel(label: PoolLabel): Buffer {
  if (label.devices.length > MAX_DEVICES || label.segments.length > MAX_SEGMENTS) {
    throw new BadInputError(
      `a pool label holds at most ${MAX_DEVICES} devices and ${MAX_SEGMENTS} segments`,
      { hint: 'add fewer devices, or grow the pool in larger steps' },
    );
  }
  const buf = Buffer.alloc(LABEL_SLOT_SIZE);
  LABEL_MAGIC.copy(buf, LABEL.magic);
  buf.writeUInt32LE(LABEL_VERSION, LABEL.version);
  writeU64(buf, LABEL.seqno, label.seqno);
  Buffer.from(label.poolUuid, 'hex').copy(buf, LABEL.poolUuid);
  Buffer.from(label.deviceUuid, 'hex').copy(buf, LABEL.deviceUuid);
  buf.writeUInt32LE(label.devices.length, LABEL.nrDevices);
  buf.writeUInt32LE(label.segments.length, LABEL.nrSegments);
  buf.writeUInt32LE(label.dataBlockSize, LABEL.dataBlockSize);
  label.devices.forEach((d, i) => {
    const at = LABEL.devices + i * DEVICE_ENTRY.size;
    Buffer.from(d.uuid, 'hex').copy(buf, at + DEVICE_ENTRY.uuid);
    writeU64(buf, at + DEVICE_ENTRY.bytes, d.size);
  });
  label.segments.forEach((s, i) => {
    const at = LABEL.segments + i * SEGMENT_ENTRY.size;
    buf.writeUInt32LE(KIND_CODE[s.kind], at + SEGMENT_ENTRY.kind);
    buf.writeUInt32LE(s.device, at + SEGMENT_ENTRY.device);
    writeU64(buf, at + SEGMENT_ENTRY.offset, s.offset);
    writeU64(buf, at + SEGMENT_ENTRY.length, s.length);
  });
  buf.writeUInt32LE(crc32c(buf.subarray(LABEL.version)), LABEL.csum);
  return buf;
}

/** Whether `buf` starts with the label magic (valid or not). */
export function hasLabelMagic(buf: Uint8Array): boolean {
  return Buffer.from(buf.subarray(0, LABEL_MAGIC.length)).equals(LABEL_MAGIC);
}

/**
 * The label in `buf`, or a string saying why there is none: no magic, a bad checksum, an
 * unknown version, or a field out of range. Trusts nothing.
 */
export function decodeLabel(buf: Buffer): PoolLabel | string {
  if (buf.length < LABEL_SLOT_SIZE || !hasLabelMagic(buf)) return 'no thinp label';
  if (buf.readUInt32LE(LABEL.csum) !== crc32c(buf.subarray(LABEL.version, LABEL_SLOT_SIZE))) {
    return 'the label checksum does not match';
  }
  const version = buf.readUInt32LE(LABEL.version);
  if (version !== LABEL_VERSION) return `label version ${version} is not supported`;
  const nrDevices = buf.readUInt32LE(LABEL.nrDevices);
  const nrSegments = buf.readUInt32LE(LABEL.nrSegments);
  if (nrDevices === 0 || nrDevices > MAX_DEVICES || nrSegments > MAX_SEGMENTS) {
    return `the label lists ${nrDevices} devices and ${nrSegments} segments`;
  }
  const devices = Array.from({ length: nrDevices }, (_, i) => {
    const at = LABEL.devices + i * DEVICE_ENTRY.size;
    return { uuid: hex(buf, at + DEVICE_ENTRY.uuid), size: readU64(buf, at + DEVICE_ENTRY.bytes) };
  });
  if (devices.some((d) => !Number.isSafeInteger(d.size))) return 'a device size is out of range';
  const segments: Segment[] = [];
  for (let i = 0; i < nrSegments; i++) {
    const at = LABEL.segments + i * SEGMENT_ENTRY.size;
    const code = buf.readUInt32LE(at + SEGMENT_ENTRY.kind);
    const kind = code === 1 ? 'data' : code === 2 ? 'metadata' : undefined;
    const device = buf.readUInt32LE(at + SEGMENT_ENTRY.device);
    const offset = readU64(buf, at + SEGMENT_ENTRY.offset);
    const length = readU64(buf, at + SEGMENT_ENTRY.length);
    const owner = devices[device];
    const whole = Number.isSafeInteger(offset) && Number.isSafeInteger(length);
    if (kind === undefined || owner === undefined || !whole || offset < LABEL_AREA) {
      return `segment ${i} is malformed`;
    }
    if (offset + length > owner.size) return `segment ${i} lies past the end of its device`;
    segments.push({ kind, device, offset, length });
  }
  return {
    seqno: readU64(buf, LABEL.seqno),
    poolUuid: hex(buf, LABEL.poolUuid),
    deviceUuid: hex(buf, LABEL.deviceUuid),
    dataBlockSize: buf.readUInt32LE(LABEL.dataBlockSize),
    devices,
    segments,
  };
}

/** The slot a label of `seqno` is written to. */
export function labelSlotOffset(seqno: number): number {
  return (seqno % 2) * LABEL_SLOT_SIZE;
}

function hex(buf: Buffer, at: number): string {
  return buf.subarray(at, at + 16).toString('hex');
}

function writeU64(buf: Buffer, at: number, value: number): void {
  buf.writeUInt32LE(value % 2 ** 32, at);
  buf.writeUInt32LE(Math.floor(value / 2 ** 32), at + 4);
}

function readU64(buf: Buffer, at: number): number {
  const value = buf.readUInt32LE(at) + buf.readUInt32LE(at + 4) * 2 ** 32;
  return Number.isSafeInteger(value) ? value : Number.NaN;
}
