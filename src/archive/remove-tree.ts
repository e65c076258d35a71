/**
 * `rm -rf` on raw names that never follows a symbolic link: a link is removed, not its
 * target. A missing path is not an error.
 */

import { lstat, readdir, rmdir, unlink } from 'node:fs/promises';
import { fsPath, joinRaw } from './raw-name.js';
import { ignoreMissing } from './root-path.js';

export async function removeTree(path: string): Promise<void> {
  const stats = await lstat(fsPath(path)).catch(ignoreMissing);
  if (stats === undefined) return;
  if (!stats.isDirectory()) {
    await unlink(fsPath(path)).catch(ignoreMissing);
    return;
  }
  for (const child of await readdir(fsPath(path), { encoding: 'buffer' })) {
    await removeTree(joinRaw(path, child.toString('latin1')));
  }
  await rmdir(fsPath(path)).catch(ignoreMissing);
}

/** The raw names of the entries of directory `path`, sorted by bytes. */
export async function listDir(path: string): Promise<string[]> {
  const names = await readdir(fsPath(path), { encoding: 'buffer' });
  return names.map((name) => name.toString('latin1')).sort(compareRaw);
}

/** Byte order of two raw names (Go's string order). */
export function compareRaw(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
