/**
 * The metadata checker: verifies everything thin_check 0.9.0 verifies, and the data space
 * map, the superblock fields and the mapping values it does not. It never stops at the
 * first problem: a damaged subtree is reported and skipped, its siblings are still checked.
 * Only a superblock that cannot be trusted ends the check early.
 *
 * It reads the raw structures itself (never PoolMetadata, which refuses damaged metadata)
 * and writes nothing.
 */

import type { BlockDevice } from '../../block/index.js';
import type { SpaceMapRoot } from '../../pdata/index.js';
import type { Superblock } from '../../thin/index.js';
import { BlockReader } from './block-reader.js';
import { BtreeWalker } from './btree-walker.js';
import { RefCounts } from './counts.js';
import { checkDataMap } from './data-counts.js';
import { checkDevices, type DeviceTotals, type TreeRoots } from './devices.js';
import { type Checker, compareMetadataMap, loadMetadataMap } from './metadata-counts.js';
import { MetadataRefs, USE } from './metadata-refs.js';
import { ProblemLog } from './problems.js';
import type { CheckReport, SpaceSummary } from './report.js';
import { checkSuperblock, readSuperblock } from './superblock.js';

export type { Area, Problem, Severity } from './problems.js';
export { type CheckReport, formatReport, problemLine, type SpaceSummary } from './report.js';

export interface CheckOptions {
  /** Check the superblock only (thin_check --super-block-only). */
  superblockOnly?: boolean;
  /** Check the details tree and the top level only; no bottom-level trees, no space maps. */
  skipMappings?: boolean;
  /**
   * Check the held metadata snapshot instead (thin_check -m): the superblock, the held copy
   * and its trees. The space maps are not compared. A missing snapshot is a fatal problem.
   */
  metadataSnap?: boolean;
}

/** Checks the metadata on `device` and reports every problem found. Reads only. */
export async function checkMetadata(
  device: BlockDevice,
  options: CheckOptions = {},
): Promise<CheckReport> {
  const log = new ProblemLog();
  const reader = new BlockReader(device);
  const sb = await checkSuperblock(reader, log);
  if (sb === undefined) return { problems: log.problems, devices: 0, mappings: 0 };
  const summary = {
    problems: log.problems,
    transactionId: sb.transId,
    metadata: fromRoot(sb.metadataSpaceMap),
    data: fromRoot(sb.dataSpaceMap),
  };
  if (options.superblockOnly === true) return { ...summary, devices: 0, mappings: 0 };
  reader.limit = Math.min(reader.deviceBlocks, sb.metadataSpaceMap.nrBlocks);
  const refs = new MetadataRefs(log, reader.limit);
  const ck: Checker = { reader, log, refs, walker: new BtreeWalker(reader, log, refs) };
  refs.ref(0, USE.superblock, 'superblock');
  const held = await checkHeldCopy(ck, sb);
  if (options.metadataSnap === true)
    return { ...summary, ...(await checkSnapshot(ck, sb, held, options)) };
  const totals = await checkAll(ck, sb, held, options, summary);
  return { ...summary, ...totals };
}

/** Counts and reads the held superblock copy, if any; returns its tree roots. */
async function checkHeldCopy(ck: Checker, sb: Superblock): Promise<TreeRoots | undefined> {
  if (sb.heldRoot === 0) return undefined;
  if (
    ck.refs.ref(sb.heldRoot, USE.heldSuperblock, 'superblock', 'metadata snapshot: ') !== 'first'
  ) {
    return undefined;
  }
  const copy = await readSuperblock(ck.reader, ck.log, sb.heldRoot, 'metadata snapshot: ');
  if (copy === undefined) return undefined;
  return { mappingRoot: copy.dataMappingRoot, detailsRoot: copy.deviceDetailsRoot };
}

/** thin_check -m: the held copy's trees only. */
async function checkSnapshot(
  ck: Checker,
  sb: Superblock,
  held: TreeRoots | undefined,
  options: CheckOptions,
): Promise<DeviceTotals> {
  if (sb.heldRoot === 0) ck.log.fatal('superblock', 'no metadata snapshot is held', 0);
  if (held === undefined) return { devices: 0, mappings: 0 };
  return checkDevices(ck.walker, ck.log, held, deviceOptions(sb, options, new RefCounts(), ''));
}

/** The live trees, the held trees, then both space maps. */
async function checkAll(
  ck: Checker,
  sb: Superblock,
  held: TreeRoots | undefined,
  options: CheckOptions,
  summary: { metadata: SpaceSummary; data: SpaceSummary },
): Promise<DeviceTotals> {
  const dataCounts = new RefCounts();
  const live = { mappingRoot: sb.dataMappingRoot, detailsRoot: sb.deviceDetailsRoot };
  const totals = await checkDevices(
    ck.walker,
    ck.log,
    live,
    deviceOptions(sb, options, dataCounts, ''),
  );
  if (options.skipMappings === true) return totals;
  if (held !== undefined) {
    const label = 'metadata snapshot: ';
    await checkDevices(ck.walker, ck.log, held, deviceOptions(sb, options, dataCounts, label));
  }
  const dataUsed = await checkDataMap(ck, sb.dataSpaceMap, dataCounts);
  if (dataUsed !== undefined) summary.data = used(sb.dataSpaceMap, dataUsed);
  const metadataMap = await loadMetadataMap(ck, sb.metadataSpaceMap);
  if (metadataMap === undefined) return totals;
  const metadataUsed = compareMetadataMap(ck, metadataMap);
  if (metadataMap.bitmaps.size === metadataMap.nrBitmaps) {
    summary.metadata = used(sb.metadataSpaceMap, metadataUsed);
  }
  return totals;
}

function deviceOptions(
  sb: Superblock,
  options: CheckOptions,
  dataCounts: RefCounts,
  label: string,
) {
  return {
    skipMappings: options.skipMappings === true,
    poolTime: sb.time,
    dataBlocks: sb.dataSpaceMap.nrBlocks,
    dataCounts,
    label,
  };
}

function fromRoot(root: SpaceMapRoot): SpaceSummary {
  return { total: root.nrBlocks, free: Math.max(0, root.nrBlocks - root.nrAllocated) };
}

function used(root: SpaceMapRoot, inUse: number): SpaceSummary {
  return { total: root.nrBlocks, free: Math.max(0, root.nrBlocks - inUse) };
}
