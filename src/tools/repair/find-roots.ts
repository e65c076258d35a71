/**
 * Roots from a scan, for when the superblock is gone: every block of the metadata device is
 * read, and those that are sound btree nodes (checksum, location field, header, keys in
 * order) are kept in summary. Old trees stay on the device after the kernel moved on (freed
 * blocks are not wiped), so there are usually several candidate trees of each kind:
 *
 * - a details tree: a tree whose leaves hold 24-byte values;
 * - a top-level mapping tree: a tree whose leaves hold 8-byte values, device ids below 2^24,
 *   each value the location of a sound tree of 8-byte values (a device's mapping tree).
 *
 * The pair chosen is the newest consistent one: a top-level tree and a details tree that
 * name the same devices with the same mapped block counts (as one commit leaves them),
 * ranked by the highest transaction id in the details, then the highest time (of details and
 * mappings), then the most devices, then the most mappings. Without a consistent pair, the
 * best top-level tree and the best details tree are taken each on its own.
 */

import { INTERNAL_NODE, METADATA_BLOCK_SIZE, Node } from '../../pdata/index.js';
import { DETAILS_SIZE, decodeBlockTime, decodeDetails, THIN_ID_LIMIT } from '../../thin/index.js';
import { BLOCK_KIND, type BlockReader, headerProblem } from '../check/block-reader.js';
import { nodeProblem, valueU64 } from '../check/node-checks.js';

const MAPPING_VALUE_SIZE = 8;
/** Blocks read at once while scanning. */
const SCAN_CHUNK = 1024;

/** What a scan keeps of one sound node. */
interface Scanned {
  internal: boolean;
  /** Leaf value size (8 for internal nodes). */
  valueSize: number;
  entries: number;
  /**
   * Keys and values, kept only where they may matter: internal nodes' children, and the
   * entries of 8-byte leaves that may belong to a top-level tree (ids below 2^24, values
   * that are block locations). Empty otherwise, so that a scan of a large pool stays small.
   */
  keys: number[];
  values: (number | undefined)[];
  /** 8-byte leaves: the highest mapping time, read as block_time. */
  maxTime: number;
  /** Details leaves: per id, [transaction, time, mapped blocks]. */
  details?: { id: number; transaction: number; time: number; mapped: number }[];
}

export interface FoundRoots {
  mappingRoot: number | undefined;
  detailsRoot: number | undefined;
  /** How many sound btree nodes the scan found. */
  nodes: number;
  /** True when the two roots name the same devices with the same counts. */
  consistent: boolean;
}

/** Scans `reader`'s whole device and picks the newest roots. */
export async function findRoots(reader: BlockReader): Promise<FoundRoots> {
  const nodes = await scanNodes(reader);
  const trees = new TreeSummaries(nodes);
  const tops: TopSummary[] = [];
  const details: DetailsSummary[] = [];
  for (const loc of nodes.keys()) {
    const top = trees.top(loc);
    if (top !== undefined) tops.push({ ...top, loc });
    const d = trees.details(loc);
    if (d !== undefined) details.push({ ...d, loc });
  }
  return choose(tops, details, nodes.size);
}

async function scanNodes(reader: BlockReader): Promise<Map<number, Scanned>> {
  const nodes = new Map<number, Scanned>();
  const total = reader.deviceBlocks;
  // One buffer for the whole scan: a summary keeps no view into it.
  const buffer = Buffer.allocUnsafe(SCAN_CHUNK * METADATA_BLOCK_SIZE);
  for (let first = 0; first < total; first += SCAN_CHUNK) {
    const count = Math.min(SCAN_CHUNK, total - first);
    const chunk = buffer.subarray(0, count * METADATA_BLOCK_SIZE);
    await reader.device.read(chunk, first * METADATA_BLOCK_SIZE);
    for (let i = 0; i < count; i++) {
      const buf = chunk.subarray(i * METADATA_BLOCK_SIZE, (i + 1) * METADATA_BLOCK_SIZE);
      const scanned = scanBlock(buf, first + i, total);
      if (scanned !== undefined) nodes.set(first + i, scanned);
    }
  }
  return nodes;
}

function scanBlock(buf: Buffer, loc: number, total: number): Scanned | undefined {
  if (buf.readUInt32LE(0) === 0 && buf.readUInt32LE(4) === 0) return undefined;
  if (headerProblem(buf, loc, BLOCK_KIND.node) !== undefined) return undefined;
  const node = new Node(buf);
  const internal = node.flags === INTERNAL_NODE;
  const valueSize = node.valueSize;
  if (!internal && valueSize !== MAPPING_VALUE_SIZE && valueSize !== DETAILS_SIZE) return undefined;
  if (nodeProblem(node, valueSize, true) !== undefined) return undefined;
  const scanned: Scanned = {
    internal,
    valueSize: internal ? MAPPING_VALUE_SIZE : valueSize,
    entries: node.nrEntries,
    keys: [],
    values: [],
    maxTime: 0,
  };
  if (valueSize === DETAILS_SIZE) scanned.details = detailsOf(node);
  else if (internal || mayBeTopLevel(node, total)) {
    for (let i = 0; i < node.nrEntries; i++) {
      scanned.keys.push(node.key(i));
      scanned.values.push(valueU64(node, i));
    }
  }
  if (!internal && valueSize === MAPPING_VALUE_SIZE) {
    for (let i = 0; i < node.nrEntries; i++) {
      scanned.maxTime = Math.max(scanned.maxTime, decodeBlockTime(node.value(i)).time);
    }
  }
  return scanned;
}

/** Whether an 8-byte leaf may be a top-level leaf: ids below 2^24, values on the device. */
function mayBeTopLevel(leaf: Node, total: number): boolean {
  for (let i = 0; i < leaf.nrEntries; i++) {
    const value = valueU64(leaf, i);
    if (leaf.key(i) >= THIN_ID_LIMIT || value === undefined || value >= total) return false;
  }
  return true;
}

function detailsOf(leaf: Node): Scanned['details'] {
  const details: NonNullable<Scanned['details']> = [];
  for (let i = 0; i < leaf.nrEntries; i++) {
    try {
      const d = decodeDetails(leaf.value(i));
      details.push({
        id: leaf.key(i),
        transaction: d.transactionId,
        time: Math.max(d.creationTime, d.snapshottedTime),
        mapped: d.mappedBlocks,
      });
    } catch {
      // A field beyond 2^53: not a details record the kernel wrote.
    }
  }
  return details;
}

interface TopSummary {
  loc: number;
  /** Device id → mappings in its tree. */
  devices: Map<number, number>;
  maxTime: number;
  mappings: number;
}

interface DetailsSummary {
  loc: number;
  devices: Map<number, number>;
  maxTransaction: number;
  maxTime: number;
}

type Leaf8 = { mappings: number; maxTime: number };

/** Summaries of the trees below scanned nodes, each computed once. */
class TreeSummaries {
  private readonly mappingTrees = new Map<number, Leaf8 | null>();
  private readonly topTrees = new Map<number, Omit<TopSummary, 'loc'> | null>();
  private readonly detailsTrees = new Map<number, Omit<DetailsSummary, 'loc'> | null>();

  constructor(private readonly nodes: Map<number, Scanned>) {}

  /** A tree of 8-byte leaves at `loc`: its entries and highest time, or undefined. */
  mapping(loc: number, depth = 0): Leaf8 | undefined {
    const memo = this.mappingTrees.get(loc);
    if (memo !== undefined) return memo ?? undefined;
    this.mappingTrees.set(loc, null);
    const node = this.nodes.get(loc);
    let result: Leaf8 | undefined;
    if (node === undefined || node.valueSize !== MAPPING_VALUE_SIZE || depth > 32)
      result = undefined;
    else if (!node.internal) result = { mappings: node.entries, maxTime: node.maxTime };
    else result = this.sumChildren(node, (child) => this.mapping(child, depth + 1));
    this.mappingTrees.set(loc, result ?? null);
    return result;
  }

  private sumChildren(node: Scanned, of: (child: number) => Leaf8 | undefined): Leaf8 | undefined {
    const sum = { mappings: 0, maxTime: 0 };
    for (const child of node.values) {
      const sub = child === undefined ? undefined : of(child);
      if (sub === undefined) return undefined;
      sum.mappings += sub.mappings;
      sum.maxTime = Math.max(sum.maxTime, sub.maxTime);
    }
    return sum;
  }

  /** The top-level tree at `loc`, or undefined when it is not one. */
  top(loc: number, depth = 0): Omit<TopSummary, 'loc'> | undefined {
    const memo = this.topTrees.get(loc);
    if (memo !== undefined) return memo ?? undefined;
    this.topTrees.set(loc, null);
    const node = this.nodes.get(loc);
    let result: Omit<TopSummary, 'loc'> | undefined;
    if (
      node === undefined ||
      node.valueSize !== MAPPING_VALUE_SIZE ||
      node.keys.length === 0 ||
      node.keys.length !== node.entries ||
      depth > 32
    ) {
      result = undefined;
    } else if (node.internal) {
      result = this.mergeTops(
        node.values.map((child) => (child === undefined ? undefined : this.top(child, depth + 1))),
      );
    } else {
      result = this.topLeaf(node);
    }
    this.topTrees.set(loc, result ?? null);
    return result;
  }

  private topLeaf(node: Scanned): Omit<TopSummary, 'loc'> | undefined {
    const devices = new Map<number, number>();
    let maxTime = 0;
    let mappings = 0;
    for (let i = 0; i < node.keys.length; i++) {
      const id = node.keys[i] as number;
      const root = node.values[i];
      if (id >= THIN_ID_LIMIT || root === undefined) return undefined;
      const tree = this.mapping(root);
      if (tree === undefined) return undefined;
      devices.set(id, tree.mappings);
      maxTime = Math.max(maxTime, tree.maxTime);
      mappings += tree.mappings;
    }
    return { devices, maxTime, mappings };
  }

  private mergeTops(
    parts: (Omit<TopSummary, 'loc'> | undefined)[],
  ): Omit<TopSummary, 'loc'> | undefined {
    const devices = new Map<number, number>();
    let maxTime = 0;
    let mappings = 0;
    for (const part of parts) {
      if (part === undefined) return undefined;
      for (const [id, n] of part.devices) devices.set(id, n);
      maxTime = Math.max(maxTime, part.maxTime);
      mappings += part.mappings;
    }
    return { devices, maxTime, mappings };
  }

  /** The details tree at `loc`, or undefined when it is not one. */
  details(loc: number, depth = 0): Omit<DetailsSummary, 'loc'> | undefined {
    const memo = this.detailsTrees.get(loc);
    if (memo !== undefined) return memo ?? undefined;
    this.detailsTrees.set(loc, null);
    const node = this.nodes.get(loc);
    let result: Omit<DetailsSummary, 'loc'> | undefined;
    if (node === undefined || depth > 32) result = undefined;
    else if (node.internal) {
      const parts = node.values.map((child) =>
        child === undefined ? undefined : this.details(child, depth + 1),
      );
      result = mergeDetails(parts);
    } else if (node.details !== undefined && node.details.length === node.entries) {
      const devices = new Map<number, number>();
      let maxTransaction = 0;
      let maxTime = 0;
      for (const d of node.details) {
        devices.set(d.id, d.mapped);
        maxTransaction = Math.max(maxTransaction, d.transaction);
        maxTime = Math.max(maxTime, d.time);
      }
      result = { devices, maxTransaction, maxTime };
    }
    this.detailsTrees.set(loc, result ?? null);
    return result;
  }
}

function mergeDetails(
  parts: (Omit<DetailsSummary, 'loc'> | undefined)[],
): Omit<DetailsSummary, 'loc'> | undefined {
  const devices = new Map<number, number>();
  let maxTransaction = 0;
  let maxTime = 0;
  for (const part of parts) {
    if (part === undefined) return undefined;
    for (const [id, n] of part.devices) devices.set(id, n);
    maxTransaction = Math.max(maxTransaction, part.maxTransaction);
    maxTime = Math.max(maxTime, part.maxTime);
  }
  return { devices, maxTransaction, maxTime };
}

function signature(devices: Map<number, number>): string {
  return [...devices]
    .sort((a, b) => a[0] - b[0])
    .map(([id, n]) => `${id}:${n}`)
    .join(',');
}

/** Compares two rank tuples: positive when `a` ranks higher. */
function compareRanks(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return 0;
}

function choose(tops: TopSummary[], details: DetailsSummary[], nodes: number): FoundRoots {
  const bySignature = new Map<string, TopSummary[]>();
  for (const top of tops) {
    const key = signature(top.devices);
    bySignature.set(key, [...(bySignature.get(key) ?? []), top]);
  }
  let best: { rank: number[]; top: TopSummary; details: DetailsSummary } | undefined;
  for (const d of details) {
    for (const top of bySignature.get(signature(d.devices)) ?? []) {
      const rank = [
        d.maxTransaction,
        Math.max(d.maxTime, top.maxTime),
        top.devices.size,
        top.mappings,
        top.loc,
        d.loc,
      ];
      if (best === undefined || compareRanks(rank, best.rank) > 0) best = { rank, top, details: d };
    }
  }
  if (best !== undefined) {
    return { mappingRoot: best.top.loc, detailsRoot: best.details.loc, nodes, consistent: true };
  }
  const top = pick(tops, (t) => [t.maxTime, t.devices.size, t.mappings, t.loc]);
  const d = pick(details, (x) => [x.maxTransaction, x.maxTime, x.devices.size, x.loc]);
  return { mappingRoot: top?.loc, detailsRoot: d?.loc, nodes, consistent: false };
}

function pick<T>(items: T[], rank: (item: T) => number[]): T | undefined {
  let best: { item: T; rank: number[] } | undefined;
  for (const item of items) {
    const r = rank(item);
    if (best === undefined || compareRanks(r, best.rank) > 0) best = { item, rank: r };
  }
  return best?.item;
}
