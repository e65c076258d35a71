/**
 * The operations on images and containers, once: the interface every front end uses (the
 * CLI, the control API's routes and its client), the table that gives each its HTTP method
 * and path, and the implementation on this process's stores. A command is written once, on
 * `ImageOperations`; whether it runs here or in the daemon is the caller's choice of
 * implementation (`localImageOperations` or the API client's).
 *
 * Arguments and results are plain JSON. Files are named by absolute paths, read and written
 * by whoever runs the operation (the daemon runs as the same user on the same machine).
 */

import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { BadInputError, NotFoundError } from '../util/index.js';
import type { CommittedImage, ContainerListing } from './container-store.js';
import type { Digest } from './image-digest.js';
import type { LayerChange } from './image-layers.js';
import type { ContainerRecord } from './image-records.js';
import type { ImageListing, ImageProgress, LoadedImage, RemovedImage } from './image-store.js';
import type { ImagesAndContainers } from './images.js';

export interface SavedImageSummary {
  id: Digest;
  tags: string[];
  layers: number;
}

export type OnProgress = (p: ImageProgress) => void;

export interface ImageOperations {
  loadImage(a: { input: string }, onProgress?: OnProgress): Promise<LoadedImage[]>;
  listImages(a: Record<string, never>): Promise<ImageListing[]>;
  removeImage(a: { ref: string }): Promise<RemovedImage>;
  saveImage(
    a: { refs: string[]; output: string },
    onProgress?: OnProgress,
  ): Promise<SavedImageSummary[]>;
  createContainer(a: { image: string; name?: string; size?: number }): Promise<ContainerRecord>;
  mountContainer(a: { ref: string }): Promise<{ path: string }>;
  unmountContainer(a: { ref: string }): Promise<{ ref: string }>;
  removeContainer(a: {
    ref: string;
  }): Promise<{ id: string; name: string; outcome: 'removed' | 'deferred' }>;
  listContainers(a: Record<string, never>): Promise<ContainerListing[]>;
  diffContainer(a: { ref: string }): Promise<LayerChange[]>;
  commitContainer(a: { ref: string; tag?: string }): Promise<CommittedImage>;
}

export interface OperationRoute {
  method: 'GET' | 'POST';
  path: string;
  /** Reports progress while it runs (the API streams it). */
  progress?: true;
}

export const IMAGE_OPERATION_ROUTES: { readonly [K in keyof ImageOperations]: OperationRoute } = {
  loadImage: { method: 'POST', path: '/images/load', progress: true },
  listImages: { method: 'GET', path: '/images' },
  removeImage: { method: 'POST', path: '/images/remove' },
  saveImage: { method: 'POST', path: '/images/save', progress: true },
  createContainer: { method: 'POST', path: '/containers/create' },
  mountContainer: { method: 'POST', path: '/containers/mount' },
  unmountContainer: { method: 'POST', path: '/containers/unmount' },
  removeContainer: { method: 'POST', path: '/containers/remove' },
  listContainers: { method: 'GET', path: '/containers' },
  diffContainer: { method: 'POST', path: '/containers/diff' },
  commitContainer: { method: 'POST', path: '/containers/commit' },
};

/** The operations on this process's stores. */
export function localImageOperations(ic: ImagesAndContainers): ImageOperations {
  const { images, containers } = ic;
  return {
    loadImage: async (a, onProgress) =>
      images.load(createReadStream(await requireFile(a.input)), { onProgress }),
    listImages: () => images.list(),
    removeImage: (a) => images.remove(requireString(a.ref, 'ref')),
    saveImage: (a, onProgress) => saveTo(ic, a, onProgress),
    createContainer: (a) =>
      containers.create(requireString(a.image, 'image'), { name: a.name, size: a.size }),
    mountContainer: async (a) => ({ path: await containers.mount(requireString(a.ref, 'ref')) }),
    unmountContainer: async (a) => {
      await containers.unmount(requireString(a.ref, 'ref'));
      return { ref: a.ref };
    },
    removeContainer: (a) => containers.remove(requireString(a.ref, 'ref')),
    listContainers: () => containers.list(),
    diffContainer: (a) => containers.diff(requireString(a.ref, 'ref')),
    commitContainer: (a) => containers.commit(requireString(a.ref, 'ref'), a.tag),
  };
}

/** Writes to a temporary file beside `output`, renamed over it once complete. */
async function saveTo(
  ic: ImagesAndContainers,
  a: { refs: string[]; output: string },
  onProgress?: OnProgress,
): Promise<SavedImageSummary[]> {
  const output = requirePath(a.output, 'output');
  if (!Array.isArray(a.refs) || a.refs.length === 0) {
    throw new BadInputError('image save needs at least one image', {
      hint: 'name an image: a tag or an id',
    });
  }
  const temp = `${output}.thinp-partial`;
  try {
    const saved = await ic.images.save(a.refs, createWriteStream(temp, { mode: 0o644 }), {
      onProgress,
    });
    await rename(temp, output);
    return saved.map((s) => ({
      id: s.config.digest,
      tags: [...s.tags],
      layers: s.layerFiles.length,
    }));
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

function requireString(value: unknown, name: string): string {
  if (typeof value === 'string' && value !== '') return value;
  throw new BadInputError(`${name} is missing`, { hint: `give ${name} as a string` });
}

function requirePath(value: unknown, name: string): string {
  const path = requireString(value, name);
  if (path.startsWith('/')) return path;
  throw new BadInputError(`${name} ${JSON.stringify(path)} is not an absolute path`, {
    hint: 'the daemon runs elsewhere: give an absolute path',
  });
}

async function requireFile(value: unknown): Promise<string> {
  const path = requirePath(value, 'input');
  const found = await stat(path).catch(() => undefined);
  if (found?.isFile() !== true) {
    throw new NotFoundError(`there is no file ${path}`, {
      hint: "give the path of an image archive (made by 'docker save' or an OCI tool)",
    });
  }
  return path;
}
