/**
 * What a btree's leaf values mean for reference counting (the kernel's dm_btree_value_type).
 * `inc` runs when a shared leaf is copied (each value gains a referrer); `dec` when a value
 * is removed or overwritten by a different one (`equal` says when it is the same).
 * Values that hold no references leave both out.
 */

import type { TransactionManager } from '../transaction-manager.js';

export interface ValueType {
  readonly size: number;
  inc?(value: Buffer): void | Promise<void>;
  dec?(value: Buffer): void | Promise<void>;
  equal?(a: Buffer, b: Buffer): boolean;
}

/** A tree: where its blocks come from and what its values are. */
export interface BTreeInfo {
  readonly tm: TransactionManager;
  readonly valueType: ValueType;
}

export function plainValue(size: number): ValueType {
  return { size };
}

/** u64 values that are locations of metadata blocks counted in the metadata space map. */
export function blockRefValue(tm: TransactionManager): ValueType {
  return {
    size: 8,
    inc: (v) => tm.inc(readLoc(v)),
    dec: (v) => tm.dec(readLoc(v)),
  };
}

function readLoc(v: Buffer): number {
  return v.readUInt32LE(0) + v.readUInt32LE(4) * 2 ** 32;
}
