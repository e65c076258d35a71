/**
 * The device set's free-space policy, as Docker's: a new device or snapshot is refused
 * while the free share of data or metadata space is below dm.min_free_space (and at least
 * one block must be free, even at 0%); pools only grow.
 */

import type { PoolStatus } from '../pool/index.js';
import { BadInputError, NoSpaceError } from '../util/index.js';

/** Throws NoSpaceError when `status` leaves less than `minPercent` free for a new `what`. */
export function checkMinFreeSpace(
  status: PoolStatus,
  minPercent: number,
  what: 'device' | 'snapshot',
): void {
  const spaces = [
    { space: 'data', label: 'pool', ...status.data },
    { space: 'metadata', label: 'pool metadata', ...status.metadata },
  ] as const;
  for (const { space, label, usedBlocks, totalBlocks } of spaces) {
    const required = Math.max(1, Math.floor((totalBlocks * minPercent) / 100));
    if (totalBlocks - usedBlocks >= required) continue;
    const full = Math.ceil((usedBlocks * 100) / totalBlocks);
    throw new NoSpaceError(
      space,
      `${label} is ${full}% full (dm.min_free_space=${minPercent}%): refusing to create ${what}`,
      { hint: "grow it with 'thinp pool resize'" },
    );
  }
}

/** Throws BadInputError when `wanted` would shrink `what` from `current` bytes. */
export function checkGrowth(what: string, current: number, wanted: number): void {
  if (wanted < current) {
    throw new BadInputError(`the ${what} cannot shrink from ${current} to ${wanted} bytes`, {
      hint: 'give a size above the current one: a pool only grows',
    });
  }
}
