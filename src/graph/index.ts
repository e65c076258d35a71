/**
 * graph: the storage driver on the device set: the base device with its filesystem, image
 * layers as snapshots of their parent, containers as snapshots of their image, their mounts
 * (reference-counted) and deferred removal. Imports driver, pool, mount, archive, config and
 * util.
 */

export type { Change, ChangeKind } from '../archive/index.js';
export { BaseDeviceMismatchError } from './base-device.js';
export type { CommittedImage, ContainerListing } from './container-store.js';
export type { SettleReport } from './graph-settle.js';
export {
  type OpenTar,
  type SavedImage,
  type SaveImage,
  type SaveLayer,
  writeDockerSave,
} from './image-archive-write.js';
export { type ImageConfig, parseImageConfig } from './image-config.js';
export type { Digest } from './image-digest.js';
export { BadImageArchiveError, DigestMismatchError } from './image-errors.js';
export type { ImageLayers, LayerChange } from './image-layers.js';
export type { ContainerRecord, ImageLayerRecord } from './image-records.js';
export type { ImageListing, ImageProgress, LoadedImage, RemovedImage } from './image-store.js';
export { type ImagesAndContainers, openImagesAndContainers } from './images.js';
export { checkLayerId } from './layer-ids.js';
export { ID_FILE, ROOTFS } from './layer-root.js';
export type {
  ApplyLayerOptions,
  CreateLayerOptions,
  LayerListing,
  LayerMetadata,
  LayerStore,
  RemoveLayerOutcome,
} from './layer-store.js';
export { replayTar } from './tar-split.js';
export { type GraphLog, type LayerStoreOptions, ThinLayerStore } from './thin-layer-store.js';
export type { FilesystemTools, TreeTools } from './tools.js';
