/**
 * `rm -rf` on raw names that never follows a symbolic link: a link is removed, not its
 * target. A missing path is not an error. Synchronous system calls: only the archive worker
 * (a process of its own) removes trees.
 */

import { lstatSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { fsPath, joinRaw } from './raw-name.js';

export async function removeTree(path: string): Promise<void> {
  removeTreeSync(path);
}

function removeTreeSync(path: string): void {
  const stats = lstatSync(fsPath(path), { throwIfNoEntry: false });
  if (stats === undefined) return;
  if (stats.isDirectory()) {
    for (const child of readdirSync(fsPath(path), { encoding: 'buffer' })) {
      removeTreeSync(joinRaw(path, child.toString('latin1')));
    }
    rmdirSync(fsPath(path));
  } else {
    unlinkSync(fsPath(path));
  }
}

/** The raw names of the entries of directory `path`, sorted by bytes. */
export async function listDir(path: string): Promise<string[]> {
  const names = readdirSync(fsPath(path), { encoding: 'buffer' });
  return names.map((name) => name.toString('latin1')).sort(compareRaw);
}

/** Byte order of two raw names (Go's string order). */
export function compareRaw(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
