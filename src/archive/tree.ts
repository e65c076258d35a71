/**
 * A directory tree as Docker's naive ChangesDirs sees it (collectFileInfoForChanges): for
 * every entry its lstat and its `security.capability` xattr, children by raw name. The walk
 * never follows a symbolic link and never leaves the tree. Synchronous system calls: only
 * the archive worker (a process of its own) walks trees.
 */

import { type BigIntStats, lstatSync } from 'node:fs';
import { fsOps } from './native.js';
import { fsPath, joinRaw } from './raw-name.js';
import { listDir } from './remove-tree.js';

export interface TreeNode {
  /** Raw path within the tree, "/" for the root, "/etc/passwd" below it. */
  path: string;
  stats: BigIntStats;
  capability: Buffer | null;
  /** Children by raw base name; empty for anything but a directory. */
  children: Map<string, TreeNode>;
}

const CAPABILITY = Buffer.from('security.capability');

/** The tree under raw absolute path `root`. */
export async function walkTree(root: string): Promise<TreeNode> {
  return visit(root, '/');
}

async function visit(real: string, path: string): Promise<TreeNode> {
  const stats = lstatSync(fsPath(real), { bigint: true });
  const node: TreeNode = { path, stats, capability: readCapability(real), children: new Map() };
  if (stats.isDirectory()) {
    for (const name of await listDir(real)) {
      const child = await visit(joinRaw(real, name), joinRaw(path, name));
      node.children.set(name, child);
    }
  }
  return node;
}

function readCapability(real: string): Buffer | null {
  try {
    return fsOps().lgetxattr(fsPath(real), CAPABILITY);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTSUP' || code === 'EOPNOTSUPP') return null;
    throw err;
  }
}

/** An empty tree: what a missing parent is compared as. */
export function emptyTree(stats: BigIntStats): TreeNode {
  return { path: '/', stats, capability: null, children: new Map() };
}
