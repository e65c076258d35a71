/**
 * The data space map (format §7.4, §8.2), which thin_check 0.9.0 does not check: its index
 * tree must list bitmaps 0 .. n-1, each bitmap must be sound, and every data block's count
 * must equal the number of distinct bottom-level leaves that map it. A count of 1 for an
 * unused block is a leak (non-fatal); every other mismatch is fatal.
 */

import { decodeIndexEntry, ENTRIES_PER_BITMAP, type SpaceMapRoot } from '../../pdata/index.js';
import type { TreeSpec } from './btree-walker.js';
import type { RefCounts } from './counts.js';
import { type Checker, readBitmap } from './metadata-counts.js';
import { USE } from './metadata-refs.js';
import {
  type BitmapComparison,
  compareBitmap,
  dataRule,
  type Excess,
  readRefCountTree,
  reportExcess,
} from './space-map.js';

const AREA = 'data space map';
const INDEX_TREE: TreeSpec = { use: USE.dataIndexTree, area: AREA, valueSize: 16 };
const REF_TREE: TreeSpec = { use: USE.dataRefTree, area: AREA, valueSize: 4 };

/**
 * Checks the data space map at `root` against `expected`; returns the data blocks in use,
 * or undefined when the map could not be read whole.
 */
export async function checkDataMap(
  ck: Checker,
  root: SpaceMapRoot,
  expected: RefCounts,
): Promise<number | undefined> {
  const { locs, complete } = await readIndexTree(ck, root);
  const overflow = await readRefCountTree(
    ck.walker,
    ck.log,
    root.refCountRoot,
    REF_TREE,
    root.nrBlocks,
    'data ref-count tree: ',
  );
  const excess: Excess | undefined = ck.walker.skipped ? { blocks: 0, first: [] } : undefined;
  let used = 0;
  let whole = complete;
  for (const [index, loc] of locs) {
    const block = await readBitmap(ck, loc, USE.dataBitmap, AREA);
    if (block === undefined) {
      whole = false;
      continue;
    }
    const c: BitmapComparison = {
      area: AREA,
      noun: 'data',
      loc,
      index,
      nrBlocks: root.nrBlocks,
      expected,
      overflow,
      rule: dataRule,
      excess,
    };
    used += compareBitmap(ck.log, block, c);
  }
  if (excess !== undefined) reportExcess(ck.log, AREA, 'data', excess);
  return whole ? used : undefined;
}

/** Bitmap number → bitmap location, from the sound part of the index tree, in order. */
async function readIndexTree(
  ck: Checker,
  root: SpaceMapRoot,
): Promise<{ locs: Map<number, number>; complete: boolean }> {
  const nrBitmaps = Math.ceil(root.nrBlocks / ENTRIES_PER_BITMAP);
  const locs = new Map<number, number>();
  const what = 'index tree: ';
  const sum = await ck.walker.walk(root.bitmapRoot, INDEX_TREE, what, (leaf, loc) => {
    for (let i = 0; i < leaf.nrEntries; i++) {
      const j = leaf.key(i);
      if (j >= nrBitmaps) {
        ck.log.fatal(AREA, `${what}lists bitmap ${j}, but the map has only ${nrBitmaps}`, loc);
        continue;
      }
      try {
        locs.set(j, decodeIndexEntry(leaf.value(i)).blocknr);
      } catch {
        ck.log.fatal(AREA, `${what}the location of bitmap ${j} is beyond 2^53`, loc);
      }
    }
  });
  const sorted = new Map([...locs].sort((a, b) => a[0] - b[0]));
  if (sum?.complete !== true) return { locs: sorted, complete: false };
  const missing: number[] = [];
  for (let j = 0; j < nrBitmaps && missing.length < 10; j++) if (!locs.has(j)) missing.push(j);
  if (missing.length > 0)
    ck.log.fatal(AREA, `${what}bitmaps ${missing.join(', ')} are missing`, root.bitmapRoot);
  return { locs: sorted, complete: missing.length === 0 };
}
