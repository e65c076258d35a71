/**
 * The JSON shapes of DESIGN §4, key for key, shared by the CLI (`--json`) and the control
 * API so that both always print the same thing.
 */

import type { PoolStatus } from '../pool/index.js';
import type { DeviceListing } from './device-set.js';

/** `pool status --json`: exactly DESIGN's keys, in its order. */
export function poolStatusJson(s: PoolStatus): PoolStatus {
  return {
    transactionId: s.transactionId,
    mode: s.mode,
    needsCheck: s.needsCheck,
    heldRoot: s.heldRoot,
    data: {
      usedBlocks: s.data.usedBlocks,
      totalBlocks: s.data.totalBlocks,
      blockSize: s.data.blockSize,
    },
    metadata: { usedBlocks: s.metadata.usedBlocks, totalBlocks: s.metadata.totalBlocks },
  };
}

/** One element of `device list --json`. */
export function deviceListingJson(d: DeviceListing): DeviceListing {
  return {
    name: d.name,
    id: d.id,
    size: d.size,
    mappedBytes: d.mappedBytes,
    exclusiveBytes: d.exclusiveBytes,
    sharedBytes: d.sharedBytes,
    origin: d.origin,
  };
}
