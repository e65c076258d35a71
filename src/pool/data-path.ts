/**
 * What a thin device needs from its pool to do I/O: the data device, the cells, the
 * in-flight set, the per-device gate, and the metadata steps of provisioning, copy-on-write
 * and discard. ThinPool implements it.
 *
 * The rules a thin device follows (the locks are described in docs/ARCHITECTURE.md):
 * - every change of a device (write, write zeroes, discard) runs inside `changing(id)`, so
 *   a snapshot of it, or its removal, waits for the changes in flight and holds new ones;
 * - every read or in-place write of a mapped data block runs inside `inFlight`, from the
 *   lookup to the end of the data I/O, so a block freed meanwhile is neither discarded nor
 *   handed out again before that I/O has finished; a read done wholly at once (`lookupNow`,
 *   then `readNow` of the data device, with no await in between) needs no entry, since no
 *   other work runs until it is over;
 * - the work on one virtual block (lookup, provision, copy, in-place write) holds its cell.
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

/** The cell of virtual block `vblock` of device `id`. */
export function cellKey(id: number, vblock: number): string {
  return `${id}:${vblock}`;
}

export interface DataPath {
  readonly data: BlockDevice;
  readonly blockSize: number;
  /** One lock per (device, virtual block): provisioning, copies and unmaps never race. */
  readonly cells: KeyedLock<string>;
  readonly counters: IoCounters;
  /** Zero the rest of a new block around a partial write. */
  readonly zeroBlocks: boolean;
  /** New data blocks are known to read as zeros already. */
  readonly newBlocksAreZero: boolean;
  /**
   * Whether a client's write of `length` bytes goes to the data device around its cache
   * (`BlockDevice.writeUncached`), as the pool's policy has it.
   */
  writesUncached(length: number): boolean;
  checkWritable(): void;
  /** Runs a change of device `id` through its quiesce gate. */
  changing<T>(id: number, fn: () => Promise<T>): Promise<T>;
  /** Whether a change of device `id` may run at once (its quiesce gate is open). */
  changeableNow(id: number): boolean;
  /** Runs I/O to looked-up data blocks as one entry of the pool's in-flight set. */
  inFlight<T>(fn: () => Promise<T>): Promise<T>;
  /** Enters the in-flight set by hand; `leaveIo` with the result once the I/O is over. */
  enterIo(): number;
  /** Leaves the in-flight set (stable: may be passed around unbound). */
  readonly leaveIo: (entry: number) => void;
  lookup(id: number, vblock: number): Promise<Mapping | undefined>;
  /**
   * `lookup` at once, or null when that would mean waiting (see PoolMetadata.lookupNow).
   * A caller that goes on without awaiting needs no in-flight entry: nothing can free the
   * block before it is done.
   */
  lookupNow(id: number, vblock: number): Mapping | undefined | null;
  nextMapping(id: number, vblock: number): Promise<(Mapping & { vblock: number }) | undefined>;
  /** Allocates a block, lets `fill` write it, maps it; no commit runs in between. */
  provision(id: number, vblock: number, fill: (block: number) => Promise<void>): Promise<void>;
  /**
   * `provision` at once, `fill` writing the block at once too, or false having changed
   * nothing (see ThinPool.provisionAtOnce). The caller holds no cell: with no await, nothing
   * else runs on the block meanwhile; it checks the block's cell is free.
   */
  provisionAtOnce(id: number, vblock: number, fill: (block: number) => boolean): boolean;
  /** Unmaps [begin, end) of device `id`, holding the cells of the blocks it unmaps. */
  unmapRange(id: number, begin: number, end: number): Promise<number>;
  commit(): Promise<void>;
}
