/**
 * The records of images and containers, as JSON state files under ROOT/graph (written
 * atomically and durably, as the device set writes its own):
 *
 *   ROOT/graph/images/<config hex>.json      an image: id, tags, config, layer chain
 *   ROOT/graph/containers/<id>.json          a container: name, image, size, state
 *   ROOT/graph/intents/<nonce>.json          layers an operation is creating or removing
 *   ROOT/graph/tar-split/<layer>.split.gz    how to write a layer's tar again, byte for byte
 *
 * Intent first: before an operation creates or removes layers it writes an intent naming
 * them; records are written last; the intent is removed once the layers match the records.
 * At open (graph-settle.ts), an intent left by a crash is settled: every layer it names that
 * no record uses is removed. So a record never names a layer that is missing, and a layer
 * the images made is never left behind unnamed.
 */

import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { listStateFiles, readStateFile, removeStateFile, writeStateFile } from '../driver/index.js';
import { InternalError, Mutex } from '../util/index.js';
import { type Digest, digestHex, isDigest, sha256Digest } from './image-digest.js';

export interface ImageLayerRecord {
  /** The chain ID: this layer and everything below it. */
  readonly chainId: Digest;
  readonly diffId: Digest;
  /** The layer store's id of this layer (the chain ID's hex). */
  readonly layer: string;
  /** Bytes of the layer's tar entries, as applied (Docker's layer Size). */
  readonly size: number;
}

export interface ImageRecord {
  readonly id: Digest;
  readonly tags: string[];
  /** The config's exact bytes (UTF-8 JSON); their sha256 is `id`. */
  readonly config: string;
  /** Bottom first. */
  readonly layers: ImageLayerRecord[];
  readonly loaded: string;
}

export type ContainerState = 'ready' | 'removing';

export interface ContainerRecord {
  readonly id: string;
  readonly name: string;
  readonly image: Digest;
  readonly created: string;
  readonly size: number | null;
  readonly state: ContainerState;
}

export interface IntentRecord {
  readonly op: string;
  /** Layers to remove at open unless a record uses them. */
  readonly layers: string[];
  readonly started: string;
}

/** The container's read-write layer and the init layer below it. */
export function containerLayers(c: Pick<ContainerRecord, 'id'>): { init: string; rw: string } {
  return { init: `${c.id}-init`, rw: c.id };
}

export class GraphRecords {
  /**
   * Held by every operation on images and containers, for its whole length: it protects the
   * records and the layers they name (which layers exist, which are shared, which may go).
   * Taken before any lock of the layer store, never while holding one.
   */
  readonly lock = new Mutex();

  private constructor(private readonly dir: string) {}

  static async open(root: string): Promise<GraphRecords> {
    const dir = path.join(root, 'graph');
    for (const sub of ['images', 'containers', 'intents', 'tar-split', 'tmp']) {
      await mkdir(path.join(dir, sub), { recursive: true, mode: 0o700 });
    }
    return new GraphRecords(dir);
  }

  /** Where layer `layer`'s tar-split record is kept (tar-split.ts). */
  splitFile(layer: string): string {
    return path.join(this.dir, 'tar-split', `${layer}.split.gz`);
  }

  /** Removes the tar-split records a crash left half written (`*.tmp`). */
  async removeUnfinishedSplits(): Promise<void> {
    const dir = path.join(this.dir, 'tar-split');
    for (const name of await readdir(dir)) {
      if (name.endsWith('.tmp')) await rm(path.join(dir, name), { force: true });
    }
  }

  /** A folder for spooled archives and layers (same filesystem as the records). */
  get tempDir(): string {
    return path.join(this.dir, 'tmp');
  }

  async images(): Promise<ImageRecord[]> {
    return (await this.all('images')).map((v) => checkImage(v));
  }

  async containers(): Promise<ContainerRecord[]> {
    return (await this.all('containers')) as ContainerRecord[];
  }

  async intents(): Promise<{ file: string; intent: IntentRecord }[]> {
    const files = await listStateFiles(path.join(this.dir, 'intents'));
    const out: { file: string; intent: IntentRecord }[] = [];
    for (const name of files) {
      const file = path.join(this.dir, 'intents', name);
      const intent = (await readStateFile(file)) as IntentRecord | undefined;
      if (intent !== undefined) out.push({ file, intent });
    }
    return out;
  }

  writeImage(image: ImageRecord): Promise<void> {
    return writeStateFile(this.file('images', digestHex(image.id)), image);
  }

  removeImage(id: Digest): Promise<void> {
    return removeStateFile(this.file('images', digestHex(id)));
  }

  writeContainer(c: ContainerRecord): Promise<void> {
    return writeStateFile(this.file('containers', c.id), c);
  }

  removeContainer(id: string): Promise<void> {
    return removeStateFile(this.file('containers', id));
  }

  /** Writes an intent; resolves with its file, for `endIntent`. */
  async beginIntent(op: string, layers: string[]): Promise<string> {
    const file = this.file('intents', `${Date.now()}-${randomBytes(4).toString('hex')}`);
    await writeStateFile(file, {
      op,
      layers,
      started: new Date().toISOString(),
    } satisfies IntentRecord);
    return file;
  }

  /** Names more layers in an intent (before they are created). */
  async extendIntent(file: string, layers: string[]): Promise<void> {
    const intent = (await readStateFile(file)) as IntentRecord;
    await writeStateFile(file, { ...intent, layers: [...intent.layers, ...layers] });
  }

  endIntent(file: string): Promise<void> {
    return removeStateFile(file);
  }

  private file(kind: string, name: string): string {
    return path.join(this.dir, kind, `${name}.json`);
  }

  private async all(kind: string): Promise<unknown[]> {
    const dir = path.join(this.dir, kind);
    const out: unknown[] = [];
    for (const name of await listStateFiles(dir)) {
      const value = await readStateFile(path.join(dir, name));
      if (value !== undefined) out.push(value);
    }
    return out;
  }
}

/** An image record as read, its config checked against its id. */
function checkImage(value: unknown): ImageRecord {
  const image = value as ImageRecord;
  if (!isDigest(image?.id) || sha256Digest(image.config ?? '') !== image.id) {
    throw new InternalError(`the record of image ${String(image?.id)} does not match its config`, {
      hint: 'remove its file under ROOT/graph/images and load the image again',
    });
  }
  return image;
}

/** The layer store ids every record uses (images' chains, containers' two layers). */
export function layersInUse(
  images: readonly ImageRecord[],
  containers: readonly ContainerRecord[],
): Set<string> {
  const used = new Set<string>();
  for (const image of images) for (const l of image.layers) used.add(l.layer);
  for (const c of containers) {
    if (c.state === 'removing') continue;
    const { init, rw } = containerLayers(c);
    used.add(init);
    used.add(rw);
  }
  return used;
}
