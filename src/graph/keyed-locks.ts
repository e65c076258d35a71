/**
 * Several keys of a KeyedLock at once, always taken in sorted order, so two callers that
 * want overlapping sets of keys cannot each hold one the other waits for.
 */

import type { KeyedLock } from '../util/index.js';

export function runLocked<T>(
  lock: KeyedLock<string>,
  keys: readonly string[],
  fn: () => Promise<T>,
): Promise<T> {
  const sorted = [...new Set(keys)].sort();
  const step = (i: number): Promise<T> => {
    const key = sorted[i];
    return key === undefined ? fn() : lock.run(key, () => step(i + 1));
  };
  return step(0);
}
