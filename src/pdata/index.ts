/**
 * pdata: persistent data, as the kernel's persistent-data library. Checksums and
 * validators, a bounded block cache, the transaction manager (shadowing, two-phase commit),
 * the generic btree, and the data and metadata space maps. Knows nothing of thin devices.
 * Imports block and util.
 */

export {
  BlockManager,
  type BlockManagerOptions,
  DEFAULT_MAX_CACHE_BLOCKS,
  MIN_CACHE_BLOCKS,
} from './block-manager.js';
export * as btree from './btree/btree.js';
export { type LeafSlot, valueAsU64 } from './btree/btree.js';
export { BTreeBuilder } from './btree/builder.js';
export {
  btreeNodeValidator,
  checkNodeStructure,
  INTERNAL_NODE,
  INTERNAL_VALUE_SIZE,
  LEAF_NODE,
  maxEntriesFor,
  NODE,
  NODE_HEADER_SIZE,
  Node,
  u32Words,
} from './btree/node.js';
export { type BTreeInfo, blockRefValue, plainValue, type ValueType } from './btree/value-type.js';
export { blockChecksum, CSUM_XOR, METADATA_BLOCK_SIZE } from './checksum.js';
export {
  BITMAP,
  BITMAP_PAYLOAD_BYTES,
  bitmapPayload,
  bitmapValidator,
  ENTRIES_PER_BITMAP,
  getEntry,
  OVERFLOW_ENTRY,
} from './space-map/bitmap.js';
export { DiskSpaceMap } from './space-map/disk-space-map.js';
export {
  INDEX_BLOCK,
  indexBlockValidator,
  indexEntryOffset,
  MAX_METADATA_BITMAPS,
} from './space-map/index-block.js';
export {
  decodeIndexEntry,
  INDEX_ENTRY_SIZE,
  type IndexEntry,
} from './space-map/index-entry.js';
export { MAX_METADATA_BLOCKS, MetadataSpaceMap } from './space-map/metadata-space-map.js';
export {
  decodeSpaceMapRoot,
  encodeSpaceMapRoot,
  SM_ROOT,
  type SpaceMapRoot,
} from './space-map/root.js';
export type { MetadataAllocator } from './space-map/space-map.js';
export { type Shadow, TransactionManager, type WritableBlock } from './transaction-manager.js';
export {
  BLOCKNR_OFFSET,
  type BlockValidator,
  checksummedValidator,
} from './validator.js';
