/**
 * StorageEngine: StorageOperations (operations.ts) carried out on an open device set and
 * layer store. The CLI uses one when no daemon runs (its layer store then has no attacher:
 * operations that mount say to start the daemon); the daemon's control API runs every
 * request through one. Changes are published as events and told to `onChange` (the
 * daemon's log).
 */

import type { Readable } from 'node:stream';
import type { Config } from '../config/index.js';
import {
  type AutoextendState,
  type DeviceListing,
  type DeviceSet,
  type DockerInfo,
  deviceListingJson,
  dockerInfo,
  type PoolDeviceUse,
  poolStatusJson,
  type RemoveOutcome,
} from '../driver/index.js';
import type {
  Change,
  ImagesAndContainers,
  LayerListing,
  LayerMetadata,
  RemoveLayerOutcome,
  ThinLayerStore,
} from '../graph/index.js';
import type { PoolStatus, ThinDevice } from '../pool/index.js';
import { BadInputError, NotFoundError, UnavailableError } from '../util/index.js';
import type { EventHub } from './events.js';
import { ImageEngine, type ImageOperations } from './image-operations.js';
import {
  type CreatedDevice,
  type DeviceSpec,
  type LayerSpec,
  MAX_DATA_REQUEST,
  type PoolSizes,
  type StorageOperations,
} from './operations.js';

export interface EngineContext {
  config: Config;
  set: DeviceSet;
  /** The layer store; without one, layer operations are refused. */
  layers?: ThinLayerStore;
  /** Opens (or hands back) the images and containers; without it, their operations are refused. */
  images?: () => Promise<ImagesAndContainers>;
  events?: EventHub;
  /** The daemon's autoextend state, when it runs one. */
  autoextend?: Readonly<AutoextendState>;
  onChange?: (event: string, fields: Record<string, unknown>) => void;
}

export class StorageEngine implements StorageOperations {
  private readonly imageEngine: ImageEngine;

  constructor(private readonly ctx: EngineContext) {
    this.imageEngine = new ImageEngine(ctx.images);
  }

  // -------------------------------------------------------------------------------------
  // Images and containers (image-operations.ts)

  loadImage: ImageOperations['loadImage'] = (archive) => this.imageEngine.loadImage(archive);
  listImages: ImageOperations['listImages'] = () => this.imageEngine.listImages();
  removeImage: ImageOperations['removeImage'] = (ref) => this.imageEngine.removeImage(ref);
  saveImage: ImageOperations['saveImage'] = (refs) => this.imageEngine.saveImage(refs);
  createContainer: ImageOperations['createContainer'] = (image, spec) =>
    this.imageEngine.createContainer(image, spec);
  mountContainer: ImageOperations['mountContainer'] = (ref) => this.imageEngine.mountContainer(ref);
  unmountContainer: ImageOperations['unmountContainer'] = (ref) =>
    this.imageEngine.unmountContainer(ref);
  removeContainer: ImageOperations['removeContainer'] = (ref) =>
    this.imageEngine.removeContainer(ref);
  listContainers: ImageOperations['listContainers'] = () => this.imageEngine.listContainers();
  containerChanges: ImageOperations['containerChanges'] = (ref) =>
    this.imageEngine.containerChanges(ref);
  commitContainer: ImageOperations['commitContainer'] = (ref, tag) =>
    this.imageEngine.commitContainer(ref, tag);

  // -------------------------------------------------------------------------------------
  // Pool

  async poolStatus(): Promise<PoolStatus> {
    return poolStatusJson(this.ctx.set.status());
  }

  async resizePool(sizes: PoolSizes): Promise<PoolStatus> {
    const { set } = this.ctx;
    if (sizes.addDevice !== undefined) {
      await set.addPoolDevice(sizes.addDevice);
      const dataBlocks = set.status().data.totalBlocks;
      this.ctx.events?.publish({ type: 'deviceAdded', path: sizes.addDevice, dataBlocks });
      this.ctx.onChange?.('pool-device-added', { path: sizes.addDevice, dataBlocks });
    }
    if (sizes.dataSize !== undefined) await set.resizeData(sizes.dataSize);
    if (sizes.metadataSize !== undefined) await set.resizeMetadata(sizes.metadataSize);
    const status = set.status();
    this.ctx.events?.publish({
      type: 'poolResized',
      dataBlocks: status.data.totalBlocks,
      metadataBlocks: status.metadata.totalBlocks,
    });
    this.ctx.onChange?.('pool-resized', { ...sizes });
    return poolStatusJson(status);
  }

  async poolDevices(): Promise<PoolDeviceUse[]> {
    return this.ctx.set.heldBy();
  }

  info(): Promise<DockerInfo> {
    return dockerInfo(this.ctx.config, this.ctx.set, this.ctx.autoextend);
  }

  // -------------------------------------------------------------------------------------
  // Devices

  async listDevices(): Promise<DeviceListing[]> {
    return (await this.ctx.set.list()).map(deviceListingJson);
  }

  async createDevice(name: string, spec: DeviceSpec): Promise<CreatedDevice> {
    const { set } = this.ctx;
    const entry =
      spec.origin === undefined
        ? await set.createDevice(name, spec.size)
        : await set.createSnapshot(name, spec.origin);
    const origin = spec.origin;
    this.ctx.events?.publish({
      type: 'deviceCreated',
      name,
      ...(origin === undefined ? {} : { origin }),
    });
    this.ctx.onChange?.('device-created', { device: name, id: entry.id, size: entry.size, origin });
    return { name: entry.name, id: entry.id, size: entry.size, origin: entry.origin ?? null };
  }

  async removeDevice(name: string): Promise<RemoveOutcome> {
    const outcome = await this.ctx.set.removeDevice(name);
    this.ctx.events?.publish({ type: 'deviceRemoved', name, outcome });
    this.ctx.onChange?.('device-removed', { device: name, outcome });
    return outcome;
  }

  readDevice(name: string, offset: number, length: number | undefined): Promise<Buffer> {
    return this.usingDevice(name, async (dev) => {
      const n = length ?? Math.max(0, Math.min(MAX_DATA_REQUEST, dev.size - offset));
      checkDataLength(n);
      const buf = Buffer.allocUnsafe(n);
      await dev.read(buf, offset);
      return buf;
    });
  }

  writeDevice(name: string, offset: number, data: Uint8Array): Promise<void> {
    checkDataLength(data.length);
    return this.usingDevice(name, (dev) =>
      dev.write(Buffer.from(data.buffer, data.byteOffset, data.length), offset),
    );
  }

  flushDevice(name: string): Promise<void> {
    return this.usingDevice(name, (dev) => dev.flush());
  }

  // -------------------------------------------------------------------------------------
  // Layers

  async listLayers(): Promise<LayerListing[]> {
    return this.layers().list();
  }

  async createLayer(id: string, spec: LayerSpec): Promise<LayerListing> {
    const layers = this.layers();
    await layers.create(id, spec.parent, spec.size === undefined ? {} : { size: spec.size });
    this.ctx.onChange?.('layer-created', { layer: id, parent: spec.parent, size: spec.size });
    return this.listing(id);
  }

  async removeLayer(id: string): Promise<RemoveLayerOutcome> {
    const outcome = await this.layers().remove(id);
    this.ctx.onChange?.('layer-removed', { layer: id, outcome });
    return outcome;
  }

  mountLayer(id: string): Promise<string> {
    return this.layers().get(id);
  }

  unmountLayer(id: string): Promise<void> {
    return this.layers().put(id);
  }

  async layerMetadata(id: string): Promise<LayerMetadata> {
    return this.layers().metadata(id);
  }

  applyLayer(id: string, tar: Readable): Promise<number> {
    const layers = this.layers();
    return layers.applyDiff(id, layers.parentOf(id), tar);
  }

  async diffLayer(id: string): Promise<Readable> {
    const layers = this.layers();
    return (await layers.diff(id, layers.parentOf(id))) as Readable;
  }

  layerChanges(id: string): Promise<Change[]> {
    const layers = this.layers();
    return layers.changes(id, layers.parentOf(id));
  }

  // -------------------------------------------------------------------------------------

  private layers(): ThinLayerStore {
    const layers = this.ctx.layers;
    if (layers !== undefined) return layers;
    throw new UnavailableError('layers are not available here', {
      hint: "use the thinp command, or a daemon started with 'thinp daemon'",
    });
  }

  private async listing(id: string): Promise<LayerListing> {
    const found = (await this.layers().list()).find((l) => l.id === id);
    if (found === undefined) {
      throw new NotFoundError(`there is no layer ${id}`, { hint: "'thinp layer list' shows them" });
    }
    return found;
  }

  private async usingDevice<T>(name: string, fn: (dev: ThinDevice) => Promise<T>): Promise<T> {
    const dev = this.ctx.set.open(name);
    try {
      return await fn(dev);
    } finally {
      await this.ctx.set.release(name);
    }
  }
}

function checkDataLength(length: number): void {
  if (length < 0 || length > MAX_DATA_REQUEST) {
    throw new BadInputError(`a data request of ${length} bytes is out of range`, {
      hint: `move at most ${MAX_DATA_REQUEST} bytes a request`,
    });
  }
}
