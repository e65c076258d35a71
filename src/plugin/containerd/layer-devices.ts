/**
 * `LayerSnapshotDevices`: containerd's snapshots as layers of thinp's storage driver. Each
 * snapshot is a layer (a thin device named `containerd-snapshot-N`): a snapshot of its
 * parent's layer, or of the base device for a snapshot without a parent, so a new snapshot
 * holds an empty `rootfs/` of mode 0755 and none of the filesystem's own entries
 * (`lost+found`).
 *
 * Mounts are directories thinp mounts itself (the layer's ROOT/mnt/<id>/rootfs), handed to
 * containerd as bind mounts (`rbind`, plus `ro` for views). Why not the block device: a
 * commit while mounted needs the filesystem frozen, and thinp can freeze only a mount it
 * knows; its own mount is always there to freeze, while containerd's (a shim, a differ, a
 * test) come and go. The layer store freezes a mounted origin around the snapshot, as a dm
 * suspend does.
 *
 * An active snapshot stays mounted (one reference) from Prepare or View until it is committed
 * or removed; containerd's own bind mounts of it may outlive that (its unmounts are lazy),
 * so removal goes through the layer store's deferred deletion.
 */

import path from 'node:path';
import { ROOTFS, type ThinLayerStore } from '../../graph/index.js';
import type { SnapshotDevices, SnapshotMount } from './service.js';

export class LayerSnapshotDevices implements SnapshotDevices {
  /**
   * The snapshotter is the only user of its layers, so every mount reference a layer has is
   * its own, including one a restarted daemon adopted from the mount table: the counts live
   * in the layer store, not here.
   */
  constructor(
    private readonly layers: ThinLayerStore,
    private readonly mountDir: string,
  ) {}

  async create(device: string, parent: string | undefined): Promise<void> {
    await this.layers.createReadWrite(device, parent);
  }

  async mounts(device: string, readOnly: boolean): Promise<SnapshotMount[]> {
    const now = this.mountsNow(device, readOnly);
    if (now !== undefined) return now;
    return bindMounts(await this.layers.get(device), readOnly);
  }

  mountsNow(device: string, readOnly: boolean): SnapshotMount[] | undefined {
    if (this.layers.references(device) === 0) return undefined;
    return bindMounts(this.rootfsOf(device), readOnly);
  }

  private rootfsOf(device: string): string {
    return path.join(this.mountDir, device, ROOTFS);
  }

  async snapshot(active: string, committed: string): Promise<void> {
    await this.layers.create(committed, active);
  }

  async remove(device: string): Promise<void> {
    while (this.layers.references(device) > 0) await this.layers.put(device);
    await this.layers.remove(device);
  }

  async usage(device: string): Promise<{ size: number; inodes: number }> {
    const layer = (await this.layers.list()).find((l) => l.id === device);
    return { size: layer?.exclusiveBytes ?? 0, inodes: 0 };
  }

  async cleanup(): Promise<void> {}
}

function bindMounts(rootfs: string, readOnly: boolean): SnapshotMount[] {
  return [{ type: 'bind', source: rootfs, options: ['rbind', readOnly ? 'ro' : 'rw'] }];
}
