/**
 * StorageOperations: every operation the `thinp` command carries out on a pool, as one
 * interface with two implementations: `StorageEngine` (engine.ts), which does the work on
 * an open device set and layer store (in the CLI with no daemon running, and behind the
 * daemon's control API), and `ApiClient` (client.ts), which asks the running daemon. A
 * command is written once against this interface, so its output and its errors are the
 * same either way; the API's routes come from the same list (operation-table.ts).
 *
 * Results are plain JSON-shaped values (DESIGN's shapes), never live objects.
 */

import type { Readable } from 'node:stream';
import type { DeviceListing, DockerInfo, PoolDeviceUse, RemoveOutcome } from '../driver/index.js';
import type { Change, LayerListing, LayerMetadata, RemoveLayerOutcome } from '../graph/index.js';
import type { PoolStatus } from '../pool/index.js';
import type { ImageOperations } from './image-operations.js';

export interface PoolSizes {
  dataSize?: number;
  metadataSize?: number;
  /** A block device to add to the data space (direct-lvm). */
  addDevice?: string;
}

/** A new device: an empty one of a size, or a snapshot of an origin. */
export type DeviceSpec =
  | { size: number; origin?: undefined }
  | { origin: string; size?: undefined };

export interface CreatedDevice {
  name: string;
  id: number;
  size: number;
  origin: string | null;
}

/** A new layer: on `parent` (the base device when absent), of `size` bytes at least its parent's. */
export interface LayerSpec {
  parent?: string;
  size?: number;
}

/** The most bytes one `readDevice` or `writeDevice` moves. */
export const MAX_DATA_REQUEST = 32 * 1024 * 1024;

export interface StorageOperations extends ImageOperations {
  poolStatus(): Promise<PoolStatus>;
  /** Grows the data and/or metadata space, or adds a device; resolves with the new status. */
  resizePool(sizes: PoolSizes): Promise<PoolStatus>;
  /** The devices that hold the pool: path, uuid, size, data, metadata and free bytes. */
  poolDevices(): Promise<PoolDeviceUse[]>;
  info(): Promise<DockerInfo>;

  listDevices(): Promise<DeviceListing[]>;
  createDevice(name: string, spec: DeviceSpec): Promise<CreatedDevice>;
  removeDevice(name: string): Promise<RemoveOutcome>;
  /** `length` bytes (to the end, at most MAX_DATA_REQUEST, when undefined) from `offset`. */
  readDevice(name: string, offset: number, length: number | undefined): Promise<Buffer>;
  writeDevice(name: string, offset: number, data: Uint8Array): Promise<void>;
  /** Makes every completed write durable. */
  flushDevice(name: string): Promise<void>;

  listLayers(): Promise<LayerListing[]>;
  createLayer(id: string, spec: LayerSpec): Promise<LayerListing>;
  removeLayer(id: string): Promise<RemoveLayerOutcome>;
  /** Mounts the layer (one more reference); resolves with ROOT/mnt/<id>/rootfs. */
  mountLayer(id: string): Promise<string>;
  /** Drops one reference; the last unmounts. */
  unmountLayer(id: string): Promise<void>;
  layerMetadata(id: string): Promise<LayerMetadata>;
  /** Applies a layer tar; resolves with the summed sizes of its entries. */
  applyLayer(id: string, tar: Readable): Promise<number>;
  /** The tar of the layer's changes against its parent (the whole tree on the base). */
  diffLayer(id: string): Promise<Readable>;
  layerChanges(id: string): Promise<Change[]>;
}

export type OperationName = keyof StorageOperations;
