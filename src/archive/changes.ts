/**
 * Docker's ChangesDirs (DOCKER.md §1.6): the changes that turn tree `old` into tree `new`.
 *
 *   - an entry only in `new` is Added, and so is everything below it;
 *   - an entry only in `old` is Deleted (its children are not listed);
 *   - an entry in both is Modified when its mode (type included), uid, gid or rdev differ,
 *     or, unless the old one is a directory, its size or mtime differ (seconds and
 *     nanoseconds; a zero nanosecond part on either side matches any), or its
 *     security.capability xattr differs; its children are compared only when `new` is a
 *     directory (the old children of a replaced directory are not listed as deleted);
 *   - a directory with a change below it that is not itself Added or Modified gets a Modify
 *     entry before its children; "/" is never listed.
 *
 * The result is sorted by path (raw byte order), as ExportChanges and `docker diff` need.
 */

import type { BigIntStats } from 'node:fs';
import { compareRaw } from './remove-tree.js';
import type { TreeNode } from './tree.js';

export const ChangeKinds = { modify: 0, add: 1, delete: 2 } as const;

/** Docker's ChangeModify = 0, ChangeAdd = 1, ChangeDelete = 2. */
export type ChangeKind = (typeof ChangeKinds)[keyof typeof ChangeKinds];

/** One change; `path` is raw here and absolute within the layer ("/etc/passwd"). */
export interface RawChange {
  path: string;
  kind: ChangeKind;
}

export function changesBetween(next: TreeNode, old: TreeNode | undefined): RawChange[] {
  const changes: RawChange[] = [];
  addChanges(next, old, false, changes);
  return changes.sort((a, b) => compareRaw(a.path, b.path));
}

/** Appends the changes of `node` against `old` (undefined: not in old); `listed`: already in. */
function addChanges(
  node: TreeNode,
  old: TreeNode | undefined,
  listed: boolean,
  out: RawChange[],
): void {
  const sizeAtEntry = out.length;
  let added = listed;
  if (old === undefined && node.path !== '/') {
    out.push({ path: node.path, kind: ChangeKinds.add });
    added = true;
  }
  const oldChildren = new Map(old !== undefined && node.stats.isDirectory() ? old.children : []);
  for (const [name, child] of node.children) {
    const oldChild = oldChildren.get(name);
    let childListed = false;
    if (oldChild !== undefined) {
      if (
        statDifferent(oldChild.stats, child.stats) ||
        !sameBytes(oldChild.capability, child.capability)
      ) {
        out.push({ path: child.path, kind: ChangeKinds.modify });
        childListed = true;
      }
      oldChildren.delete(name);
    }
    addChanges(child, oldChild, childListed, out);
  }
  for (const oldChild of oldChildren.values()) {
    out.push({ path: oldChild.path, kind: ChangeKinds.delete });
  }
  if (out.length > sizeAtEntry && node.stats.isDirectory() && !added && node.path !== '/') {
    out.splice(sizeAtEntry, 0, { path: node.path, kind: ChangeKinds.modify });
  }
}

const S_IFMT = 0o170000n;
const S_IFDIR = 0o040000n;

export function statDifferent(old: BigIntStats, next: BigIntStats): boolean {
  if (
    old.mode !== next.mode ||
    old.uid !== next.uid ||
    old.gid !== next.gid ||
    old.rdev !== next.rdev
  ) {
    return true;
  }
  if ((old.mode & S_IFMT) === S_IFDIR) return false;
  return old.size !== next.size || !sameTime(old, next);
}

/** Equal seconds, and equal nanoseconds unless either is zero (a time from a tar). */
function sameTime(a: BigIntStats, b: BigIntStats): boolean {
  const second = 1_000_000_000n;
  const [aSec, aNsec] = [a.mtimeNs / second, a.mtimeNs % second];
  const [bSec, bNsec] = [b.mtimeNs / second, b.mtimeNs % second];
  return aSec === bSec && (aNsec === bNsec || aNsec === 0n || bNsec === 0n);
}

function sameBytes(a: Buffer | null, b: Buffer | null): boolean {
  if (a === null || b === null) return a === b;
  return a.equals(b);
}
