/**
 * What a thin device needs from its pool to do I/O: the data device, the cells, and the
 * metadata steps of provisioning, copy-on-write and discard. ThinPool implements it.
 */

import type { BlockDevice } from '../block/index.js';
import type { Mapping } from '../thin/index.js';
import type { KeyedLock } from '../util/index.js';

export interface IoCounters {
  reads: number;
  writes: number;
  provisions: number;
  copies: number;
  discards: number;
  commits: number;
}

export interface DataPath {
  readonly data: BlockDevice;
  readonly blockSize: number;
  /** One lock per (device, virtual block): provisioning and copies of a block never race. */
  readonly cells: KeyedLock<string>;
  readonly counters: IoCounters;
  /** Zero the rest of a new block around a partial write. */
  readonly zeroBlocks: boolean;
  /** New data blocks are known to read as zeros already. */
  readonly newBlocksAreZero: boolean;
  checkWritable(): void;
  lookup(id: number, vblock: number): Promise<Mapping | undefined>;
  nextMapping(id: number, vblock: number): Promise<(Mapping & { vblock: number }) | undefined>;
  /** Allocates a block, lets `fill` write it, maps it; no commit runs in between. */
  provision(id: number, vblock: number, fill: (block: number) => Promise<void>): Promise<void>;
  unmapRange(id: number, begin: number, end: number): Promise<number>;
  touched(): void;
  commit(): Promise<void>;
}
