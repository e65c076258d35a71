/**
 * The archive operations on directories, as the worker runs them: apply a tar, export the
 * changes of a tree as a tar, list the changes, add up their size (DOCKER.md §1.6). Roots
 * are text paths; everything inside is raw (raw-name.ts).
 */

import { lstatSync } from 'node:fs';
import { lstat } from 'node:fs/promises';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { NotFoundError } from '../util/index.js';
import { type ApplyResult, applyTar } from './apply.js';
import { ChangeKinds, changesBetween, type RawChange } from './changes.js';
import { writeChanges } from './export.js';
import { fsPath, joinRaw, rawOf } from './raw-name.js';
import { emptyTree, walkTree } from './tree.js';

export function applyLayerHere(root: string, input: Readable): Promise<ApplyResult> {
  return applyTar(root, input);
}

/** The changes of `root` against `parent` (every path when undefined), sorted, raw. */
export async function changesHere(root: string, parent: string | undefined): Promise<RawChange[]> {
  const next = await walkTree(await rawRoot(root));
  const old = parent === undefined ? emptyTree(next.stats) : await walkTree(await rawRoot(parent));
  return changesBetween(next, old);
}

export async function exportHere(
  root: string,
  parent: string | undefined,
  out: Writable,
): Promise<void> {
  const changes = await changesHere(root, parent);
  await writeChanges(await rawRoot(root), changes, out);
}

/** Docker's ChangesSize: lstat sizes of added and modified non-directories, each inode once. */
export async function sizeHere(root: string, parent: string | undefined): Promise<number> {
  const rawRootPath = await rawRoot(root);
  const seen = new Set<bigint>();
  let size = 0n;
  for (const change of await changesHere(root, parent)) {
    if (change.kind === ChangeKinds.delete) continue;
    const stats = lstatSync(fsPath(joinRaw(rawRootPath, change.path.slice(1))), { bigint: true });
    if (stats.isDirectory()) continue;
    if (stats.nlink > 1n) {
      if (seen.has(stats.ino)) continue;
      seen.add(stats.ino);
    }
    size += stats.size;
  }
  return Number(size);
}

async function rawRoot(root: string): Promise<string> {
  const stats = await lstat(root).catch(() => undefined);
  if (!stats?.isDirectory()) {
    throw new NotFoundError(`layer root ${root} is not a directory`, {
      hint: 'create the directory (or mount the layer) first',
    });
  }
  return rawOf(path.resolve(root));
}
