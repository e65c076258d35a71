/**
 * Image layers with their tar-split records (tar-split.ts): applied while recorded, written
 * again by replaying the record over the mounted layer (its exact bytes), or by the layer's
 * diff when there is no record or the replay does not give the layer's diffID; removed with
 * their record.
 */

import { rename, rm } from 'node:fs/promises';
import type { SaveLayer } from './image-archive-write.js';
import type { Digest } from './image-digest.js';
import type { ImageLayers } from './image-layers.js';
import type { GraphRecords } from './image-records.js';
import { releaseAtEnd } from './release-at-end.js';
import { replayTar, TarSplitRecorder } from './tar-split.js';

/** `layers.applyDiff` of `tar` into layer `id`, recording it; resolves with the applied size. */
export async function applyRecorded(
  layers: ImageLayers,
  records: GraphRecords,
  id: string,
  parent: string | undefined,
  tar: NodeJS.ReadableStream,
  onProgress?: (bytesRead: number) => void,
): Promise<number> {
  const record = records.splitFile(id);
  const temp = `${record}.tmp`;
  const recorder = new TarSplitRecorder(temp);
  tar.on('error', (err: Error) => recorder.destroy(err));
  tar.pipe(recorder);
  try {
    const size = await layers.applyDiff(id, parent, recorder, { onProgress });
    await recorder.finished();
    await rename(temp, record);
    return size;
  } catch (err) {
    recorder.destroy();
    await rm(temp, { force: true });
    throw err;
  }
}

/** Layer `id` (on `parent`) for writing: its replayed bytes if they are `diffId`, else its diff. */
export function savedLayer(
  layers: ImageLayers,
  records: GraphRecords,
  id: string,
  parent: string | undefined,
  diffId: Digest,
): SaveLayer {
  return {
    diffId,
    open: async () => {
      const root = await layers.get(id);
      return releaseAtEnd(
        replayTar(records.splitFile(id), root),
        () => layers.put(id),
        () => undefined,
      );
    },
    fallback: () => layers.diff(id, parent),
  };
}

/** Removes `ids` in order (top first) with their records; resolves with those that were there. */
export async function removeRecorded(
  layers: ImageLayers,
  records: GraphRecords,
  ids: readonly string[],
): Promise<string[]> {
  const removed: string[] = [];
  for (const id of ids) {
    if ((await layers.remove(id)) !== 'absent') removed.push(id);
    await rm(records.splitFile(id), { force: true });
  }
  return removed;
}
