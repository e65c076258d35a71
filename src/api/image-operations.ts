/**
 * The image and container operations of StorageOperations (operations.ts), carried out on
 * the images and containers of the layer store (graph/images.ts) by `ImageEngine`, for the
 * StorageEngine. Their routes (image-operation-table.ts):
 *
 *     GET    /images                       listImages
 *     POST   /images                       loadImage          archive body → [loaded]
 *     DELETE /images/REF                   removeImage        → {id, untagged, deleted, removedLayers}
 *     POST   /images/save                  saveImage          {refs} → a docker save tarball
 *     GET    /containers                   listContainers
 *     POST   /containers                   createContainer    {image, name?, size?} → 201
 *     DELETE /containers/REF               removeContainer    → {id, name, outcome}
 *     POST   /containers/REF/mount         mountContainer     → {path}
 *     POST   /containers/REF/unmount       unmountContainer   → 204
 *     GET    /containers/REF/changes       containerChanges
 *     POST   /containers/REF/commit        commitContainer    {tag?} → the new image
 */

import { PassThrough, type Readable } from 'node:stream';
import type {
  Change,
  CommittedImage,
  ContainerListing,
  ContainerRecord,
  ImageListing,
  ImagesAndContainers,
  LoadedImage,
  RemovedImage,
} from '../graph/index.js';
import { BadInputError, UnavailableError } from '../util/index.js';

export interface ContainerSpec {
  name?: string;
  /** Bytes; at least the image's size. */
  size?: number;
}

export interface RemovedContainer {
  id: string;
  name: string;
  outcome: 'removed' | 'deferred';
}

export interface ImageOperations {
  /** Loads every image of a docker save tarball or an OCI image layout archive. */
  loadImage(archive: Readable): Promise<LoadedImage[]>;
  listImages(): Promise<ImageListing[]>;
  removeImage(ref: string): Promise<RemovedImage>;
  /** The images as a docker save tarball; fails before the first byte for an unknown ref. */
  saveImage(refs: string[]): Promise<Readable>;
  createContainer(image: string, spec: ContainerSpec): Promise<ContainerRecord>;
  /** Mounts the container's layer (one more reference); resolves with its root folder. */
  mountContainer(ref: string): Promise<string>;
  unmountContainer(ref: string): Promise<void>;
  removeContainer(ref: string): Promise<RemovedContainer>;
  listContainers(): Promise<ContainerListing[]>;
  /** The container's changes against its init layer (`docker diff`). */
  containerChanges(ref: string): Promise<Change[]>;
  /** A new image: the container's image and a layer of its changes (`docker commit`). */
  commitContainer(ref: string, tag: string | undefined): Promise<CommittedImage>;
}

export type ImageOperationName = keyof ImageOperations;

/** ImageOperations on the stores `open` gives (opened on first use). */
export class ImageEngine implements ImageOperations {
  constructor(private readonly open: (() => Promise<ImagesAndContainers>) | undefined) {}

  loadImage = async (archive: Readable) => (await this.stores()).images.load(archive);
  listImages = async () => (await this.stores()).images.list();
  removeImage = async (ref: string) => (await this.stores()).images.remove(ref);
  createContainer = async (image: string, spec: ContainerSpec) =>
    (await this.stores()).containers.create(image, spec);
  mountContainer = async (ref: string) => (await this.stores()).containers.mount(ref);
  unmountContainer = async (ref: string) => (await this.stores()).containers.unmount(ref);
  removeContainer = async (ref: string) => (await this.stores()).containers.remove(ref);
  listContainers = async () => (await this.stores()).containers.list();
  containerChanges = async (ref: string) => (await this.stores()).containers.diff(ref);
  commitContainer = async (ref: string, tag: string | undefined) =>
    (await this.stores()).containers.commit(ref, tag);

  async saveImage(refs: string[]): Promise<Readable> {
    const { images } = await this.stores();
    if (refs.length === 0) {
      throw new BadInputError('image save needs at least one image', {
        hint: 'name an image: a tag or an id',
      });
    }
    for (const ref of refs) await images.resolve(ref);
    const out = new PassThrough();
    images.save(refs, out).catch((err: Error) => out.destroy(err));
    return out;
  }

  private stores(): Promise<ImagesAndContainers> {
    if (this.open === undefined) {
      throw new UnavailableError('images and containers are not open here', {
        hint: "run the command with the thinp daemon running ('thinp daemon')",
      });
    }
    return this.open();
  }
}
