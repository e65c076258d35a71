/**
 * thin: the dm-thin metadata, byte for byte the Linux kernel's format. The superblock, the
 * device details, the two-level mapping tree, snapshots, the metadata snapshot and the
 * transaction rules of dm-thin-metadata.c. Imports pdata, block and util.
 */

export { MAX_METADATA_BLOCKS, METADATA_BLOCK_SIZE } from '../pdata/index.js';
export {
  type BlockTime,
  blockTimeDataBlock,
  blockTimeTime,
  DATA_BLOCK_LIMIT,
  dataBlockOfWords,
  decodeBlockTime,
  encodeBlockTime,
  TIME_LIMIT,
  timeOfWord,
} from './format/block-time.js';
export {
  DETAILS,
  DETAILS_SIZE,
  type DeviceDetails,
  decodeDetails,
  encodeDetails,
} from './format/device-details.js';
export {
  checkSuperblockForOpen,
  decodeSuperblock,
  encodeSuperblock,
  METADATA_BLOCK_SECTORS,
  NEEDS_CHECK_FLAG,
  SB,
  SUPERBLOCK_MAGIC,
  SUPERBLOCK_VERSION,
  type Superblock,
  superblockValidator,
} from './format/superblock.js';
export { type ImportedPool, MetadataImport } from './metadata-import.js';
export {
  breaksTransaction,
  type FormatOptions,
  MAX_DATA_BLOCK_SECTORS,
  type Mapping,
  MIN_DATA_BLOCK_SECTORS,
  type OpenOptions,
  PoolMetadata,
  type SpaceUsage,
  THIN_ID_LIMIT,
  type TreeRoots,
} from './pool-metadata.js';
export { type ThinTrees, thinTrees } from './value-types.js';
