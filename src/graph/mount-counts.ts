/**
 * Reference counts of mounted layers, as Docker's graphdriver counter keeps them: the
 * first `get` of a layer mounts it, later ones only count; the last `put` unmounts it. A
 * mount found in place at start-up (a restarted daemon adopting what the last one left)
 * counts as one reference, as Docker counts a path already mounted when first seen.
 *
 * Only the layer store changes the counts, under the layer's lock; this class holds no
 * lock of its own and does no I/O.
 */

import type { MountedFs } from '../mount/index.js';
import { BadInputError } from '../util/index.js';

export interface LayerMount {
  readonly mounted: MountedFs;
  /** The directory handed out: `<mountpoint>/rootfs`. */
  readonly rootfs: string;
  references: number;
}

export class MountCounts {
  private readonly mounts = new Map<string, LayerMount>();

  /** The references `id` has; 0 when it is not mounted. */
  references(id: string): number {
    return this.mounts.get(id)?.references ?? 0;
  }

  get(id: string): LayerMount | undefined {
    return this.mounts.get(id);
  }

  /** Records a fresh (or adopted) mount of `id` with one reference. */
  add(id: string, mounted: MountedFs, rootfs: string): void {
    if (this.mounts.has(id)) {
      throw new BadInputError(`layer ${id} is mounted already`, { hint: 'count it instead' });
    }
    this.mounts.set(id, { mounted, rootfs, references: 1 });
  }

  /** One more reference to mounted `id`; returns its rootfs. */
  acquire(id: string): string {
    const m = this.mounted(id);
    m.references++;
    return m.rootfs;
  }

  /**
   * One reference fewer; returns the mount to undo when that was the last one (it has then
   * left the table), else undefined.
   */
  release(id: string): LayerMount | undefined {
    const m = this.mounted(id);
    m.references--;
    if (m.references > 0) return undefined;
    this.mounts.delete(id);
    return m;
  }

  /** Takes every mount out of the table (for a shutdown that unmounts them all). */
  drain(): [string, LayerMount][] {
    const all = [...this.mounts];
    this.mounts.clear();
    return all;
  }

  ids(): string[] {
    return [...this.mounts.keys()].sort();
  }

  private mounted(id: string): LayerMount {
    const m = this.mounts.get(id);
    if (m === undefined) {
      throw new BadInputError(`layer ${id} is not mounted`, {
        hint: "mount it first ('thinp layer mount'); every unmount pairs with a mount",
      });
    }
    return m;
  }
}
