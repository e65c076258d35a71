/**
 * Settling images and containers at open, after a crash (image-records.ts explains the
 * intents): a container marked `removing` loses its layers and its record; then every layer
 * an open intent names that no record uses is removed, and the intent with it. Layers are
 * removed top first (the order intents list them in is bottom first, so it is reversed).
 * Tar-split records a crash left half written go too.
 */

import { removeContainerLayers } from './container-store.js';
import type { ImageLayers } from './image-layers.js';
import { type GraphRecords, layersInUse } from './image-records.js';
import { removeRecorded } from './recorded-layers.js';

export interface SettleReport {
  /** Operations a crash cut short, as "image load", "container create"... */
  intents: string[];
  removedLayers: string[];
  removedContainers: string[];
}

export function settleGraph(records: GraphRecords, layers: ImageLayers): Promise<SettleReport> {
  return records.lock.run(async () => {
    const report: SettleReport = { intents: [], removedLayers: [], removedContainers: [] };
    for (const c of await records.containers()) {
      if (c.state !== 'removing') continue;
      await removeContainerLayers(layers, c);
      await records.removeContainer(c.id);
      report.removedContainers.push(c.name);
    }
    const used = layersInUse(await records.images(), await records.containers());
    for (const { file, intent } of await records.intents()) {
      for (const layer of [...intent.layers].reverse()) {
        if (used.has(layer)) continue;
        report.removedLayers.push(...(await removeRecorded(layers, records, [layer])));
      }
      await records.endIntent(file);
      report.intents.push(intent.op);
    }
    await records.removeUnfinishedSplits();
    return report;
  });
}
