/**
 * The dm-thin superblock: block 0 of the metadata device (and the held copy of a metadata
 * snapshot). 364 bytes are used; the rest of the block is zero.
 *
 * | offset | size | field                   |
 * | ------ | ---- | ----------------------- |
 * | 0      | u32  | csum (superblock salt)  |
 * | 4      | u32  | flags (bit 0: needs_check) |
 * | 8      | u64  | blocknr                 |
 * | 16     | 16   | uuid                    |
 * | 32     | u64  | magic = 27022010        |
 * | 40     | u32  | version                 |
 * | 44     | u32  | time                    |
 * | 48     | u64  | trans_id                |
 * | 56     | u64  | held_root               |
 * | 64     | 128  | data space map root     |
 * | 192    | 128  | metadata space map root |
 * | 320    | u64  | data_mapping_root       |
 * | 328    | u64  | device_details_root     |
 * | 336    | u32  | data_block_size (sectors) |
 * | 340    | u32  | metadata_block_size = 8 |
 * | 344    | u64  | metadata_nr_blocks      |
 * | 352    | u32  | compat_flags            |
 * | 356    | u32  | compat_ro_flags         |
 * | 360    | u32  | incompat_flags          |
 */

import {
  CSUM_XOR,
  checksummedValidator,
  decodeSpaceMapRoot,
  encodeSpaceMapRoot,
  type SpaceMapRoot,
} from '../../pdata/index.js';
import { MetadataCorruptError, readU64LE, writeU64LE } from '../../util/index.js';

export const SB = {
  csum: 0,
  flags: 4,
  blocknr: 8,
  uuid: 16,
  magic: 32,
  version: 40,
  time: 44,
  transId: 48,
  heldRoot: 56,
  dataSpaceMapRoot: 64,
  metadataSpaceMapRoot: 192,
  dataMappingRoot: 320,
  deviceDetailsRoot: 328,
  dataBlockSize: 336,
  metadataBlockSize: 340,
  metadataNrBlocks: 344,
  compatFlags: 352,
  compatRoFlags: 356,
  incompatFlags: 360,
} as const;

export const SUPERBLOCK_MAGIC = 27022010;
export const SUPERBLOCK_VERSION = 2;
export const NEEDS_CHECK_FLAG = 1;
/** metadata_block_size is in sectors: 8 sectors = 4096 bytes. */
export const METADATA_BLOCK_SECTORS = 8;
export const UUID_SIZE = 16;

export interface Superblock {
  flags: number;
  uuid: Buffer;
  magic: number;
  version: number;
  time: number;
  transId: number;
  heldRoot: number;
  dataSpaceMap: SpaceMapRoot;
  metadataSpaceMap: SpaceMapRoot;
  dataMappingRoot: number;
  deviceDetailsRoot: number;
  dataBlockSize: number;
  metadataBlockSize: number;
  metadataNrBlocks: number;
  compatFlags: number;
  compatRoFlags: number;
  incompatFlags: number;
}

export function decodeSuperblock(buf: Buffer, location = 0): Superblock {
  const u64 = (at: number, field: string): number => {
    try {
      return readU64LE(buf, at);
    } catch {
      throw new MetadataCorruptError('superblock', location, `${field} is beyond 2^53`);
    }
  };
  return {
    flags: buf.readUInt32LE(SB.flags),
    uuid: Buffer.from(buf.subarray(SB.uuid, SB.uuid + UUID_SIZE)),
    magic: u64(SB.magic, 'magic'),
    version: buf.readUInt32LE(SB.version),
    time: buf.readUInt32LE(SB.time),
    transId: u64(SB.transId, 'trans_id'),
    heldRoot: u64(SB.heldRoot, 'held_root'),
    dataSpaceMap: decodeSpaceMapRoot(buf, SB.dataSpaceMapRoot),
    metadataSpaceMap: decodeSpaceMapRoot(buf, SB.metadataSpaceMapRoot),
    dataMappingRoot: u64(SB.dataMappingRoot, 'data_mapping_root'),
    deviceDetailsRoot: u64(SB.deviceDetailsRoot, 'device_details_root'),
    dataBlockSize: buf.readUInt32LE(SB.dataBlockSize),
    metadataBlockSize: buf.readUInt32LE(SB.metadataBlockSize),
    metadataNrBlocks: u64(SB.metadataNrBlocks, 'metadata_nr_blocks'),
    compatFlags: buf.readUInt32LE(SB.compatFlags),
    compatRoFlags: buf.readUInt32LE(SB.compatRoFlags),
    incompatFlags: buf.readUInt32LE(SB.incompatFlags),
  };
}

/** Writes every field into `buf` (a whole block; bytes after the structure are zeroed). */
export function encodeSuperblock(sb: Superblock, buf: Buffer): void {
  buf.fill(0);
  buf.writeUInt32LE(sb.flags, SB.flags);
  sb.uuid.copy(buf, SB.uuid, 0, UUID_SIZE);
  writeU64LE(buf, SB.magic, sb.magic);
  buf.writeUInt32LE(sb.version, SB.version);
  buf.writeUInt32LE(sb.time, SB.time);
  writeU64LE(buf, SB.transId, sb.transId);
  writeU64LE(buf, SB.heldRoot, sb.heldRoot);
  encodeSpaceMapRoot(sb.dataSpaceMap, buf, SB.dataSpaceMapRoot);
  encodeSpaceMapRoot(sb.metadataSpaceMap, buf, SB.metadataSpaceMapRoot);
  writeU64LE(buf, SB.dataMappingRoot, sb.dataMappingRoot);
  writeU64LE(buf, SB.deviceDetailsRoot, sb.deviceDetailsRoot);
  buf.writeUInt32LE(sb.dataBlockSize, SB.dataBlockSize);
  buf.writeUInt32LE(sb.metadataBlockSize, SB.metadataBlockSize);
  writeU64LE(buf, SB.metadataNrBlocks, sb.metadataNrBlocks);
  buf.writeUInt32LE(sb.compatFlags, SB.compatFlags);
  buf.writeUInt32LE(sb.compatRoFlags, SB.compatRoFlags);
  buf.writeUInt32LE(sb.incompatFlags, SB.incompatFlags);
}

/** Checksum and location only: what every superblock copy must satisfy. */
export const superblockValidator = checksummedValidator('superblock', CSUM_XOR.superblock);

/** The kernel's checks on opening: magic, block size, feature flags. */
export function checkSuperblockForOpen(sb: Superblock, location = 0): void {
  const fail = (problem: string): never => {
    throw new MetadataCorruptError('superblock', location, problem);
  };
  if (sb.magic !== SUPERBLOCK_MAGIC) fail(`bad magic ${sb.magic} (expected ${SUPERBLOCK_MAGIC})`);
  if (sb.metadataBlockSize !== METADATA_BLOCK_SECTORS) {
    fail(`metadata block size is ${sb.metadataBlockSize} sectors; only 8 is supported`);
  }
  if (sb.incompatFlags !== 0)
    fail(`unknown incompatible features 0x${sb.incompatFlags.toString(16)}`);
}
