/**
 * Walks btrees from their roots, checking every node (format §5.3) and counting every
 * reference to a node in the expected metadata counts. A node reached a second time (a
 * shared subtree) is counted again but not read again: its summary from the first visit is
 * checked against the new parent's key range instead. A damaged node is reported and its
 * subtree skipped; its siblings are still walked.
 */

import { Node } from '../../pdata/index.js';
import { BLOCK_KIND, type BlockReader } from './block-reader.js';
import type { MetadataRefs, Use } from './metadata-refs.js';
import { nodeProblem, valueU64 } from './node-checks.js';
import type { Area, ProblemLog } from './problems.js';

/** One kind of tree. */
export interface TreeSpec {
  use: Use;
  area: Area;
  /** Size of a leaf value in bytes. */
  valueSize: number;
}

/** What a walk learned of a subtree. */
export interface Subtree {
  /** 0 for a leaf. */
  height: number;
  /** Lowest and highest key, undefined for an empty leaf. */
  firstKey: number | undefined;
  lastKey: number | undefined;
  /** Leaf entries below, counting a shared node once per reference path from this root. */
  entries: number;
  /** False when some node below was damaged and skipped. */
  complete: boolean;
}

/**
 * Called once per distinct sound leaf, the first time it is reached. `what` is the message
 * prefix of the walk that reached it ("thin device 3: ").
 */
export type LeafVisitor = (leaf: Node, loc: number, what: string) => void | Promise<void>;

/** Keys allowed in a subtree: [lo, hi), hi undefined for no upper bound. */
interface Bounds {
  lo: number;
  hi: number | undefined;
}

const OPEN: Bounds = { lo: 0, hi: undefined };
const BUSY = 'busy';
const DAMAGED = 'damaged';
type Memo = Subtree | typeof BUSY | typeof DAMAGED;

export class BtreeWalker {
  private readonly memo = new Map<number, Memo>();
  /**
   * True once some subtree was skipped as damaged: the expected counts are then only lower
   * bounds, since what the skipped nodes reference was never counted.
   */
  skipped = false;

  constructor(
    private readonly reader: BlockReader,
    private readonly log: ProblemLog,
    private readonly refs: MetadataRefs,
  ) {}

  /**
   * Counts one reference to the tree at `root` and checks it (once). Returns its summary,
   * or undefined when the root itself could not be used. `what` prefixes every message.
   */
  walk(
    root: number,
    spec: TreeSpec,
    what: string,
    onLeaf: LeafVisitor,
  ): Promise<Subtree | undefined> {
    return this.reach(root, spec, what, onLeaf, true, OPEN);
  }

  private async reach(
    loc: number,
    spec: TreeSpec,
    what: string,
    onLeaf: LeafVisitor,
    isRoot: boolean,
    bounds: Bounds,
  ): Promise<Subtree | undefined> {
    const ref = this.refs.ref(loc, spec.use, spec.area, what);
    if (ref === 'invalid') return this.skip();
    const memo = this.memo.get(loc);
    if (ref === 'again' && memo !== undefined) return this.revisit(loc, memo, spec, what, bounds);
    this.memo.set(loc, BUSY);
    const result = await this.visit(loc, spec, what, onLeaf, isRoot, bounds);
    this.memo.set(loc, result ?? DAMAGED);
    return result ?? this.skip();
  }

  private skip(): undefined {
    this.skipped = true;
    return undefined;
  }

  private revisit(loc: number, memo: Memo, spec: TreeSpec, what: string, bounds: Bounds) {
    if (memo === BUSY) {
      this.log.fatal(spec.area, `${what}cycle: the btree node is its own ancestor`, loc);
      return this.skip();
    }
    if (memo === DAMAGED) {
      this.log.fatal(spec.area, `${what}shared btree node is damaged (reported above)`, loc);
      return this.skip();
    }
    return this.boundsProblem(loc, memo.firstKey, memo.lastKey, bounds, spec, what)
      ? this.skip()
      : memo;
  }

  private async visit(
    loc: number,
    spec: TreeSpec,
    what: string,
    onLeaf: LeafVisitor,
    isRoot: boolean,
    bounds: Bounds,
  ): Promise<Subtree | undefined> {
    const block = await this.reader.readChecked(loc, BLOCK_KIND.node);
    if (block.error !== undefined) return this.damaged(loc, spec, what, block.error);
    const node = new Node(block.buf);
    const problem = nodeProblem(node, spec.valueSize, isRoot);
    if (problem !== undefined) return this.damaged(loc, spec, what, problem);
    const n = node.nrEntries;
    const first = n > 0 ? node.key(0) : undefined;
    const last = n > 0 ? node.key(n - 1) : undefined;
    if (this.boundsProblem(loc, first, last, bounds, spec, what)) return undefined;
    if (node.isLeaf) {
      await onLeaf(node, loc, what);
      return { height: 0, firstKey: first, lastKey: last, entries: n, complete: true };
    }
    return this.visitChildren(node, loc, spec, what, onLeaf, bounds);
  }

  private async visitChildren(
    node: Node,
    loc: number,
    spec: TreeSpec,
    what: string,
    onLeaf: LeafVisitor,
    bounds: Bounds,
  ): Promise<Subtree> {
    const n = node.nrEntries;
    const sum: Subtree = {
      height: 1,
      firstKey: node.key(0),
      lastKey: node.key(n - 1),
      entries: 0,
      complete: true,
    };
    let childHeight: number | undefined;
    const children: number[] = [];
    for (let i = 0; i < n; i++) {
      const child = valueU64(node, i);
      if (child !== undefined && !this.memo.has(child)) children.push(child);
    }
    await this.reader.prefetch(children);
    for (let i = 0; i < n; i++) {
      const child = valueU64(node, i);
      const hi = i + 1 < n ? node.key(i + 1) : bounds.hi;
      const sub =
        child === undefined
          ? this.damaged(loc, spec, what, `child ${i} lies beyond 2^53`)
          : await this.reach(child, spec, what, onLeaf, false, { lo: node.key(i), hi });
      if (sub === undefined) {
        sum.complete = false;
        continue;
      }
      childHeight ??= sub.height;
      if (sub.height !== childHeight) {
        this.log.fatal(
          spec.area,
          `${what}leaves below this btree node are at different depths`,
          loc,
        );
        sum.complete = false;
      }
      if (i === n - 1) sum.lastKey = sub.lastKey ?? sum.lastKey;
      sum.entries += sub.entries;
      sum.complete &&= sub.complete;
    }
    this.reader.forget(children);
    sum.height = (childHeight ?? 0) + 1;
    return sum;
  }

  /** Reports keys outside the range the parent gives; true when there was a problem. */
  private boundsProblem(
    loc: number,
    first: number | undefined,
    last: number | undefined,
    bounds: Bounds,
    spec: TreeSpec,
    what: string,
  ): boolean {
    if (first !== undefined && first < bounds.lo) {
      this.log.fatal(
        spec.area,
        `${what}parent key mismatch: parent was ${bounds.lo}, but lowest in node was ${first}`,
        loc,
      );
      return true;
    }
    if (last !== undefined && bounds.hi !== undefined && last >= bounds.hi) {
      this.log.fatal(
        spec.area,
        `${what}key ${last} is not below the parent's next key ${bounds.hi}`,
        loc,
      );
      return true;
    }
    return false;
  }

  private damaged(loc: number, spec: TreeSpec, what: string, problem: string): undefined {
    this.log.fatal(spec.area, `${what}${problem}`, loc);
    return undefined;
  }
}
