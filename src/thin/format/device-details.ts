/**
 * A device details record: the 24-byte value of the details tree, keyed by device id.
 *
 * | offset | size | field            |
 * | ------ | ---- | ---------------- |
 * | 0      | u64  | mapped_blocks    |
 * | 8      | u64  | transaction_id   |
 * | 16     | u32  | creation_time    |
 * | 20     | u32  | snapshotted_time |
 */

import { readU64LE, writeU64LE } from '../../util/index.js';

export const DETAILS = {
  mappedBlocks: 0,
  transactionId: 8,
  creationTime: 16,
  snapshottedTime: 20,
} as const;
export const DETAILS_SIZE = 24;

export interface DeviceDetails {
  mappedBlocks: number;
  transactionId: number;
  creationTime: number;
  snapshottedTime: number;
}

export function decodeDetails(buf: Buffer): DeviceDetails {
  return {
    mappedBlocks: readU64LE(buf, DETAILS.mappedBlocks),
    transactionId: readU64LE(buf, DETAILS.transactionId),
    creationTime: buf.readUInt32LE(DETAILS.creationTime),
    snapshottedTime: buf.readUInt32LE(DETAILS.snapshottedTime),
  };
}

export function encodeDetails(d: DeviceDetails): Buffer {
  const buf = Buffer.alloc(DETAILS_SIZE);
  writeU64LE(buf, DETAILS.mappedBlocks, d.mappedBlocks);
  writeU64LE(buf, DETAILS.transactionId, d.transactionId);
  buf.writeUInt32LE(d.creationTime, DETAILS.creationTime);
  buf.writeUInt32LE(d.snapshottedTime, DETAILS.snapshottedTime);
  return buf;
}
