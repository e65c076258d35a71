/**
 * Checks of the superblock (format §4) and of the held superblock copy (§10). A superblock
 * whose checksum, location field or magic is wrong is not a superblock: nothing it points
 * to can be trusted, so the check stops there.
 */

import { ENTRIES_PER_BITMAP, MAX_METADATA_BITMAPS } from '../../pdata/index.js';
import {
  DATA_BLOCK_LIMIT,
  decodeSuperblock,
  MAX_DATA_BLOCK_SECTORS,
  METADATA_BLOCK_SECTORS,
  MIN_DATA_BLOCK_SECTORS,
  SUPERBLOCK_MAGIC,
  type Superblock,
  TIME_LIMIT,
} from '../../thin/index.js';
import { BLOCK_KIND, type BlockReader } from './block-reader.js';
import type { ProblemLog } from './problems.js';

const AREA = 'superblock';
const KNOWN_VERSIONS = [1, 2];

/** Reads and checks block 0; undefined when it cannot be trusted at all (a fatal problem). */
export async function checkSuperblock(
  reader: BlockReader,
  log: ProblemLog,
): Promise<Superblock | undefined> {
  if (reader.deviceBlocks < 1) {
    log.fatal(AREA, 'the metadata device is smaller than one block');
    return undefined;
  }
  const sb = await readSuperblock(reader, log, 0, 'superblock is corrupt: ');
  if (sb === undefined) return undefined;
  if (sb.magic !== SUPERBLOCK_MAGIC) {
    log.fatal(
      AREA,
      `superblock is corrupt: bad magic ${sb.magic}, expected ${SUPERBLOCK_MAGIC}`,
      0,
    );
    return undefined;
  }
  checkFields(sb, reader, log);
  return sb;
}

/** Reads the superblock (or a copy) at `loc`: checksum, location, 64-bit fields. */
export async function readSuperblock(
  reader: BlockReader,
  log: ProblemLog,
  loc: number,
  what: string,
): Promise<Superblock | undefined> {
  const read = await reader.readChecked(loc, BLOCK_KIND.superblock);
  if (read.error !== undefined) {
    log.fatal(AREA, `${what}${read.error}`, loc);
    return undefined;
  }
  try {
    return decodeSuperblock(read.buf, loc);
  } catch (err) {
    log.fatal(AREA, `${what}${(err as Error).message}`, loc);
    return undefined;
  }
}

function checkFields(sb: Superblock, reader: BlockReader, log: ProblemLog): void {
  const fatal = (message: string) => log.fatal(AREA, message, 0);
  if (sb.metadataBlockSize !== METADATA_BLOCK_SECTORS) {
    fatal(
      `metadata block size is ${sb.metadataBlockSize} sectors, expected ${METADATA_BLOCK_SECTORS}`,
    );
  }
  if (!validDataBlockSize(sb.dataBlockSize)) {
    fatal(
      `data block size ${sb.dataBlockSize} is not a multiple of ${MIN_DATA_BLOCK_SECTORS} sectors between ${MIN_DATA_BLOCK_SECTORS} and ${MAX_DATA_BLOCK_SECTORS}`,
    );
  }
  if (sb.incompatFlags !== 0)
    fatal(`unknown incompatible features 0x${sb.incompatFlags.toString(16)}`);
  if (!KNOWN_VERSIONS.includes(sb.version)) fatal(`unknown metadata version ${sb.version}`);
  if (sb.time >= TIME_LIMIT) fatal(`pool time ${sb.time} is not below 2^24`);
  checkSpaceMapSizes(sb, reader, fatal);
}

function validDataBlockSize(size: number): boolean {
  return (
    size % MIN_DATA_BLOCK_SECTORS === 0 &&
    size >= MIN_DATA_BLOCK_SECTORS &&
    size <= MAX_DATA_BLOCK_SECTORS
  );
}

function checkSpaceMapSizes(sb: Superblock, reader: BlockReader, fatal: (m: string) => void) {
  const metaBlocks = sb.metadataSpaceMap.nrBlocks;
  if (metaBlocks === 0) fatal('the metadata space map covers no blocks');
  if (metaBlocks > reader.deviceBlocks) {
    fatal(
      `the metadata space map covers ${metaBlocks} blocks, but the device holds ${reader.deviceBlocks}`,
    );
  }
  if (metaBlocks > MAX_METADATA_BITMAPS * ENTRIES_PER_BITMAP) {
    fatal(
      `the metadata space map covers ${metaBlocks} blocks, more than ${MAX_METADATA_BITMAPS * ENTRIES_PER_BITMAP}`,
    );
  }
  if (sb.dataSpaceMap.nrBlocks > DATA_BLOCK_LIMIT) {
    fatal(`the data space map covers ${sb.dataSpaceMap.nrBlocks} blocks, more than 2^40`);
  }
}
