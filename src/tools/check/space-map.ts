/**
 * What both space maps share (format §7): the ref-count tree of counts ≥ 3, and the
 * comparison of each bitmap's entries with the expected counts.
 */

import { bitmapPayload, ENTRIES_PER_BITMAP, getEntry, OVERFLOW_ENTRY } from '../../pdata/index.js';
import type { BtreeWalker, TreeSpec } from './btree-walker.js';
import type { RefCounts } from './counts.js';
import type { Area, ProblemLog } from './problems.js';

/** Exact counts of the blocks whose bitmap entry is 3, or undefined when the tree is damaged. */
export type Overflow = Map<number, number> | undefined;

/** Reads the ref-count tree at `root`, checking that it holds only counts ≥ 3 of blocks < nrBlocks. */
export async function readRefCountTree(
  walker: BtreeWalker,
  log: ProblemLog,
  root: number,
  spec: TreeSpec,
  nrBlocks: number,
  what: string,
): Promise<Overflow> {
  const counts = new Map<number, number>();
  const sum = await walker.walk(root, spec, what, (leaf, loc) => {
    for (let i = 0; i < leaf.nrEntries; i++) {
      const b = leaf.key(i);
      const count = leaf.buf.readUInt32LE(leaf.valueOffset(i));
      if (b >= nrBlocks)
        log.fatal(
          spec.area,
          `${what}holds a count for block ${b}, beyond the ${nrBlocks} blocks of the map`,
          loc,
        );
      else if (count < OVERFLOW_ENTRY)
        log.fatal(
          spec.area,
          `${what}holds count ${count} for block ${b}; counts below 3 belong in the bitmap`,
          loc,
        );
      counts.set(b, count);
    }
  });
  return sum?.complete === true ? counts : undefined;
}

/** How a mismatch between the space map and the expected count is judged. */
export type MismatchRule = (actual: number, expected: number) => 'fatal' | 'non-fatal';

/** Metadata (thin_check's rule): fewer references than counted loses data; more leaks. */
export const metadataRule: MismatchRule = (actual, expected) =>
  actual < expected ? 'fatal' : 'non-fatal';

/** Data (thin_check 1.x's rule): only a count of 1 for an unused block is a mere leak. */
export const dataRule: MismatchRule = (actual, expected) =>
  actual === 1 && expected === 0 ? 'non-fatal' : 'fatal';

export interface BitmapComparison {
  area: Area;
  /** "metadata" or "data": names the blocks in messages. */
  noun: string;
  /** The bitmap block and the index of the bitmap in its map. */
  loc: number;
  index: number;
  nrBlocks: number;
  expected: RefCounts;
  overflow: Overflow;
  rule: MismatchRule;
  /**
   * Set when damaged subtrees were skipped: expected counts are then lower bounds, and
   * counts above them are gathered here instead of being reported one by one.
   */
  excess?: Excess;
}

/** Blocks whose count is above a lower-bound expectation. */
export interface Excess {
  blocks: number;
  first: number[];
}

const EXCESS_SHOWN = 8;

/** One non-fatal line for the counts a skipped subtree probably explains. */
export function reportExcess(log: ProblemLog, area: Area, noun: string, excess: Excess): void {
  if (excess.blocks === 0) return;
  const more = excess.blocks > excess.first.length ? ', ...' : '';
  log.nonFatal(
    area,
    `${excess.blocks} ${noun} blocks (${excess.first.join(', ')}${more}) have higher counts than ` +
      'the readable metadata explains; the damaged subtrees reported above may reference them',
  );
}

/**
 * Compares every entry of bitmap `index` with the expected counts (entries beyond the map's
 * end must be 0) and returns how many of its blocks are in use.
 */
export function compareBitmap(log: ProblemLog, block: Buffer, c: BitmapComparison): number {
  const payload = bitmapPayload(block);
  const base = c.index * ENTRIES_PER_BITMAP;
  let used = 0;
  for (let e = 0; e < ENTRIES_PER_BITMAP; e++) {
    const b = base + e;
    const entry = getEntry(payload, e);
    const expected = b < c.nrBlocks ? c.expected.get(b) : 0;
    if (entry === 0 && expected === 0) continue;
    if (entry !== 0) used++;
    const actual = actualCount(log, c, b, entry);
    if (actual !== undefined && actual !== expected) report(log, c, b, actual, expected);
  }
  return used;
}

/** The count the map holds for `b`; undefined when it is 3 or more and the tree is damaged. */
function actualCount(
  log: ProblemLog,
  c: BitmapComparison,
  b: number,
  entry: number,
): number | undefined {
  if (c.overflow === undefined) return entry === OVERFLOW_ENTRY ? undefined : entry;
  const exact = c.overflow.get(b);
  if (entry === OVERFLOW_ENTRY) {
    if (exact !== undefined) return exact;
    log.fatal(c.area, `${c.noun} block ${b} has bitmap entry 3 but no ref-count tree entry`, c.loc);
    return entry;
  }
  if (exact !== undefined) {
    log.fatal(
      c.area,
      `${c.noun} block ${b} has a ref-count tree entry ${exact} but bitmap entry ${entry}`,
      c.loc,
    );
  }
  return entry;
}

function report(log: ProblemLog, c: BitmapComparison, b: number, actual: number, expected: number) {
  if (c.excess !== undefined && actual > expected) {
    c.excess.blocks++;
    if (c.excess.first.length < EXCESS_SHOWN) c.excess.first.push(b);
    return;
  }
  const beyond = b >= c.nrBlocks ? ` (beyond the end of the map, ${c.nrBlocks} blocks)` : '';
  const inBitmap = c.noun === 'metadata' ? '' : `, in the bitmap at metadata block ${c.loc}`;
  const message =
    `${c.noun} reference counts differ for ${c.noun} block ${b}${beyond}: ` +
    `expected ${expected}, but got ${actual}${inBitmap}`;
  const block = c.noun === 'metadata' && b < c.nrBlocks ? b : c.loc;
  if (c.rule(actual, expected) === 'fatal') log.fatal(c.area, message, block);
  else log.nonFatal(c.area, message, block);
}
