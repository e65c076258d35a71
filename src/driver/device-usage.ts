/**
 * How much of the pool each device holds, as thin_ls counts it: a data block mapped by
 * exactly one device is exclusive to it; one mapped by several (after a snapshot, until
 * overwritten) is shared by each of them.
 */

import type { ThinPool } from '../pool/index.js';

export interface BlockUsage {
  mappedBlocks: number;
  exclusiveBlocks: number;
}

const NO_OWNER = -1;
const SHARED = -2;

/**
 * Walks every mapping of every device in `allIds` once, remembering per data block its only
 * owner (or that it is shared): 4 bytes per data block of the pool. Returns the usage of
 * each device in `ids`.
 */
export async function blockUsage(
  pool: ThinPool,
  ids: readonly number[],
  allIds: readonly number[],
): Promise<Map<number, BlockUsage>> {
  const owner = new Int32Array(pool.status().data.totalBlocks).fill(NO_OWNER);
  const usage = new Map<number, BlockUsage>();
  for (const id of allIds) {
    let mapped = 0;
    await pool.metadata.walkMappings(id, (_vblock, dataBlock) => {
      mapped++;
      const o = owner[dataBlock];
      if (o === NO_OWNER) owner[dataBlock] = id;
      else if (o !== id) owner[dataBlock] = SHARED;
    });
    usage.set(id, { mappedBlocks: mapped, exclusiveBlocks: 0 });
  }
  for (const o of owner) {
    const u = o >= 0 ? usage.get(o) : undefined;
    if (u !== undefined) u.exclusiveBlocks++;
  }
  return new Map(ids.map((id) => [id, usage.get(id) ?? { mappedBlocks: 0, exclusiveBlocks: 0 }]));
}
