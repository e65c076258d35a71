/**
 * Btree operations over the node format of `node.ts`, with the kernel's rules: every change
 * shadows the path from the root (so committed trees are never written), a shared node's
 * copy increments what it references, inserts split full nodes on the way down and removals
 * rebalance children on the way down, so no change ever has to travel back up.
 *
 * Every function takes the tree's root and returns the new root where the tree can change;
 * callers store it. All of them must run inside one metadata operation (see
 * TransactionManager.endOperation).
 */

import { MetadataCorruptError, readU64LE, writeU64LE } from '../../util/index.js';
import {
  btreeNodeValidator,
  INTERNAL_NODE,
  INTERNAL_VALUE_SIZE,
  LEAF_NODE,
  maxEntriesFor,
  Node,
} from './node.js';
import type { BTreeInfo } from './value-type.js';

/** Deeper than any real tree (252-way fan-out); deeper means a cycle in damaged metadata. */
const MAX_DEPTH = 32;

/** Creates an empty tree (one empty leaf) and returns its root. */
export async function emptyTree(info: BTreeInfo): Promise<number> {
  const { loc, buf } = await info.tm.newBlock(btreeNodeValidator);
  new Node(buf).init(LEAF_NODE, info.valueType.size);
  return loc;
}

/** Reads a node of this tree and checks that its value size is the tree's. */
export async function readNode(info: BTreeInfo, loc: number): Promise<Node> {
  const node = new Node(await info.tm.read(loc, btreeNodeValidator));
  checkNodeKind(info, node, loc);
  return node;
}

function checkNodeKind(info: BTreeInfo, node: Node, loc: number): void {
  const want = node.isLeaf ? info.valueType.size : INTERNAL_VALUE_SIZE;
  if (node.valueSize !== want || node.maxEntries !== maxEntriesFor(want)) {
    throw new MetadataCorruptError(
      'btree node',
      loc,
      `value size mismatch: expected ${want}-byte values (max ${maxEntriesFor(want)} entries), ` +
        `found ${node.valueSize}-byte values (max ${node.maxEntries})`,
    );
  }
  if (!node.isLeaf && node.nrEntries === 0) {
    throw new MetadataCorruptError('btree node', loc, 'an internal node has no entries');
  }
}

/** The value stored under `key` (a copy), or undefined. */
export async function lookup(
  info: BTreeInfo,
  root: number,
  key: number,
): Promise<Buffer | undefined> {
  let loc = root;
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    const node = await readNode(info, loc);
    const i = node.lowerBound(key);
    if (node.isLeaf) {
      return i >= 0 && node.key(i) === key ? Buffer.from(node.value(i)) : undefined;
    }
    if (i < 0) return undefined;
    loc = node.valueU64(i);
  }
  throw tooDeep(loc);
}

/**
 * `lookup` at once, from cached nodes only: the value (a view into the cached node, valid
 * until the next await), undefined when `key` is absent, or null when a node on the way is
 * not cached or does not check (then `lookup` it). Only between operations: a tree part-way
 * through a change is not whole.
 */
export function lookupCached(
  info: BTreeInfo,
  root: number,
  key: number,
): Buffer | undefined | null {
  let loc = root;
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    const buf = info.tm.peek(loc, btreeNodeValidator);
    if (buf === undefined) return null;
    const node = new Node(buf);
    const want = node.isLeaf ? info.valueType.size : INTERNAL_VALUE_SIZE;
    if (node.valueSize !== want || (!node.isLeaf && node.nrEntries === 0)) return null;
    const i = node.lowerBound(key);
    if (node.isLeaf) return i >= 0 && node.key(i) === key ? node.value(i) : undefined;
    if (i < 0) return undefined;
    loc = node.valueU64(i);
  }
  return null;
}

/** The first entry with a key >= `key`, or undefined. */
export async function lookupNext(
  info: BTreeInfo,
  root: number,
  key: number,
): Promise<{ key: number; value: Buffer } | undefined> {
  return nextIn(info, root, key, 0);
}

async function nextIn(
  info: BTreeInfo,
  loc: number,
  key: number,
  depth: number,
): Promise<{ key: number; value: Buffer } | undefined> {
  if (depth >= MAX_DEPTH) throw tooDeep(loc);
  const node = await readNode(info, loc);
  const n = node.nrEntries;
  if (node.isLeaf) {
    let i = node.lowerBound(key);
    if (i < 0 || node.key(i) < key) i++;
    return i < n ? { key: node.key(i), value: Buffer.from(node.value(i)) } : undefined;
  }
  const children: number[] = [];
  for (let c = Math.max(node.lowerBound(key), 0); c < n; c++) children.push(node.valueU64(c));
  for (const child of children) {
    const found = await nextIn(info, child, key, depth + 1);
    if (found !== undefined) return found;
  }
  return undefined;
}

/** The highest key of the tree, or undefined when it is empty. */
export async function highestKey(info: BTreeInfo, root: number): Promise<number | undefined> {
  let loc = root;
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    const node = await readNode(info, loc);
    const n = node.nrEntries;
    if (n === 0) return undefined;
    if (node.isLeaf) return node.key(n - 1);
    loc = node.valueU64(n - 1);
  }
  throw tooDeep(loc);
}

/** The number of levels of the tree at `root` (1 for a single leaf). */
export async function depth(info: BTreeInfo, root: number): Promise<number> {
  let loc = root;
  for (let level = 1; level <= MAX_DEPTH; level++) {
    const node = await readNode(info, loc);
    if (node.isLeaf) return level;
    loc = node.valueU64(0);
  }
  throw tooDeep(root);
}

/**
 * Visits every entry in key order. The value passed to `visit` is a view that is only valid
 * during the call; a `visit` that returns nothing is not awaited.
 */
export async function walk(
  info: BTreeInfo,
  root: number,
  visit: (key: number, value: Buffer) => void | Promise<void>,
): Promise<void> {
  await walkLeaves(info, root, async (leaf) => {
    const n = leaf.nrEntries;
    for (let i = 0; i < n; i++) {
      const pending = visit(leaf.key(i), leaf.value(i));
      if (pending !== undefined) await pending;
    }
  });
}

/**
 * Visits every leaf in key order: one call per leaf rather than per entry, for callers that
 * decode entries themselves. The children of each internal node are read together (see
 * `TransactionManager.readMany`), and those of the next sibling are read while the current
 * one is walked, so a walk makes a few large reads per level and overlaps them with the
 * visiting. The leaf is a view that is only valid during the call.
 */
export async function walkLeaves(
  info: BTreeInfo,
  root: number,
  visitLeaf: (leaf: Node) => void | Promise<void>,
): Promise<void> {
  await walkBelow(info, await readNode(info, root), root, undefined, visitLeaf, 0);
}

/**
 * Walks the subtree of `node`; `childrenRead`, when given, is the read of its children
 * already under way.
 */
async function walkBelow(
  info: BTreeInfo,
  node: Node,
  loc: number,
  childrenRead: Promise<Buffer[]> | undefined,
  visitLeaf: (leaf: Node) => void | Promise<void>,
  depth: number,
): Promise<void> {
  if (depth >= MAX_DEPTH) throw tooDeep(loc);
  if (node.isLeaf) {
    const pending = visitLeaf(node);
    if (pending !== undefined) await pending;
    return;
  }
  const locs = childLocations(node);
  const bufs = await (childrenRead ?? info.tm.readMany(locs, btreeNodeValidator));
  const children = bufs.map((buf, i) => {
    const child = new Node(buf);
    checkNodeKind(info, child, locs[i] as number);
    return child;
  });
  let next = readChildrenOf(info, children[0]);
  for (let i = 0; i < children.length; i++) {
    const current = next;
    next = readChildrenOf(info, children[i + 1]);
    await walkBelow(info, children[i] as Node, locs[i] as number, current, visitLeaf, depth + 1);
  }
}

function childLocations(node: Node): number[] {
  const n = node.nrEntries;
  const locs: number[] = new Array(n);
  for (let i = 0; i < n; i++) locs[i] = node.valueU64(i);
  return locs;
}

/**
 * The read of an internal node's children, started now; undefined for a leaf or no node.
 * A failure is reported where the read is awaited, not as an unhandled rejection.
 */
function readChildrenOf(info: BTreeInfo, node: Node | undefined): Promise<Buffer[]> | undefined {
  if (node === undefined || node.isLeaf) return undefined;
  const read = info.tm.readMany(childLocations(node), btreeNodeValidator);
  read.catch(() => {});
  return read;
}

// ---------------------------------------------------------------------------------------
// Shadowing

interface Writable {
  loc: number;
  node: Node;
}

/** A writable copy of `loc` (or `loc` itself when this transaction owns it). */
async function shadowNode(info: BTreeInfo, loc: number): Promise<Writable> {
  const shadow = await info.tm.shadow(loc, btreeNodeValidator);
  const node = new Node(shadow.buf);
  checkNodeKind(info, node, loc);
  if (shadow.incChildren) await incChildren(info, node);
  return { loc: shadow.loc, node };
}

/** Everything `node` references gains one referrer. */
async function incChildren(info: BTreeInfo, node: Node): Promise<void> {
  const n = node.nrEntries;
  if (!node.isLeaf) {
    for (let i = 0; i < n; i++) info.tm.inc(node.valueU64(i));
    return;
  }
  const inc = info.valueType.inc;
  if (inc === undefined) return;
  for (let i = 0; i < n; i++) await inc(node.value(i));
}

/** Shadows child `i` of the writable `parent` and points the parent at the shadow. */
async function shadowChild(info: BTreeInfo, parent: Node, i: number): Promise<Writable> {
  const child = await shadowNode(info, parent.valueU64(i));
  parent.setValueU64(i, child.loc);
  return child;
}

// ---------------------------------------------------------------------------------------
// Insertion

/** A writable leaf on a shadowed path, and where `key` is or would go in it. */
export interface LeafSlot {
  root: number;
  leaf: Node;
  index: number;
  exists: boolean;
}

/**
 * Shadows the path to the leaf for `key`, splitting full nodes on the way so that the leaf
 * has room for it, and returns the slot. The caller fills it (see `insert`).
 */
export async function insertSlot(info: BTreeInfo, root: number, key: number): Promise<LeafSlot> {
  const top = await shadowNode(info, root);
  if (mustSplit(top.node, key)) await splitBeneath(info, top.node);
  let node = top.node;
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    let i = node.lowerBound(key);
    if (node.isLeaf) {
      const exists = i >= 0 && node.key(i) === key;
      return { root: top.loc, leaf: node, index: exists ? i : i + 1, exists };
    }
    if (i < 0) {
      node.setKey(0, key);
      i = 0;
    }
    const child = await shadowChild(info, node, i);
    node = mustSplit(child.node, key) ? await makeRoom(info, node, i, child, key) : child.node;
  }
  throw tooDeep(top.loc);
}

/** Inserts or overwrites `key`. An overwritten, different value is released with `dec`. */
export async function insert(
  info: BTreeInfo,
  root: number,
  key: number,
  value: Uint8Array,
): Promise<{ root: number; inserted: boolean }> {
  const slot = await insertSlot(info, root, key);
  const { leaf, index } = slot;
  if (!slot.exists) {
    leaf.insertAt(index, key, value);
    return { root: slot.root, inserted: true };
  }
  const old = Buffer.from(leaf.value(index));
  leaf.setValue(index, value);
  const same = info.valueType.equal?.(old, Buffer.from(value)) ?? old.equals(value);
  if (!same) await info.valueType.dec?.(old);
  return { root: slot.root, inserted: false };
}

/** The nodes of the last `writablePath`, from the root down; reused, sized for `MAX_DEPTH`. */
const insertPath: number[] = [];

/**
 * Whether `insertNow` would insert `key`: it is absent, and every node on the path to its
 * leaf is cached, already writable in this transaction (see
 * TransactionManager.isWritableNow) and has room for one more entry. Changes nothing.
 */
export function canInsertNow(info: BTreeInfo, root: number, key: number): boolean {
  return writablePath(info, root, key) >= 0;
}

/**
 * `insert` of an absent `key` done at once, when `canInsertNow` holds: the leaf takes the
 * key in place and the root stays `root` (no I/O, no allocation, no split). True when
 * inserted; false, having changed nothing, otherwise (then `insert`). Only between
 * operations, with no await until the caller's change is complete.
 */
export function insertNow(info: BTreeInfo, root: number, key: number, value: Uint8Array): boolean {
  const leafDepth = writablePath(info, root, key);
  if (leafDepth < 0) return false;
  for (let d = 0; d <= leafDepth; d++) {
    const buf = info.tm.writableNow(insertPath[d] as number, btreeNodeValidator) as Buffer;
    const node = new Node(buf);
    const i = node.lowerBound(key);
    if (node.isLeaf) node.insertAt(i + 1, key, value);
    else if (i < 0) node.setKey(0, key);
  }
  return true;
}

/**
 * Makes room at once for `insertNow(key)` where all it lacks is a free slot in the leaf: the
 * path is cached and owned as `canInsertNow` asks, `key` is absent, and the leaf is full but
 * not the root. Room is made as `insert` makes it (`makeRoom`): the leaf shares its entries
 * with a neighbour that has room and no other referrer, else it is split; the neighbour is
 * shadowed, or the new node allocated, at once (TransactionManager.shadowNow, newBlockNow).
 * True when `insertNow(key)` will now insert; false, having changed nothing, when it would
 * not and room cannot be made at once (then `insert`). Only between operations, with no
 * await until the caller's change is complete.
 */
export function makeRoomNow(info: BTreeInfo, root: number, key: number): boolean {
  const leafDepth = writablePath(info, root, key, true);
  if (leafDepth < 0) return false;
  const leafLoc = insertPath[leafDepth] as number;
  const leaf = new Node(info.tm.peek(leafLoc, btreeNodeValidator) as Buffer);
  if (leaf.nrEntries < leaf.maxEntries) return true;
  if (leafDepth === 0) return false;
  const parentLoc = insertPath[leafDepth - 1] as number;
  const parent = new Node(info.tm.peek(parentLoc, btreeNodeValidator) as Buffer);
  const i = Math.max(parent.lowerBound(key), 0);
  const shared = shareOutNow(info, parentLoc, parent, i);
  return shared ?? splitNow(info, parentLoc, i);
}

/**
 * `makeRoom`'s sharing at once: child `i` of `parent` (cached and owned, at `parentLoc`) is
 * a full leaf; its entries are shared with the first neighbour that has one referrer and
 * room. True when shared; undefined when no neighbour qualifies (then split it); false,
 * having changed nothing, when one might but is not to be had at once.
 */
function shareOutNow(
  info: BTreeInfo,
  parentLoc: number,
  parent: Node,
  i: number,
): boolean | undefined {
  for (const s of [i - 1, i + 1]) {
    if (s < 0 || s >= parent.nrEntries) continue;
    const siblingLoc = parent.valueU64(s);
    if (info.tm.refCount(siblingLoc) !== 1) continue;
    const peek = info.tm.peek(siblingLoc, btreeNodeValidator);
    if (peek === undefined) return false;
    const sibling = new Node(peek);
    checkNodeKind(info, sibling, siblingLoc);
    if (!canTakeShare(sibling)) continue;
    const shadow = info.tm.shadowNow(siblingLoc, btreeNodeValidator);
    if (shadow === undefined) return false;
    const p = writableNodeNow(info, parentLoc);
    const child = writableNodeNow(info, p.valueU64(i));
    p.setValueU64(s, shadow.loc);
    shareEntries(p, i, child, s, new Node(shadow.buf));
    return true;
  }
  return undefined;
}

/** `makeRoom`'s split at once of child `i` of the node at `parentLoc`; false if no block. */
function splitNow(info: BTreeInfo, parentLoc: number, i: number): boolean {
  const fresh = info.tm.newBlockNow(btreeNodeValidator);
  if (fresh === undefined) return false;
  const parent = writableNodeNow(info, parentLoc);
  const right = moveUpperHalf(writableNodeNow(info, parent.valueU64(i)), new Node(fresh.buf));
  parent.insertAt(i + 1, right.key(0), u64(fresh.loc));
  return true;
}

/** The owned, cached node at `loc`, made dirty (see TransactionManager.writableNow). */
function writableNodeNow(info: BTreeInfo, loc: number): Node {
  return new Node(info.tm.writableNow(loc, btreeNodeValidator) as Buffer);
}

/**
 * The path `insertNow` needs, into `insertPath`: the leaf's depth, or -1 (see canInsertNow).
 * With `fullLeaf`, a leaf without a free slot is taken too (see makeRoomNow).
 */
function writablePath(info: BTreeInfo, root: number, key: number, fullLeaf = false): number {
  let loc = root;
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    if (!info.tm.isWritableNow(loc, btreeNodeValidator)) return -1;
    const node = new Node(info.tm.peek(loc, btreeNodeValidator) as Buffer);
    const want = node.isLeaf ? info.valueType.size : INTERNAL_VALUE_SIZE;
    if (node.valueSize !== want || (!node.isLeaf && node.nrEntries === 0)) return -1;
    if (node.nrEntries >= node.maxEntries && !(fullLeaf && node.isLeaf)) return -1;
    insertPath[depth] = loc;
    const i = node.lowerBound(key);
    if (node.isLeaf) return i >= 0 && node.key(i) === key ? -1 : depth;
    loc = node.valueU64(Math.max(i, 0));
  }
  return -1;
}

function mustSplit(node: Node, key: number): boolean {
  if (node.nrEntries < node.maxEntries) return false;
  if (!node.isLeaf) return true;
  const i = node.lowerBound(key);
  return !(i >= 0 && node.key(i) === key);
}

/** Free slots a sibling must have before entries are moved into it instead of splitting. */
const SIBLING_SLACK = 8;

/**
 * Child `i` of `parent` is full: shares its entries with an unshared sibling that has room
 * (left first, then right), as the kernel does, or else splits it in two. Sharing keeps
 * nodes fuller than splitting alone (appends fill leaves almost completely). Returns the node
 * that now covers `key`; it has room for it.
 */
async function makeRoom(
  info: BTreeInfo,
  parent: Node,
  i: number,
  child: Writable,
  key: number,
): Promise<Node> {
  for (const s of [i - 1, i + 1]) {
    if (s < 0 || s >= parent.nrEntries) continue;
    const siblingLoc = parent.valueU64(s);
    if (info.tm.refCount(siblingLoc) !== 1) continue;
    if (!canTakeShare(await readNode(info, siblingLoc))) continue;
    const sibling = await shadowChild(info, parent, s);
    const { left, right } = shareEntries(parent, i, child.node, s, sibling.node);
    return key >= right.key(0) ? right : left;
  }
  const right = await splitOff(info, child.node);
  parent.insertAt(i + 1, right.node.key(0), u64(right.loc));
  return key >= right.node.key(0) ? right.node : child.node;
}

/** Whether a neighbour of a full node has room enough to take a share of its entries. */
function canTakeShare(neighbour: Node): boolean {
  return neighbour.maxEntries - neighbour.nrEntries >= SIBLING_SLACK;
}

/**
 * Evens out the entries of `child` and `sibling`, children `i` and `s` of `parent` (both
 * writable, `s` next to `i`), and sets the parent's key of the right one.
 */
function shareEntries(
  parent: Node,
  i: number,
  child: Node,
  s: number,
  sibling: Node,
): { left: Node; right: Node } {
  const [left, right, rightIndex] = s < i ? [sibling, child, i] : [child, sibling, s];
  redistribute(left, right, Math.floor((left.nrEntries + right.nrEntries) / 2));
  parent.setKey(rightIndex, right.key(0));
  return { left, right };
}

/** Moves the root's entries into two new children; the root becomes internal, in place. */
async function splitBeneath(info: BTreeInfo, root: Node): Promise<void> {
  const n = root.nrEntries;
  const half = Math.floor(n / 2);
  const left = await info.tm.newBlock(btreeNodeValidator);
  const right = await info.tm.newBlock(btreeNodeValidator);
  const l = new Node(left.buf);
  const r = new Node(right.buf);
  l.init(root.flags, root.valueSize);
  r.init(root.flags, root.valueSize);
  l.copyEntries(0, root, 0, half);
  l.nrEntries = half;
  r.copyEntries(0, root, half, n - half);
  r.nrEntries = n - half;
  root.init(INTERNAL_NODE, INTERNAL_VALUE_SIZE);
  root.insertAt(0, l.key(0), u64(left.loc));
  root.insertAt(1, r.key(0), u64(right.loc));
}

/** Moves the upper half of `node` into a new right sibling and returns it. */
async function splitOff(info: BTreeInfo, node: Node): Promise<Writable> {
  const right = await info.tm.newBlock(btreeNodeValidator);
  return { loc: right.loc, node: moveUpperHalf(node, new Node(right.buf)) };
}

/** Moves the upper half of `node` into `right`, a new node; returns `right`. */
function moveUpperHalf(node: Node, right: Node): Node {
  const n = node.nrEntries;
  const half = Math.floor(n / 2);
  right.init(node.flags, node.valueSize);
  right.copyEntries(0, node, half, n - half);
  right.nrEntries = n - half;
  node.clearSlots(half, n);
  node.nrEntries = half;
  return right;
}

// ---------------------------------------------------------------------------------------
// Removal

/**
 * Removes `key` if present; its value is released with `dec`. Returns the new root and the
 * removed value (a copy).
 */
export async function remove(
  info: BTreeInfo,
  root: number,
  key: number,
): Promise<{ root: number; removed: Buffer | undefined }> {
  const top = await shadowNode(info, root);
  let node = top.node;
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    if (node.isLeaf) {
      const i = node.lowerBound(key);
      if (i < 0 || node.key(i) !== key) return { root: top.loc, removed: undefined };
      const old = Buffer.from(node.value(i));
      node.removeAt(i);
      await info.valueType.dec?.(old);
      return { root: top.loc, removed: old };
    }
    if (node === top.node && node.nrEntries === 1) {
      await collapseRoot(info, node);
      continue;
    }
    const i = node.lowerBound(key);
    if (i < 0) return { root: top.loc, removed: undefined };
    node = await rebalanceChild(info, node, i, key);
  }
  throw tooDeep(top.loc);
}

/** An internal root with one child takes over that child's contents; the tree loses a level. */
async function collapseRoot(info: BTreeInfo, root: Node): Promise<void> {
  const childLoc = root.valueU64(0);
  const child = await readNode(info, childLoc);
  const shared = info.tm.refCount(childLoc) > 1;
  child.buf.copy(root.buf);
  info.tm.dec(childLoc);
  if (shared) await incChildren(info, root);
}

/**
 * Shadows child `i` of `parent` and, when it is at its minimum, merges it with a sibling or
 * borrows entries from one, so that a removal below cannot leave it under the minimum.
 * Returns the writable node that now covers `key`.
 */
async function rebalanceChild(
  info: BTreeInfo,
  parent: Node,
  i: number,
  key: number,
): Promise<Node> {
  const child = await shadowChild(info, parent, i);
  const threshold = Math.floor(child.node.maxEntries / 3);
  if (child.node.nrEntries > threshold) return child.node;
  if (parent.nrEntries < 2) {
    throw new MetadataCorruptError(
      'btree node',
      parent.location,
      'an internal node below the root has a single entry',
    );
  }
  const useRight = i + 1 < parent.nrEntries;
  const sibling = await shadowChild(info, parent, useRight ? i + 1 : i - 1);
  const [left, right, leftIndex] = useRight ? [child, sibling, i] : [sibling, child, i - 1];
  const total = left.node.nrEntries + right.node.nrEntries;
  if (total <= 2 * threshold + 1) {
    left.node.copyEntries(left.node.nrEntries, right.node, 0, right.node.nrEntries);
    left.node.nrEntries = total;
    parent.removeAt(leftIndex + 1);
    info.tm.dec(right.loc);
    return left.node;
  }
  redistribute(left.node, right.node, Math.floor(total / 2));
  parent.setKey(leftIndex + 1, right.node.key(0));
  return key >= right.node.key(0) ? right.node : left.node;
}

/** Moves entries between neighbours so that `left` holds `wanted` of them. */
function redistribute(left: Node, right: Node, wanted: number): void {
  const nl = left.nrEntries;
  if (nl < wanted) {
    const k = wanted - nl;
    left.copyEntries(nl, right, 0, k);
    left.nrEntries = wanted;
    right.dropFront(k);
  } else if (nl > wanted) {
    const k = nl - wanted;
    right.openFront(k);
    right.copyEntries(0, left, wanted, k);
    right.nrEntries = right.nrEntries + k;
    left.clearSlots(wanted, nl);
    left.nrEntries = wanted;
  }
}

/**
 * Removes every key in [begin, end) and returns the new root and how many were removed.
 */
export async function removeRange(
  info: BTreeInfo,
  root: number,
  begin: number,
  end: number,
): Promise<{ root: number; count: number }> {
  let count = 0;
  let at = begin;
  let current = root;
  while (at < end) {
    const next = await lookupNext(info, current, at);
    if (next === undefined || next.key >= end) break;
    const r = await remove(info, current, next.key);
    current = r.root;
    count++;
    at = next.key + 1;
  }
  return { root: current, count };
}

// ---------------------------------------------------------------------------------------
// Deletion

/**
 * Drops one reference to the tree at `root`. A shared node just loses the reference; an
 * unshared one releases its children (or its values, with `dec`) and is freed.
 */
export async function deleteTree(info: BTreeInfo, root: number): Promise<void> {
  await deleteNode(info, root, 0);
}

async function deleteNode(info: BTreeInfo, loc: number, depth: number): Promise<void> {
  if (depth >= MAX_DEPTH) throw tooDeep(loc);
  const { tm } = info;
  if (tm.refCount(loc) > 1) {
    tm.dec(loc);
    return;
  }
  const node = await readNode(info, loc);
  const n = node.nrEntries;
  if (!node.isLeaf) {
    const children: number[] = [];
    for (let i = 0; i < n; i++) children.push(node.valueU64(i));
    for (const child of children) await deleteNode(info, child, depth + 1);
  } else if (info.valueType.dec !== undefined) {
    const values: Buffer[] = [];
    for (let i = 0; i < n; i++) values.push(Buffer.from(node.value(i)));
    for (const v of values) await info.valueType.dec(v);
  }
  tm.dec(loc);
}

// ---------------------------------------------------------------------------------------

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  writeU64LE(b, 0, n);
  return b;
}

/** Reads a u64 value (a child location or a subtree root). */
export function valueAsU64(value: Buffer): number {
  return readU64LE(value, 0);
}

function tooDeep(loc: number): MetadataCorruptError {
  return new MetadataCorruptError(
    'btree',
    loc,
    `the tree is deeper than ${MAX_DEPTH} levels: it must contain a cycle`,
  );
}
