/**
 * The rescue operations on an open session: list the images and containers of a legacy
 * root, export one's filesystem as a tar, save an image as a `docker save` tarball.
 *
 * Sizes are the bytes the thin device maps: for a container its read-write device, for an
 * image its top layer's device; blocks shared with the parent are counted (a total, not an
 * exclusive size). `save` writes each layer as Docker stored it, replaying its tar-split
 * record over its mounted tree, so the image keeps its id; where a record is missing or
 * does not give the layer's diffID, it writes Docker's naive diff between the layer's tree
 * and its parent's instead, and the image gets new diffIDs and a new id.
 */

import path from 'node:path';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { exportDiff } from '../archive/index.js';
import {
  type Digest,
  parseImageConfig,
  replayTar,
  type SavedImage,
  type SaveLayer,
  writeDockerSave,
} from '../graph/index.js';
import { BadInputError } from '../util/index.js';
import { convertTarSplit } from './docker-tar-split.js';
import { deviceOf, layersOf, type Resolved, resolveRef } from './refs.js';
import type { RescueSession } from './session.js';

const TAR_SPLIT = 'tar-split.json.gz';

export interface RescueListing {
  images: Array<{ id: string; tags: string[]; layers: string[]; size: number }>;
  containers: Array<{ id: string; name: string; image: string; size: number }>;
}

export async function listRoot(session: RescueSession): Promise<RescueListing> {
  const { catalog } = session;
  const images: RescueListing['images'] = [];
  for (const image of catalog.images) {
    const top = catalog.layers.get(image.chain.at(-1) ?? '');
    const size = top === undefined ? 0 : await sizeOf(session, top.cacheId);
    images.push({ id: image.id, tags: image.tags, layers: image.chain, size });
  }
  const containers: RescueListing['containers'] = [];
  for (const c of catalog.containers) {
    const size = c.mount === undefined ? 0 : await sizeOf(session, c.mount.mountId);
    containers.push({ id: c.id, name: c.name, image: c.image, size });
  }
  return { images, containers };
}

async function sizeOf(session: RescueSession, hash: string): Promise<number> {
  if (!session.catalog.devices.has(hash)) return 0;
  return session.mappedBytes(hash);
}

/** What `ref` names, checked to exist. */
export function resolve(session: RescueSession, ref: string): Resolved {
  return resolveRef(session.catalog, ref);
}

/** Writes the filesystem `ref` names (its `rootfs/`) to `out` as a tar. */
export async function exportFilesystem(
  session: RescueSession,
  ref: string,
  out: Writable,
): Promise<Resolved> {
  const r = resolveRef(session.catalog, ref);
  const mounted = await session.mount(deviceOf(session.catalog, r));
  await pipeline(exportDiff(mounted.rootfs, undefined), out);
  return r;
}

/** Writes image `ref` to `out` as a docker save tarball. */
export async function saveImage(
  session: RescueSession,
  ref: string,
  out: Writable,
): Promise<SavedImage> {
  const r = resolveRef(session.catalog, ref);
  if (r.kind !== 'image') {
    throw new BadInputError(`${ref} is a container, and save writes images`, {
      hint: "export its filesystem with 'thinp rescue docker export', or save its image",
    });
  }
  const layers = layersOf(session.catalog, r.image);
  const roots: string[] = [];
  for (const layer of layers) roots.push((await session.mount(layer.cacheId)).rootfs);
  const config = parseImageConfig(r.image.config, r.image.id);
  const saveLayers = layers.map((layer, i): SaveLayer => {
    const diff = async () => exportDiff(roots[i] as string, roots[i - 1]);
    return {
      open: () => replayLayer(session, layer.chainId, roots[i] as string),
      diffId: layer.diffId as Digest,
      fallback: diff,
    };
  });
  const saved = await writeDockerSave(
    out,
    [{ config, tags: r.image.tags, layers: saveLayers }],
    session.workDir,
  );
  return saved[0] as SavedImage;
}

/**
 * The layer's tar as Docker stored it, from its tar-split record and its mounted tree; it
 * fails (and the diff is written instead) when there is no record or it does not replay.
 */
async function replayLayer(
  session: RescueSession,
  chainId: string,
  rootfs: string,
): Promise<NodeJS.ReadableStream> {
  const hex = chainId.replace(/^sha256:/, '');
  const from = path.join(session.catalog.paths.imageDir, 'layerdb', 'sha256', hex, TAR_SPLIT);
  const to = path.join(session.workDir, `${hex}.split.gz`);
  await convertTarSplit(from, to);
  return replayTar(to, rootfs);
}
