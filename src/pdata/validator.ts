/**
 * Validators, as the kernel's block manager has them: `prepare` stamps a block's location and
 * checksum just before it is written; `check` verifies them just after it is read, plus any
 * structural rule of the block's kind. A validator trusts nothing it reads.
 */

import { BadBlockError, ChecksumError, readU64LE, writeU64LE } from '../util/index.js';
import { blockChecksum, CSUM_OFFSET } from './checksum.js';

/** Every checksummed block stores its own location here. */
export const BLOCKNR_OFFSET = 8;

export interface BlockValidator {
  /** What the block is, for messages: "btree node", "space map bitmap", ... */
  readonly name: string;
  /** Stamps the location and the checksum into `buf`; called just before it is written. */
  prepare(buf: Buffer, location: number): void;
  /** Throws a MetadataCorruptError naming `location` unless `buf` is a valid block. */
  check(buf: Buffer, location: number): void;
}

/** A validator for a block kind with the standard header: checksum, then location. */
export function checksummedValidator(
  name: string,
  xor: number,
  structural?: (buf: Buffer, location: number) => void,
): BlockValidator {
  return {
    name,
    prepare(buf, location) {
      writeU64LE(buf, BLOCKNR_OFFSET, location);
      buf.writeUInt32LE(blockChecksum(buf, xor), CSUM_OFFSET);
    },
    check(buf, location) {
      const stored = buf.readUInt32LE(CSUM_OFFSET);
      const wanted = blockChecksum(buf, xor);
      if (stored !== wanted) {
        throw new ChecksumError(
          name,
          location,
          `bad checksum: stored 0x${stored.toString(16)}, computed 0x${wanted.toString(16)}`,
        );
      }
      const blocknr = buf.readUInt32LE(BLOCKNR_OFFSET + 4) > 0x1fffff ? -1 : readU64LE(buf, 8);
      if (blocknr !== location) {
        throw new BadBlockError(
          name,
          location,
          `the block says it is block ${blocknr < 0 ? 'beyond 2^53' : blocknr}`,
        );
      }
      structural?.(buf, location);
    },
  };
}
