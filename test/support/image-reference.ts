/**
 * Reference unpacks for image tests, on plain directories: layer tars applied in order by
 * the archive layer (no thinp devices), a snapshot of the tree after each layer, and the
 * layers of a docker save tarball read back with thinp's archive reader.
 */

import { createReadStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { applyLayer } from '../../src/archive/index.js';
import {
  type ArchiveImage,
  imagesOfArchive,
  openLayer,
} from '../../src/graph/image-archive-read.js';
import { spoolArchive } from '../../src/graph/image-archive-spool.js';
import { type SnapshotOptions, snapshotTree, type TreeSnapshot } from './tree-snapshot.js';

/** Applies `layers` one after another into `dir`; the tree after each one. */
export async function unpackLayers(
  dir: string,
  layers: readonly (() => NodeJS.ReadableStream)[],
  options: SnapshotOptions,
): Promise<TreeSnapshot[]> {
  await mkdir(dir, { recursive: true });
  const trees: TreeSnapshot[] = [];
  for (const open of layers) {
    await applyLayer(dir, open());
    trees.push(await snapshotTree(dir, options));
  }
  return trees;
}

export const bufferLayer = (b: Buffer) => () => Readable.from([b]);

/** The images of the archive `file`, with each layer opened from a spool under `tempParent`. */
export async function readArchive<T>(
  file: string,
  tempParent: string,
  fn: (
    images: ArchiveImage[],
    open: (i: ArchiveImage) => (() => NodeJS.ReadableStream)[],
  ) => Promise<T>,
): Promise<T> {
  const spool = await spoolArchive(createReadStream(file), tempParent);
  try {
    const images = imagesOfArchive(spool);
    return await fn(images, (image) => image.layers.map((l) => () => openLayer(l)));
  } finally {
    await spool.close();
  }
}

export function under(dir: string, ...parts: string[]): string {
  return path.join(dir, ...parts);
}
