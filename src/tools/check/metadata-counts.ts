/**
 * The metadata space map (format §7.1–7.5, §8.1): its index block, bitmaps and ref-count
 * tree are read and counted first; once every root has been walked, each block's count is
 * compared with the number of references found. thin_check's rule: fewer than expected is
 * fatal, more is a leak (non-fatal). `nr_allocated`, `nr_free` and `none_free_before` are
 * hints and are not judged.
 */

import {
  decodeIndexEntry,
  ENTRIES_PER_BITMAP,
  indexEntryOffset,
  MAX_METADATA_BITMAPS,
  type SpaceMapRoot,
} from '../../pdata/index.js';
import { BLOCK_KIND, type BlockReader } from './block-reader.js';
import type { BtreeWalker, TreeSpec } from './btree-walker.js';
import { type MetadataRefs, USE } from './metadata-refs.js';
import type { ProblemLog } from './problems.js';
import {
  compareBitmap,
  type Excess,
  metadataRule,
  type Overflow,
  readRefCountTree,
  reportExcess,
} from './space-map.js';

const AREA = 'metadata space map';
const REF_TREE: TreeSpec = { use: USE.metadataRefTree, area: AREA, valueSize: 4 };

/** The metadata space map as read: bitmaps that could not be read are absent. */
export interface LoadedMetadataMap {
  root: SpaceMapRoot;
  bitmaps: Map<number, { loc: number; block: Buffer }>;
  nrBitmaps: number;
  overflow: Overflow;
}

export interface Checker {
  reader: BlockReader;
  log: ProblemLog;
  refs: MetadataRefs;
  walker: BtreeWalker;
}

/** Reads the map's own blocks, counting a reference to each; undefined if the index is unusable. */
export async function loadMetadataMap(
  ck: Checker,
  root: SpaceMapRoot,
): Promise<LoadedMetadataMap | undefined> {
  const nrBitmaps = Math.ceil(root.nrBlocks / ENTRIES_PER_BITMAP);
  const overflow = await readRefCountTree(
    ck.walker,
    ck.log,
    root.refCountRoot,
    REF_TREE,
    root.nrBlocks,
    'ref-count tree: ',
  );
  if (nrBitmaps > MAX_METADATA_BITMAPS) {
    ck.log.fatal(
      AREA,
      `${nrBitmaps} bitmaps needed, but the index block holds only ${MAX_METADATA_BITMAPS}`,
    );
    return undefined;
  }
  const index = await readIndexBlock(ck, root.bitmapRoot);
  if (index === undefined) return undefined;
  const bitmaps = new Map<number, { loc: number; block: Buffer }>();
  for (let j = 0; j < nrBitmaps; j++) {
    const loc = bitmapLocation(index, j);
    if (loc === undefined) {
      ck.log.fatal(AREA, `the location of bitmap ${j} is beyond 2^53`, root.bitmapRoot);
      continue;
    }
    const block = await readBitmap(ck, loc, USE.metadataBitmap, AREA);
    if (block !== undefined) bitmaps.set(j, { loc, block });
  }
  return { root, bitmaps, nrBitmaps, overflow };
}

function bitmapLocation(index: Buffer, j: number): number | undefined {
  try {
    return decodeIndexEntry(index, indexEntryOffset(j)).blocknr;
  } catch {
    return undefined;
  }
}

async function readIndexBlock(ck: Checker, loc: number): Promise<Buffer | undefined> {
  if (ck.refs.ref(loc, USE.metadataIndex, AREA) !== 'first') return undefined;
  const read = await ck.reader.readChecked(loc, BLOCK_KIND.index);
  if (read.error !== undefined) ck.log.fatal(AREA, read.error, loc);
  return read.buf;
}

/** Counts a reference to the bitmap at `loc` and reads it (undefined when it is unusable). */
export async function readBitmap(
  ck: Checker,
  loc: number,
  use: typeof USE.metadataBitmap | typeof USE.dataBitmap,
  area: typeof AREA | 'data space map',
): Promise<Buffer | undefined> {
  const ref = ck.refs.ref(loc, use, area);
  if (ref === 'invalid') return undefined;
  if (ref === 'again') {
    ck.log.fatal(area, 'the bitmap is listed twice', loc);
    return undefined;
  }
  const read = await ck.reader.readChecked(loc, BLOCK_KIND.bitmap);
  if (read.error !== undefined) ck.log.fatal(area, read.error, loc);
  return read.buf;
}

/** Compares every readable bitmap with the expected counts; returns the blocks in use. */
export function compareMetadataMap(ck: Checker, map: LoadedMetadataMap): number {
  const excess: Excess | undefined = ck.walker.skipped ? { blocks: 0, first: [] } : undefined;
  let used = 0;
  for (const [index, { loc, block }] of map.bitmaps) {
    used += compareBitmap(ck.log, block, {
      area: AREA,
      noun: 'metadata',
      loc,
      index,
      nrBlocks: map.root.nrBlocks,
      expected: ck.refs.expected,
      overflow: map.overflow,
      rule: metadataRule,
      excess,
    });
  }
  if (excess !== undefined) reportExcess(ck.log, AREA, 'metadata', excess);
  return used;
}
