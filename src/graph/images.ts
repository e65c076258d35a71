/**
 * Images and containers on a layer store, for people who use thinp without Docker: opens the
 * records under ROOT/graph, settles what a crash left (graph-settle.ts), and hands out the
 * image and container stores, which share the records and their lock.
 */

import { ContainerStore } from './container-store.js';
import { type SettleReport, settleGraph } from './graph-settle.js';
import type { ImageLayers } from './image-layers.js';
import { GraphRecords } from './image-records.js';
import { ImageStore } from './image-store.js';

export interface ImagesAndContainers {
  readonly images: ImageStore;
  readonly containers: ContainerStore;
  /** What opening settled. */
  readonly settled: SettleReport;
}

export async function openImagesAndContainers(
  root: string,
  layers: ImageLayers,
): Promise<ImagesAndContainers> {
  const records = await GraphRecords.open(root);
  const settled = await settleGraph(records, layers);
  const images = new ImageStore(records, layers);
  return { images, containers: new ContainerStore(records, layers, images), settled };
}
