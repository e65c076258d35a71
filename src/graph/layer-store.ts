/**
 * LayerStore: Docker's graphdriver operations (daemon/graphdriver's `Driver` with the naive
 * diff family), as the devicemapper driver carries them out on thin snapshots. It is what
 * Docker's plugin protocol, containerd's snapshotter, `thinp layer` and images and
 * containers sit on.
 *
 * A lifecycle, as `docker load` and `docker run` drive it:
 * - `create('l1', undefined)` snapshots the base device; `applyDiff('l1', undefined, tar)`
 *   unpacks a layer tar into it; `create('l2', 'l1')` + `applyDiff` stack the next layer.
 * - A container: `createReadWrite('c-init', 'l2', { size })`, `get('c-init')` → a path to
 *   write Docker's init files into, `put('c-init')`; then `createReadWrite('c', 'c-init')`,
 *   `get('c')` for as long as it runs, `put('c')` when it stops.
 * - `changes('c', 'c-init')`, `diff('c', 'c-init')` (`docker diff`, `docker commit`),
 *   `diffSize`, then `remove('c')`, `remove('c-init')`, `remove('l2')`...
 *
 * Contracts:
 * - Layer ids are device names (ROOT/metadata/<id>) without '~' (kept for scratch devices);
 *   `base` is the base device, never a layer.
 * - `get` returns ROOT/mnt/<id>/rootfs; gets and puts pair up, the first get mounts, the
 *   last put unmounts (mount-counts.ts).
 * - `applyDiff` leaves the layer as it was when it fails: the tar is applied into a scratch
 *   snapshot, which replaces the layer's device only once complete (DeviceSet.replaceDevice).
 * - `remove` of a mounted layer is refused, or with dm.use_deferred_deletion marks it
 *   deleted and finishes once the last put unmounts it.
 * - All filesystem work on mounted layers runs in child processes (tools.ts).
 */

import type { Change } from '../archive/index.js';

export type RemoveLayerOutcome = 'removed' | 'deferred' | 'absent';

export interface CreateLayerOptions {
  /** Virtual size in bytes; at least the parent's (the filesystem is grown to fill it). */
  size?: number;
  /** SELinux context for mounts (empty when SELinux is off). */
  mountLabel?: string;
}

export interface ApplyLayerOptions {
  /** Told the bytes of tar read so far. */
  onProgress?: (bytesRead: number) => void;
}

/** A layer as `thinp layer list` shows it. */
export interface LayerListing {
  id: string;
  /** The parent layer; null for a layer on the base device. */
  parent: string | null;
  deviceId: number;
  size: number;
  mappedBytes: number;
  exclusiveBytes: number;
  /** Mount references (0 when unmounted). */
  mounts: number;
  /** Removed while mounted: goes once unmounted. */
  deleted: boolean;
}

export interface LayerMetadata {
  DeviceId: string;
  DeviceSize: string;
  DeviceName: string;
}

export interface LayerStore {
  create(id: string, parent: string | undefined, o?: CreateLayerOptions): Promise<void>;
  createReadWrite(id: string, parent: string | undefined, o?: CreateLayerOptions): Promise<void>;
  remove(id: string): Promise<RemoveLayerOutcome>;
  exists(id: string): boolean;
  /** Mounts (or counts) `id`; resolves with ROOT/mnt/<id>/rootfs. */
  get(id: string, mountLabel?: string): Promise<string>;
  put(id: string): Promise<void>;
  metadata(id: string): LayerMetadata;
  /** Applies a layer tar; resolves with the summed sizes of its entries. */
  applyDiff(
    id: string,
    parent: string | undefined,
    tar: NodeJS.ReadableStream,
    o?: ApplyLayerOptions,
  ): Promise<number>;
  /** The tar of `id`'s changes against `parent` (the whole tree without one). */
  diff(id: string, parent: string | undefined): Promise<NodeJS.ReadableStream>;
  changes(id: string, parent: string | undefined): Promise<Change[]>;
  diffSize(id: string, parent: string | undefined): Promise<number>;
  /** devicemapper's Status pairs, in order (DOCKER.md §2.1). */
  status(): Promise<[string, string][]>;
  /** The layers, by id. */
  list(): Promise<LayerListing[]>;
  /** Unmounts every layer (dockerd's shutdown). */
  cleanup(): Promise<void>;
}
