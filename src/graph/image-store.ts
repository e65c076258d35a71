/**
 * Images: loaded from `docker save` and OCI archives onto the layer store, listed, removed
 * and saved as `docker save` tarballs. An image's layers are layer-store layers named by
 * their chain ID (hex), each a snapshot of the one below, the lowest a snapshot of the base
 * device; two images with the same bottom layers share them.
 *
 * - load: the archive is spooled and checked (image-archive-*.ts), then, under an intent
 *   naming every layer it may create, each missing layer is created and its tar applied;
 *   the records come last. A failure removes the layers this load created, and nothing else.
 * - remove: a tag of an image with other tags is only untagged; otherwise the record goes,
 *   then every layer of it that no other image or container uses.
 * - save: each layer's tar replayed byte for byte from its tar-split record (so the image
 *   keeps its id), or its diff against the one below; Docker's `docker save` layout.
 */

import type { Readable, Writable } from 'node:stream';
import { BusyError, NotFoundError } from '../util/index.js';
import {
  type ArchiveImage,
  type ArchiveLayer,
  imagesOfArchive,
  openLayer,
} from './image-archive-read.js';
import { spoolArchive } from './image-archive-spool.js';
import { type SavedImage, writeDockerSave } from './image-archive-write.js';
import { parseImageConfig } from './image-config.js';
import { chainIds, type Digest, digestHex } from './image-digest.js';
import type { ImageLayers } from './image-layers.js';
import {
  type GraphRecords,
  type ImageLayerRecord,
  type ImageRecord,
  layersInUse,
} from './image-records.js';
import { parseImageRef } from './image-ref.js';
import { applyRecorded, removeRecorded, savedLayer } from './recorded-layers.js';

export type ImageProgress =
  | { phase: 'read'; bytes: number }
  | { phase: 'apply'; layer: number; layers: number; bytes: number; total: number }
  | { phase: 'write'; bytes: number };

/** One load's state: what the records use, what it made, its progress. */
interface LoadRun {
  readonly used: Set<string>;
  /** Sizes of the layers the records name and of those this load made. */
  readonly sizes: Map<string, number>;
  /** Layers this load made, in order. */
  readonly created: string[];
  readonly progress: Extract<ImageProgress, { phase: 'apply' }>;
  readonly onProgress: ((p: ImageProgress) => void) | undefined;
}

export interface LoadedImage {
  id: Digest;
  tags: string[];
  layers: number;
  /** Layers this load created (the others were there already). */
  created: number;
}

export interface ImageListing {
  id: Digest;
  tags: string[];
  /** Summed sizes of the layers' tar entries. */
  size: number;
  created: string | null;
  /** The image whose layers are the longest proper prefix of this one's, if any. */
  parent: Digest | null;
  containers: number;
  layers: ImageLayerRecord[];
}

export interface RemovedImage {
  id: Digest;
  untagged: string[];
  /** False when only a tag went. */
  deleted: boolean;
  removedLayers: string[];
}

export class ImageStore {
  constructor(
    private readonly records: GraphRecords,
    private readonly layers: ImageLayers,
  ) {}

  /** Loads every image of the archive read from `input`. */
  load(
    input: Readable,
    o: { onProgress?: (p: ImageProgress) => void } = {},
  ): Promise<LoadedImage[]> {
    return this.records.lock.run(async () => {
      const spool = await spoolArchive(input, this.records.tempDir, (bytes) =>
        o.onProgress?.({ phase: 'read', bytes }),
      );
      try {
        return await this.loadChecked(imagesOfArchive(spool), o.onProgress);
      } finally {
        await spool.close();
      }
    });
  }

  list(): Promise<ImageListing[]> {
    return this.records.lock.run(async () => {
      const [images, containers] = [await this.records.images(), await this.records.containers()];
      return images.map((image) =>
        listing(image, images, containers.filter((c) => c.image === image.id).length),
      );
    });
  }

  /** The image `ref` names (a tag, an id, or a unique id prefix). */
  resolve(ref: string): Promise<ImageRecord> {
    return this.records.lock.run(async () => resolveImage(await this.records.images(), ref));
  }

  remove(ref: string): Promise<RemovedImage> {
    return this.records.lock.run(async () => {
      const images = await this.records.images();
      const image = resolveImage(images, ref);
      const match = parseImageRef(ref);
      if (match.kind === 'tag' && image.tags.length > 1) {
        await this.records.writeImage({
          ...image,
          tags: image.tags.filter((t) => t !== match.tag),
        });
        return { id: image.id, untagged: [match.tag], deleted: false, removedLayers: [] };
      }
      const users = (await this.records.containers()).filter((c) => c.image === image.id);
      if (users.length > 0) {
        throw new BusyError(`image ${shortId(image.id)} is used by container ${users[0]?.name}`, {
          hint: `remove the container first ('thinp container remove ${users[0]?.name}')`,
        });
      }
      const removedLayers = await this.deleteImage(image, images);
      return { id: image.id, untagged: image.tags, deleted: true, removedLayers };
    });
  }

  /** Writes the images `refs` name to `out` as a docker save tarball. */
  save(
    refs: readonly string[],
    out: Writable,
    o: { onProgress?: (p: ImageProgress) => void } = {},
  ): Promise<SavedImage[]> {
    return this.records.lock.run(async () => {
      const images = await this.records.images();
      const chosen = refs.map((ref) => {
        const image = resolveImage(images, ref);
        const match = parseImageRef(ref);
        return { image, tags: match.kind === 'tag' ? [match.tag] : [] };
      });
      const toSave = chosen.map(({ image, tags }) => ({
        config: parseImageConfig(Buffer.from(image.config), `image ${shortId(image.id)}`),
        tags,
        layers: image.layers.map((l, i) =>
          savedLayer(this.layers, this.records, l.layer, image.layers[i - 1]?.layer, l.diffId),
        ),
      }));
      return writeDockerSave(out, toSave, this.records.tempDir, (bytes) =>
        o.onProgress?.({ phase: 'write', bytes }),
      );
    });
  }

  // -------------------------------------------------------------------------------------

  private async loadChecked(
    archived: ArchiveImage[],
    onProgress?: (p: ImageProgress) => void,
  ): Promise<LoadedImage[]> {
    const images = await this.records.images();
    const used = layersInUse(images, await this.records.containers());
    const wanted = archived.flatMap((a) => chainIds(a.config.diffIds).map(digestHex));
    const intent = await this.records.beginIntent(
      'image load',
      wanted.filter((l) => !used.has(l)),
    );
    const run = await this.newRun(archived, used, onProgress);
    try {
      const loaded: { archive: ArchiveImage; layers: ImageLayerRecord[]; created: number }[] = [];
      for (const archive of archived) {
        const before = run.created.length;
        const layers = await this.applyLayers(archive, run);
        loaded.push({ archive, layers, created: run.created.length - before });
      }
      const results = await this.writeLoaded(loaded);
      await this.records.endIntent(intent);
      return results;
    } catch (err) {
      await this.removeLayers([...run.created].reverse());
      await this.records.endIntent(intent);
      throw err;
    }
  }

  private async newRun(
    archived: ArchiveImage[],
    used: Set<string>,
    onProgress?: (p: ImageProgress) => void,
  ): Promise<LoadRun> {
    const images = await this.records.images();
    const layers = archived.flatMap((a) => a.layers);
    return {
      used,
      sizes: new Map(images.flatMap((i) => i.layers.map((l) => [l.layer, l.size] as const))),
      created: [],
      progress: {
        phase: 'apply',
        bytes: 0,
        layer: 0,
        layers: layers.length,
        total: layers.reduce((n, l) => n + l.file.uncompressedSize, 0),
      },
      onProgress,
    };
  }

  /** Creates the image's missing layers in order, each a snapshot of the one below. */
  private async applyLayers(archive: ArchiveImage, run: LoadRun): Promise<ImageLayerRecord[]> {
    const chain = chainIds(archive.config.diffIds);
    const out: ImageLayerRecord[] = [];
    for (const [i, layer] of archive.layers.entries()) {
      const chainId = chain[i] as Digest;
      const id = digestHex(chainId);
      run.progress.layer++;
      if (!run.used.has(id) && !run.created.includes(id)) {
        await this.applyLayer(id, out.at(-1)?.layer, layer, run);
      }
      out.push({ chainId, diffId: layer.diffId, layer: id, size: run.sizes.get(id) ?? 0 });
    }
    return out;
  }

  /** Layer `id` on `parent` with `layer`'s tar applied; a leftover of a crash is replaced. */
  private async applyLayer(
    id: string,
    parent: string | undefined,
    layer: ArchiveLayer,
    run: LoadRun,
  ): Promise<void> {
    if (this.layers.exists(id)) await this.layers.remove(id);
    run.created.push(id);
    await this.layers.create(id, parent);
    const start = run.progress.bytes;
    const size = await applyRecorded(
      this.layers,
      this.records,
      id,
      parent,
      openLayer(layer),
      (bytes) => {
        run.progress.bytes = start + bytes;
        run.onProgress?.({ ...run.progress });
      },
    );
    run.progress.bytes = start + layer.file.uncompressedSize;
    run.sizes.set(id, size);
  }

  private async writeLoaded(
    loaded: { archive: ArchiveImage; layers: ImageLayerRecord[]; created: number }[],
  ): Promise<LoadedImage[]> {
    const out: LoadedImage[] = [];
    for (const { archive, layers, created } of loaded) {
      const record = await this.tagged({
        id: archive.config.digest,
        tags: [...archive.tags],
        config: archive.config.bytes.toString('utf8'),
        layers,
        loaded: new Date().toISOString(),
      });
      out.push({ id: record.id, tags: [...archive.tags], layers: layers.length, created });
    }
    return out;
  }

  /**
   * Writes `image`, merged with the record of the same id if there is one, after taking its
   * tags from any other image (a tag names one image; the other keeps its other tags, or none).
   */
  async tagged(image: ImageRecord): Promise<ImageRecord> {
    const images = await this.records.images();
    for (const other of images) {
      if (other.id === image.id) continue;
      const kept = other.tags.filter((t) => !image.tags.includes(t));
      if (kept.length !== other.tags.length)
        await this.records.writeImage({ ...other, tags: kept });
    }
    const existing = images.find((i) => i.id === image.id);
    const tags = [...new Set([...(existing?.tags ?? []), ...image.tags])];
    const record = { ...(existing ?? image), tags };
    await this.records.writeImage(record);
    return record;
  }

  private async deleteImage(image: ImageRecord, images: ImageRecord[]): Promise<string[]> {
    const candidates = image.layers.map((l) => l.layer).reverse();
    const intent = await this.records.beginIntent('image remove', candidates);
    await this.records.removeImage(image.id);
    const used = layersInUse(
      images.filter((i) => i.id !== image.id),
      await this.records.containers(),
    );
    const removed = await this.removeLayers(candidates.filter((l) => !used.has(l)));
    await this.records.endIntent(intent);
    return removed;
  }

  /** Removes `ids` in order (top first); resolves with those that were there. */
  private removeLayers(ids: readonly string[]): Promise<string[]> {
    return removeRecorded(this.layers, this.records, ids);
  }
}

// ---------------------------------------------------------------------------------------

export function shortId(id: Digest): string {
  return digestHex(id).slice(0, 12);
}

/** The image `ref` names among `images`. */
export function resolveImage(images: readonly ImageRecord[], ref: string): ImageRecord {
  const match = parseImageRef(ref);
  if (match.kind === 'id') {
    const found = images.find((i) => digestHex(i.id) === match.hex);
    if (found !== undefined) return found;
  } else if (match.kind === 'prefix') {
    const found = images.filter((i) => digestHex(i.id).startsWith(match.hex));
    if (found.length === 1) return found[0] as ImageRecord;
    if (found.length > 1) {
      throw new NotFoundError(`${ref} is the start of ${found.length} image ids`, {
        hint: 'give more of the id, or a tag',
      });
    }
  }
  const tag = match.kind === 'tag' ? match.tag : `${ref}:latest`;
  const byTag = images.find((i) => i.tags.includes(tag));
  if (byTag !== undefined) return byTag;
  throw new NotFoundError(`there is no image ${ref}`, {
    hint: "list the images with 'thinp image list', or load one with 'thinp image load -i FILE'",
  });
}

function listing(
  image: ImageRecord,
  images: readonly ImageRecord[],
  containers: number,
): ImageListing {
  return {
    id: image.id,
    tags: image.tags,
    size: image.layers.reduce((n, l) => n + l.size, 0),
    created: createdOf(image.config),
    parent: parentOf(image, images),
    containers,
    layers: image.layers,
  };
}

function createdOf(config: string): string | null {
  const created = (JSON.parse(config) as { created?: unknown }).created;
  return typeof created === 'string' ? created : null;
}

/** The image whose layer chain is the longest proper prefix of `image`'s. */
function parentOf(image: ImageRecord, images: readonly ImageRecord[]): Digest | null {
  let best: ImageRecord | undefined;
  for (const other of images) {
    const n = other.layers.length;
    if (n === 0 || n >= image.layers.length || (best !== undefined && n <= best.layers.length))
      continue;
    if (other.layers[n - 1]?.chainId === image.layers[n - 1]?.chainId) best = other;
  }
  return best?.id ?? null;
}
