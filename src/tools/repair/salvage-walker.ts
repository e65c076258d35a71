/**
 * A lenient btree walk for repair: every entry of every leaf that can be read is handed to
 * the caller, and every subtree that cannot be read comes back as a lost key range, with
 * the block that held it and what is wrong with that block.
 *
 * What counts as damage: a block whose checksum or location field is wrong, and a node
 * whose header or keys break the format (flags, value size, max entries, nr_entries, keys
 * out of order, a child beyond 2^53), a cycle, or a tree deeper than any real one. Keys
 * outside the range the parent gives are not: the entries are sound and are kept; the
 * rebuilt tree is well formed again. A non-root leaf with fewer entries than a third is read
 * as it is, and it is damaged too: its entry count was cut, so the keys after its last entry,
 * up to its parent's next key, are reported lost.
 */

import { Node } from '../../pdata/index.js';
import { BLOCK_KIND, type BlockReader } from '../check/block-reader.js';
import { nodeProblem, valueU64 } from '../check/node-checks.js';

/** Keys [begin, end) that sat in a damaged subtree; `end` undefined for no upper bound. */
export interface LostRange {
  begin: number;
  end: number | undefined;
  /** The damaged block; undefined when no block is to blame (a value out of range). */
  block: number | undefined;
  problem: string;
}

/** Called once per readable leaf reached (a shared leaf once per path to it). */
export type LeafEntries = (leaf: Node, loc: number) => void;

/** No real tree of 4 KiB nodes over 64-bit keys is deeper than this. */
const MAX_DEPTH = 32;

interface Bounds {
  lo: number;
  hi: number | undefined;
}

/** One walk: the tree's leaf value size, the visitor, the nodes above, the ranges lost. */
interface Walk {
  valueSize: number;
  onLeaf: LeafEntries;
  path: Set<number>;
  lost: LostRange[];
}

export class SalvageWalker {
  /** Every damaged block met so far, with what is wrong with it. */
  readonly damaged = new Map<number, string>();
  /** Blocks that cannot be read as nodes at all. */
  private readonly unreadable = new Map<number, string>();

  constructor(private readonly reader: BlockReader) {}

  /**
   * Walks the tree at `root` whose leaves hold `valueSize`-byte values, calling `onLeaf`
   * for each readable leaf in key order. Returns the key ranges lost to damage.
   */
  async walk(root: number, valueSize: number, onLeaf: LeafEntries): Promise<LostRange[]> {
    const walk: Walk = { valueSize, onLeaf, path: new Set(), lost: [] };
    await this.reach(walk, root, { lo: 0, hi: undefined });
    return walk.lost;
  }

  private async reach(walk: Walk, loc: number, bounds: Bounds): Promise<void> {
    const node = await this.readNode(loc, walk.valueSize, walk.path);
    if (typeof node === 'string') {
      walk.lost.push({ begin: bounds.lo, end: bounds.hi, block: loc, problem: node });
      return;
    }
    if (node.isLeaf) {
      walk.onLeaf(node, loc);
      if (walk.path.size > 0) this.checkOccupancy(node, loc, bounds, walk.lost);
      return;
    }
    walk.path.add(loc);
    const n = node.nrEntries;
    for (let i = 0; i < n; i++) {
      const child = valueU64(node, i);
      const lo = i === 0 ? bounds.lo : node.key(i);
      const hi = i + 1 < n ? node.key(i + 1) : bounds.hi;
      if (child === undefined) {
        const problem = `child ${i} lies beyond 2^53`;
        this.damaged.set(loc, problem);
        walk.lost.push({ begin: lo, end: hi, block: loc, problem });
        continue;
      }
      await this.reach(walk, child, { lo, hi });
    }
    walk.path.delete(loc);
  }

  /** A leaf cut short: the keys after its last entry are reported lost. */
  private checkOccupancy(leaf: Node, loc: number, bounds: Bounds, lost: LostRange[]): void {
    const n = leaf.nrEntries;
    const least = Math.floor(leaf.maxEntries / 3);
    if (n >= least) return;
    const problem = `too few entries in btree node: ${n}, expected at least ${least}`;
    this.damaged.set(loc, problem);
    const begin = n > 0 ? leaf.key(n - 1) + 1 : bounds.lo;
    if (bounds.hi !== undefined && begin >= bounds.hi) return;
    lost.push({
      begin,
      end: bounds.hi,
      block: loc,
      problem: `${problem}; the entries after it are lost`,
    });
  }

  /** The node at `loc`, or what is wrong with it (recorded in `damaged`). */
  private async readNode(
    loc: number,
    valueSize: number,
    path: Set<number>,
  ): Promise<Node | string> {
    const known = this.unreadable.get(loc);
    if (known !== undefined) return known;
    if (path.has(loc)) return 'cycle: the btree node is its own ancestor';
    if (path.size >= MAX_DEPTH) return `the tree is deeper than ${MAX_DEPTH} levels`;
    const block = await this.reader.readChecked(loc, BLOCK_KIND.node);
    const problem = block.error ?? nodeProblem(new Node(block.buf as Buffer), valueSize, true);
    if (problem !== undefined) {
      this.unreadable.set(loc, problem);
      this.damaged.set(loc, problem);
      return problem;
    }
    return new Node(block.buf as Buffer);
  }
}
