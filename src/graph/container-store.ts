/**
 * Containers, as Docker makes them on a graphdriver: an init layer `<id>-init`, a read-write
 * snapshot of the image's top layer holding Docker's init files (init-layer.ts), and the
 * container's own read-write layer `<id>` on top of it. Its changes, its diff and `commit`
 * are all against the init layer, so the init files never show.
 *
 * - create: intent naming both layers, the layers, then the record.
 * - remove: the record is marked `removing`, the layers go (deferred while mounted), then
 *   the record; a crash in between is finished at open (graph-settle.ts).
 * - commit: the diff is spooled and hashed (its diffID gives the new layer's chain ID), then
 *   applied as a new layer on the image's top layer and recorded as a new image.
 */

import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BadInputError, ExistsError, NotFoundError } from '../util/index.js';
import { committedConfig, parseImageConfig } from './image-config.js';
import { chainIds, type Digest, digestHex } from './image-digest.js';
import type { ImageLayers, LayerChange } from './image-layers.js';
import { type ContainerRecord, containerLayers, type GraphRecords } from './image-records.js';
import { checkTag, normalizeTag } from './image-ref.js';
import { type ImageStore, resolveImage } from './image-store.js';
import { setupInitLayer } from './init-layer.js';
import { applyRecorded, removeRecorded } from './recorded-layers.js';

export interface ContainerListing {
  id: string;
  name: string;
  image: Digest;
  imageTags: string[];
  created: string;
  /** Bytes of its changes against the init layer (DiffSize). */
  size: number;
  layers: { init: string; rw: string };
}

export interface CommittedImage {
  id: Digest;
  tags: string[];
  diffId: Digest;
  layer: string;
  size: number;
}

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

export class ContainerStore {
  constructor(
    private readonly records: GraphRecords,
    private readonly layers: ImageLayers,
    private readonly images: ImageStore,
  ) {}

  create(imageRef: string, o: { name?: string; size?: number } = {}): Promise<ContainerRecord> {
    return this.records.lock.run(async () => {
      const image = resolveImage(await this.records.images(), imageRef);
      const id = randomBytes(32).toString('hex');
      const name = o.name ?? `thinp-${id.slice(0, 12)}`;
      await this.checkName(name);
      const { init, rw } = containerLayers({ id });
      const top = image.layers.at(-1)?.layer;
      const intent = await this.records.beginIntent('container create', [rw, init]);
      const sized = o.size === undefined ? {} : { size: o.size };
      try {
        await this.layers.createReadWrite(init, top, sized);
        await this.initialize(init, name);
        await this.layers.createReadWrite(rw, init, sized);
        const record: ContainerRecord = {
          id,
          name,
          image: image.id,
          created: new Date().toISOString(),
          size: o.size ?? null,
          state: 'ready',
        };
        await this.records.writeContainer(record);
        await this.records.endIntent(intent);
        return record;
      } catch (err) {
        for (const layer of [rw, init]) await this.layers.remove(layer).catch(() => undefined);
        await this.records.endIntent(intent);
        throw err;
      }
    });
  }

  /** Mounts the container's layer; resolves with its root folder. */
  mount(ref: string): Promise<string> {
    return this.records.lock.run(async () => this.layers.get((await this.find(ref)).id));
  }

  unmount(ref: string): Promise<void> {
    return this.records.lock.run(async () => this.layers.put((await this.find(ref)).id));
  }

  remove(ref: string): Promise<{ id: string; name: string; outcome: 'removed' | 'deferred' }> {
    return this.records.lock.run(async () => {
      const c = await this.find(ref);
      await this.records.writeContainer({ ...c, state: 'removing' });
      const outcome = await removeContainerLayers(this.layers, c);
      await this.records.removeContainer(c.id);
      return { id: c.id, name: c.name, outcome };
    });
  }

  list(): Promise<ContainerListing[]> {
    return this.records.lock.run(async () => {
      const images = await this.records.images();
      const out: ContainerListing[] = [];
      for (const c of await this.records.containers()) {
        if (c.state !== 'ready') continue;
        const layers = containerLayers(c);
        out.push({
          id: c.id,
          name: c.name,
          image: c.image,
          imageTags: images.find((i) => i.id === c.image)?.tags ?? [],
          created: c.created,
          size: await this.layers.diffSize(layers.rw, layers.init),
          layers,
        });
      }
      return out;
    });
  }

  /** The container's changes against its init layer (`docker diff`). */
  diff(ref: string): Promise<LayerChange[]> {
    return this.records.lock.run(async () => {
      const { init, rw } = containerLayers(await this.find(ref));
      return this.layers.changes(rw, init);
    });
  }

  /** A new image: the container's image plus one layer of its changes (`docker commit`). */
  commit(ref: string, tag?: string): Promise<CommittedImage> {
    if (tag !== undefined) checkTag(normalizeTag(tag));
    return this.records.lock.run(async () => {
      const c = await this.find(ref);
      const base = resolveImage(await this.records.images(), c.image);
      const spool = path.join(
        this.records.tempDir,
        `commit-${c.id}-${randomBytes(4).toString('hex')}.tar`,
      );
      try {
        const { init, rw } = containerLayers(c);
        const diffId = await spoolDiff(await this.layers.diff(rw, init), spool);
        const config = committedConfig(
          parseImageConfig(Buffer.from(base.config), 'config'),
          diffId,
          {
            created: new Date(),
          },
        );
        const chain = chainIds(config.diffIds);
        const chainId = chain.at(-1) as Digest;
        const layer = digestHex(chainId);
        const parent = base.layers.at(-1)?.layer;
        const { size, intent } = await this.commitLayer(layer, parent, spool);
        const tags = tag === undefined ? [] : [normalizeTag(tag)];
        const record = await this.images.tagged({
          id: config.digest,
          tags,
          config: config.bytes.toString('utf8'),
          layers: [...base.layers, { chainId, diffId, layer, size }],
          loaded: new Date().toISOString(),
        });
        if (intent !== undefined) await this.records.endIntent(intent);
        return { id: record.id, tags: record.tags, diffId, layer, size };
      } finally {
        await rm(spool, { force: true });
      }
    });
  }

  // -------------------------------------------------------------------------------------

  /**
   * Creates layer `id` on `parent` from the spooled tar, unless an image already has it;
   * resolves with its size and the intent to end once a record names it.
   */
  private async commitLayer(
    id: string,
    parent: string | undefined,
    spool: string,
  ): Promise<{ size: number; intent: string | undefined }> {
    const images = await this.records.images();
    const known = images.flatMap((i) => i.layers).find((l) => l.layer === id);
    if (known !== undefined) return { size: known.size, intent: undefined };
    const intent = await this.records.beginIntent('container commit', [id]);
    try {
      if (this.layers.exists(id)) await this.layers.remove(id);
      await this.layers.create(id, parent);
      const tar = createReadStream(spool);
      return { size: await applyRecorded(this.layers, this.records, id, parent, tar), intent };
    } catch (err) {
      await removeRecorded(this.layers, this.records, [id]).catch(() => undefined);
      await this.records.endIntent(intent);
      throw err;
    }
  }

  private async initialize(init: string, name: string): Promise<void> {
    const rootfs = await this.layers.get(init);
    try {
      await setupInitLayer(rootfs, name);
    } finally {
      await this.layers.put(init);
    }
  }

  private async checkName(name: string): Promise<void> {
    if (!NAME.test(name)) {
      throw new BadInputError(`${JSON.stringify(name)} is not a container name`, {
        hint: 'a name is 1 to 128 letters, digits, _ . -, starting with a letter or digit',
      });
    }
    if ((await this.records.containers()).some((c) => c.name === name)) {
      throw new ExistsError(`there is already a container named ${name}`, {
        hint: 'give another --name, or remove that container first',
      });
    }
  }

  /** The container `ref` names: its name, its id, or a unique prefix of the id. */
  private async find(ref: string): Promise<ContainerRecord> {
    const all = (await this.records.containers()).filter((c) => c.state === 'ready');
    const byName = all.find((c) => c.name === ref || c.id === ref);
    if (byName !== undefined) return byName;
    const byPrefix = ref.length >= 4 ? all.filter((c) => c.id.startsWith(ref)) : [];
    if (byPrefix.length === 1) return byPrefix[0] as ContainerRecord;
    throw new NotFoundError(
      byPrefix.length > 1
        ? `${ref} is the start of ${byPrefix.length} container ids`
        : `there is no container ${ref}`,
      { hint: "list the containers with 'thinp container list'" },
    );
  }
}

/** Removes the container's two layers, the read-write one first. */
export async function removeContainerLayers(
  layers: ImageLayers,
  c: Pick<ContainerRecord, 'id'>,
): Promise<'removed' | 'deferred'> {
  const { init, rw } = containerLayers(c);
  const outcomes = [await layers.remove(rw), await layers.remove(init)];
  return outcomes.includes('deferred') ? 'deferred' : 'removed';
}

/** Writes `tar` to `file`; resolves with its sha256 (the diffID of the layer it makes). */
async function spoolDiff(tar: NodeJS.ReadableStream, file: string): Promise<Digest> {
  const hash = createHash('sha256');
  const tee = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
  await pipeline(tar, tee, createWriteStream(file, { mode: 0o600 }));
  return `sha256:${hash.digest('hex')}`;
}
