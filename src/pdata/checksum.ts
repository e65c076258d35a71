/**
 * Block checksums of the dm-thin metadata format: the CRC-32C register over bytes 4..4095
 * (no final inversion), XORed with a constant that differs per kind of block, stored
 * little-endian at bytes 0..3.
 */

import { crc32cRegister } from '../util/index.js';

/** Every metadata block is this many bytes; block `b` starts at byte `b * 4096`. */
export const METADATA_BLOCK_SIZE = 4096;

/** The per-kind constants ("salts") XORed into the checksum. */
export const CSUM_XOR = {
  superblock: 160774,
  btreeNode: 121107,
  bitmap: 240779,
  index: 160478,
} as const;

/** Offset of the checksum in every block, and of the first byte it covers. */
export const CSUM_OFFSET = 0;
export const CSUM_COVERS_FROM = 4;

/** The checksum of `block` (4096 bytes) for a block of the kind salted with `xor`. */
export function blockChecksum(block: Uint8Array, xor: number): number {
  return (crc32cRegister(block, CSUM_COVERS_FROM, METADATA_BLOCK_SIZE) ^ xor) >>> 0;
}
