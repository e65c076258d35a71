/**
 * The structural checks of one btree node (format §5.1–5.3), in thin_check's order and
 * wording. The checksum and location are checked before, by the block reader.
 */

import {
  INTERNAL_NODE,
  LEAF_NODE,
  METADATA_BLOCK_SIZE,
  maxEntriesFor,
  type Node,
} from '../../pdata/index.js';

const HEADER = 32;
const INTERNAL_VALUE_SIZE = 8;
const KEY_LIMIT_HI = 0x1fffff;

/**
 * The first thing wrong with `node` as a node of a tree whose leaves hold `valueSize`-byte
 * values, or undefined when it is sound. `isRoot`: a root may hold fewer than a third.
 */
export function nodeProblem(node: Node, valueSize: number, isRoot: boolean): string | undefined {
  return headerFieldsProblem(node, valueSize) ?? occupancyProblem(node, isRoot) ?? keyProblem(node);
}

function headerFieldsProblem(node: Node, leafValueSize: number): string | undefined {
  const { flags, maxEntries, valueSize, nrEntries } = node;
  if (flags === (INTERNAL_NODE | LEAF_NODE)) return 'btree node is both internal and leaf';
  if (flags !== INTERNAL_NODE && flags !== LEAF_NODE) return `unknown node type (flags ${flags})`;
  const expected = flags === INTERNAL_NODE ? INTERNAL_VALUE_SIZE : leafValueSize;
  if (valueSize !== expected) {
    return `value size mismatch: expected ${expected}, but got ${valueSize}`;
  }
  if (HEADER + (8 + valueSize) * maxEntries > METADATA_BLOCK_SIZE) {
    return `max entries too large: ${maxEntries}`;
  }
  if (maxEntries % 3 !== 0) return `max entries is not divisible by 3: ${maxEntries}`;
  if (maxEntries !== maxEntriesFor(valueSize)) {
    return `max entries mismatch: expected ${maxEntriesFor(valueSize)}, but got ${maxEntries}`;
  }
  if (nrEntries > maxEntries) return `bad nr_entries: ${nrEntries} > max_entries ${maxEntries}`;
  return undefined;
}

function occupancyProblem(node: Node, isRoot: boolean): string | undefined {
  const { nrEntries, maxEntries } = node;
  if (node.flags === INTERNAL_NODE && nrEntries === 0) return 'internal btree node is empty';
  const least = Math.floor(maxEntries / 3);
  if (!isRoot && nrEntries < least) {
    return `too few entries in btree node: ${nrEntries}, expected at least ${least} (max_entries = ${maxEntries})`;
  }
  return undefined;
}

function keyProblem(node: Node): string | undefined {
  let previous = -1;
  for (let i = 0; i < node.nrEntries; i++) {
    if (node.buf.readUInt32LE(HEADER + 8 * i + 4) > KEY_LIMIT_HI) return `key ${i} is beyond 2^53`;
    const k = node.key(i);
    if (k <= previous) return `keys are out of order, ${k} <= ${previous}`;
    previous = k;
  }
  return undefined;
}

/** Value `i` of `node` as a u64, or undefined when it is beyond 2^53. */
export function valueU64(node: Node, i: number): number | undefined {
  const at = node.valueOffset(i);
  return node.buf.readUInt32LE(at + 4) > KEY_LIMIT_HI ? undefined : node.valueU64(i);
}
