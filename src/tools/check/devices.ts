/**
 * The details tree and the two-level mapping tree (format §6): every node checked, the key
 * sets of the two trees compared, device ids and mapping values checked, and every mapping
 * of a distinct bottom-level leaf counted once in the expected data counts (§8.2).
 */

import type { Node } from '../../pdata/index.js';
import {
  blockTimeDataBlock,
  blockTimeTime,
  DATA_BLOCK_LIMIT,
  type DeviceDetails,
  decodeDetails,
  THIN_ID_LIMIT,
} from '../../thin/index.js';
import type { BtreeWalker, TreeSpec } from './btree-walker.js';
import type { RefCounts } from './counts.js';
import { USE } from './metadata-refs.js';
import { valueU64 } from './node-checks.js';
import type { ProblemLog } from './problems.js';

const DETAILS_TREE: TreeSpec = { use: USE.detailsTree, area: 'details', valueSize: 24 };
const TOP_TREE: TreeSpec = { use: USE.topTree, area: 'mappings', valueSize: 8 };
const BOTTOM_TREE: TreeSpec = { use: USE.bottomTree, area: 'mappings', valueSize: 8 };
/** At most this many device ids are listed in one message. */
const LIST_LIMIT = 10;

export interface TreeRoots {
  mappingRoot: number;
  detailsRoot: number;
}

export interface DeviceCheckOptions {
  /** Check the top level only, not the devices' bottom-level trees. */
  skipMappings: boolean;
  /** The superblock's pool time: a later mapping time is suspicious. */
  poolTime: number;
  /** Data blocks of the data space map; mappings must stay below. */
  dataBlocks: number;
  /** Expected data counts, incremented per mapping of each distinct leaf. */
  dataCounts: RefCounts;
  /** Message prefix for this set of trees ("metadata snapshot: "), usually empty. */
  label: string;
}

export interface DeviceTotals {
  devices: number;
  mappings: number;
}

/** Checks the details and mapping trees at `roots`; returns what they hold. */
export async function checkDevices(
  walker: BtreeWalker,
  log: ProblemLog,
  roots: TreeRoots,
  options: DeviceCheckOptions,
): Promise<DeviceTotals> {
  const details = await readDetails(walker, log, roots.detailsRoot, options.label);
  const top = await readTopLevel(walker, log, roots.mappingRoot, options.label);
  if (details !== undefined && top !== undefined) compareKeys(log, details, top, options.label);
  if (options.skipMappings) return { devices: top?.size ?? 0, mappings: 0 };
  let mappings = 0;
  for (const [id, root] of top ?? []) {
    mappings += await checkDevice(walker, log, id, root, details?.get(id), options);
  }
  return { devices: top?.size ?? 0, mappings };
}

/** The details tree's records by device id, or undefined when part of it is damaged. */
async function readDetails(walker: BtreeWalker, log: ProblemLog, root: number, label: string) {
  const records = new Map<number, DeviceDetails>();
  const what = `${label}devices tree: `;
  const sum = await walker.walk(root, DETAILS_TREE, what, (leaf, loc) => {
    for (let i = 0; i < leaf.nrEntries; i++) {
      const id = leaf.key(i);
      if (id >= THIN_ID_LIMIT)
        log.fatal('details', `${what}device id ${id} is not below 2^24`, loc);
      try {
        records.set(id, decodeDetails(leaf.value(i)));
      } catch {
        log.fatal('details', `${what}the details of device ${id} hold a value beyond 2^53`, loc);
      }
    }
  });
  return sum?.complete === true ? records : undefined;
}

/** Device id → bottom-level root, or undefined when part of the top level is damaged. */
async function readTopLevel(walker: BtreeWalker, log: ProblemLog, root: number, label: string) {
  const roots = new Map<number, number>();
  const what = `${label}mapping tree: `;
  const sum = await walker.walk(root, TOP_TREE, what, (leaf, loc) => {
    for (let i = 0; i < leaf.nrEntries; i++) {
      const id = leaf.key(i);
      const subtree = valueU64(leaf, i);
      if (id >= THIN_ID_LIMIT)
        log.fatal('mappings', `${what}device id ${id} is not below 2^24`, loc);
      if (subtree === undefined) {
        log.fatal('mappings', `${what}the tree of device ${id} lies beyond 2^53`, loc);
      } else roots.set(id, subtree);
    }
  });
  return sum?.complete === true ? roots : undefined;
}

function compareKeys(
  log: ProblemLog,
  details: Map<number, DeviceDetails>,
  top: Map<number, number>,
  label: string,
): void {
  const noTree = [...details.keys()].filter((id) => !top.has(id));
  const noDetails = [...top.keys()].filter((id) => !details.has(id));
  if (noTree.length > 0) {
    log.fatal(
      'details',
      `${label}missing devices: ${list(noTree)} have details but no mapping tree`,
    );
  }
  if (noDetails.length > 0) {
    log.fatal(
      'details',
      `${label}missing devices: ${list(noDetails)} have a mapping tree but no details`,
    );
  }
}

function list(ids: number[]): string {
  const shown = ids.slice(0, LIST_LIMIT).join(', ');
  return ids.length > LIST_LIMIT ? `${shown} and ${ids.length - LIST_LIMIT} more` : shown;
}

/** Walks one device's bottom-level tree; returns the mappings it holds. */
async function checkDevice(
  walker: BtreeWalker,
  log: ProblemLog,
  id: number,
  root: number,
  details: DeviceDetails | undefined,
  options: DeviceCheckOptions,
): Promise<number> {
  const what = `${options.label}thin device ${id}: `;
  const sum = await walker.walk(root, BOTTOM_TREE, what, (leaf, loc, reachedBy) =>
    checkMappings(log, leaf, loc, reachedBy, options),
  );
  if (sum === undefined) return 0;
  if (sum.complete && details !== undefined && details.mappedBlocks !== sum.entries) {
    log.nonFatal(
      'details',
      `${what}mapped_blocks is ${details.mappedBlocks}, but the device maps ${sum.entries} blocks`,
    );
  }
  return sum.entries;
}

/** Checks and counts the mappings of one bottom-level leaf (first visit only). */
function checkMappings(
  log: ProblemLog,
  leaf: Node,
  loc: number,
  what: string,
  options: DeviceCheckOptions,
): void {
  const limit = Math.min(options.dataBlocks, DATA_BLOCK_LIMIT);
  const buf = leaf.buf;
  const values = leaf.valueOffset(0);
  for (let i = 0, n = leaf.nrEntries; i < n; i++) {
    const dataBlock = blockTimeDataBlock(buf, values + 8 * i);
    const time = blockTimeTime(buf, values + 8 * i);
    if (dataBlock >= limit) {
      const vblock = leaf.key(i);
      log.fatal(
        'mappings',
        `${what}block ${vblock} maps to data block ${dataBlock}, beyond the end of the data device (${options.dataBlocks} blocks)`,
        loc,
      );
      continue;
    }
    if (time > options.poolTime) {
      const vblock = leaf.key(i);
      log.nonFatal(
        'mappings',
        `${what}block ${vblock} has time ${time}, later than the pool's time ${options.poolTime}`,
        loc,
      );
    }
    options.dataCounts.inc(dataBlock);
  }
}
