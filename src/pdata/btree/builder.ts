/**
 * Builds a btree bottom-up from entries given in increasing key order, as
 * dm-thin-format.md Appendix B describes: leaves are packed full, and when the last leaf
 * would hold fewer than a third of its slots it shares the entries of the one before it
 * (`t` entries → `floor(t/2)` and `ceil(t/2)`); the internal levels are built the same way
 * over the first keys of the level below, until one root remains. An empty tree is one
 * empty leaf.
 *
 * Every node is a new block of the transaction, written once and never shadowed
 * (TransactionManager.writeNewBlock). One leaf is kept back until the next one fills, so
 * that the last two can still be balanced; the levels above are built at `finish` from the
 * first key and location of each node, 16 bytes per node held in memory.
 */

import { InternalError } from '../../util/index.js';
import type { TransactionManager } from '../transaction-manager.js';
import {
  btreeNodeValidator,
  INTERNAL_NODE,
  INTERNAL_VALUE_SIZE,
  LEAF_NODE,
  maxEntriesFor,
  NODE,
  Node,
} from './node.js';

export class BTreeBuilder {
  private readonly max: number;
  private readonly keys: number[] = [];
  private readonly locs: number[] = [];
  private current: Node;
  /** The last full leaf, not written yet (see the header). */
  private held: Node | undefined;
  private lastKey = -1;
  private count = 0;
  private finished = false;

  constructor(
    private readonly tm: TransactionManager,
    private readonly valueSize: number,
  ) {
    this.max = maxEntriesFor(valueSize);
    this.current = freshNode(LEAF_NODE, valueSize);
  }

  /** Entries added so far. */
  get size(): number {
    return this.count;
  }

  /**
   * Adds an entry; keys must increase strictly. `value` is `valueSize` bytes. Returns a
   * promise only when a full leaf is being written; the caller awaits it before the next
   * call.
   */
  add(key: number, value: Uint8Array): Promise<void> | undefined {
    if (this.finished || key <= this.lastKey) {
      throw new InternalError(`btree builder: key ${key} does not follow ${this.lastKey}`);
    }
    this.lastKey = key;
    this.count++;
    let pending: Promise<void> | undefined;
    if (this.current.nrEntries === this.max) pending = this.rotate();
    const node = this.current;
    const i = node.nrEntries;
    node.nrEntries = i + 1;
    node.setKey(i, key);
    node.buf.set(value, NODE.keys + 8 * this.max + this.valueSize * i);
    return pending;
  }

  /** Writes what is left and every level above; resolves with the root's location. */
  async finish(): Promise<number> {
    if (this.finished) throw new InternalError('btree builder: finished twice');
    this.finished = true;
    await this.closeLevel(this.held, this.current);
    let keys = this.keys;
    let locs = this.locs;
    while (locs.length > 1) {
      const level = await this.buildInternalLevel(keys, locs);
      keys = level.keys;
      locs = level.locs;
    }
    return locs[0] as number;
  }

  /**
   * The current leaf is full: it is held, a fresh one becomes current, and the one held
   * before is written (the caller goes on filling the fresh one meanwhile).
   */
  private async rotate(): Promise<void> {
    const toWrite = this.held;
    this.held = this.current;
    this.current = freshNode(LEAF_NODE, this.valueSize);
    if (toWrite !== undefined) await this.emit(toWrite);
  }

  /** Writes the last two nodes of a level, balancing them when the last is under a third. */
  private async closeLevel(held: Node | undefined, last: Node): Promise<void> {
    if (held !== undefined && last.nrEntries < Math.floor(this.max / 3)) {
      balance(held, last);
    }
    if (held !== undefined) await this.emit(held);
    if (last.nrEntries > 0 || this.locs.length === 0) await this.emit(last);
  }

  private async emit(node: Node): Promise<void> {
    const loc = await this.tm.writeNewBlock(node.buf, btreeNodeValidator);
    this.keys.push(node.nrEntries > 0 ? node.key(0) : 0);
    this.locs.push(loc);
  }

  /** One internal level over `keys`/`locs` (first key and location of each child). */
  private async buildInternalLevel(
    keys: number[],
    locs: number[],
  ): Promise<{ keys: number[]; locs: number[] }> {
    const out = { keys: [] as number[], locs: [] as number[] };
    const sizes = packSizes(locs.length, maxEntriesFor(INTERNAL_VALUE_SIZE));
    const node = new Node(Buffer.alloc(METADATA_NODE_BYTES));
    const value = Buffer.alloc(INTERNAL_VALUE_SIZE);
    let at = 0;
    for (const size of sizes) {
      node.init(INTERNAL_NODE, INTERNAL_VALUE_SIZE);
      for (let i = 0; i < size; i++) {
        value.writeUInt32LE((locs[at + i] as number) % 2 ** 32, 0);
        value.writeUInt32LE(Math.floor((locs[at + i] as number) / 2 ** 32), 4);
        node.insertAt(i, keys[at + i] as number, value);
      }
      out.keys.push(keys[at] as number);
      out.locs.push(await this.tm.writeNewBlock(node.buf, btreeNodeValidator));
      at += size;
    }
    return out;
  }
}

const METADATA_NODE_BYTES = 4096;

function freshNode(flags: number, valueSize: number): Node {
  const node = new Node(Buffer.alloc(METADATA_NODE_BYTES));
  node.init(flags, valueSize);
  return node;
}

/** Moves entries from the end of `left` to the front of `right` so they split evenly. */
function balance(left: Node, right: Node): void {
  const total = left.nrEntries + right.nrEntries;
  const keep = Math.floor(total / 2);
  const move = left.nrEntries - keep;
  if (move <= 0) return;
  right.openFront(move);
  right.copyEntries(0, left, keep, move);
  right.nrEntries = right.nrEntries + move;
  left.clearSlots(keep, left.nrEntries);
  left.nrEntries = keep;
}

/**
 * How many children each node of a level over `n` children holds: full nodes, the last two
 * balanced when the last would hold fewer than a third of `max`.
 */
export function packSizes(n: number, max: number): number[] {
  const sizes: number[] = [];
  for (let left = n; left > 0; left -= max) sizes.push(Math.min(max, left));
  const last = sizes.length - 1;
  if (last >= 1 && (sizes[last] as number) < Math.floor(max / 3)) {
    const total = (sizes[last - 1] as number) + (sizes[last] as number);
    sizes[last - 1] = Math.floor(total / 2);
    sizes[last] = total - Math.floor(total / 2);
  }
  return sizes;
}
