/**
 * The value types of the thin trees: how their values hold references (kernel rules).
 * - top level (device id → bottom tree root): a root is a metadata block reference; dropping
 *   it deletes that tree (shared nodes just lose one reference).
 * - bottom level (virtual block → block_time): each value references a data block.
 * - details: no references.
 */

import {
  type BTreeInfo,
  btree,
  type DiskSpaceMap,
  plainValue,
  type TransactionManager,
  valueAsU64,
} from '../pdata/index.js';
import { decodeBlockTime } from './format/block-time.js';
import { DETAILS_SIZE } from './format/device-details.js';

export interface ThinTrees {
  top: BTreeInfo;
  bottom: BTreeInfo;
  details: BTreeInfo;
}

export function thinTrees(tm: TransactionManager, data: DiskSpaceMap): ThinTrees {
  const bottom: BTreeInfo = {
    tm,
    valueType: {
      size: 8,
      inc: (v) => data.inc(decodeBlockTime(v).dataBlock),
      dec: (v) => data.dec(decodeBlockTime(v).dataBlock),
      equal: (a, b) => decodeBlockTime(a).dataBlock === decodeBlockTime(b).dataBlock,
    },
  };
  const top: BTreeInfo = {
    tm,
    valueType: {
      size: 8,
      inc: (v) => tm.inc(valueAsU64(v)),
      dec: (v) => btree.deleteTree(bottom, valueAsU64(v)),
    },
  };
  return { top, bottom, details: { tm, valueType: plainValue(DETAILS_SIZE) } };
}
