/**
 * pool: the data path of a thin pool. Thin devices on a data device, allocate-on-demand,
 * copy-on-write, commits on flush and on a timer, the no-space policy and the pool's mode.
 * Imports thin, block and util.
 */

export type { DataPath, IoCounters } from './data-path.js';
export { type BlockPiece, splitIntoBlocks, wholeBlocks } from './io-plan.js';
export { type Extent, ThinDevice, type WriteOptions, type ZeroOptions } from './thin-device.js';
export {
  type CreateOptions,
  type NoSpacePolicy,
  type PoolEvents,
  type PoolMode,
  type PoolStatus,
  ThinPool,
  type ThinPoolOptions,
} from './thin-pool.js';
