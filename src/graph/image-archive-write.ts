/**
 * Writes images as a `docker save` tarball in the classic layout, which every `docker load`
 * since 1.10 reads: `<diffID hex>/layer.tar` per layer (uncompressed), `<config hex>.json`,
 * `manifest.json` and `repositories`. A layer's tar comes from the layer store and may not
 * reproduce the bytes it was loaded from, so each is spooled to a temporary file while its
 * digest and size are taken (a tar entry needs its size first), then copied into the output;
 * the config's rootfs.diff_ids are set to the digests actually written, which gives the image
 * a new id when a layer's bytes changed. A layer may come with the diffID its bytes should
 * have and a fallback for when they do not (tar-split.ts replays, the diff falls back).
 */

import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { type Readable, Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { type ImageConfig, withDiffIds } from './image-config.js';
import { type Digest, digestHex } from './image-digest.js';

export type OpenTar = () => Promise<NodeJS.ReadableStream>;

/**
 * A layer's uncompressed tar, opened when it is written: `open` should give the bytes whose
 * digest is `diffId`; when it fails or gives other bytes, `fallback` is written instead.
 */
export interface SaveLayer {
  readonly open: OpenTar;
  readonly diffId?: Digest;
  readonly fallback?: OpenTar;
}

export interface SaveImage {
  readonly config: ImageConfig;
  readonly tags: readonly string[];
  /** Bottom first. */
  readonly layers: readonly (OpenTar | SaveLayer)[];
}

export interface SavedImage {
  /** The config written, whose diffIDs are those of the layers written. */
  readonly config: ImageConfig;
  readonly tags: readonly string[];
  readonly layerFiles: readonly string[];
}

/** Writes `images` to `out` as one docker save tarball; spools layers under `tempParent`. */
export async function writeDockerSave(
  out: Writable,
  images: readonly SaveImage[],
  tempParent: string,
  onProgress?: (bytesWritten: number) => void,
): Promise<SavedImage[]> {
  const spool = await mkdtemp(path.join(tempParent, 'save-'));
  const pack = tar.pack();
  const written = countBytes(onProgress);
  const output = pipeline(pack as unknown as Readable, written, out);
  output.catch(() => undefined);
  try {
    const saved: SavedImage[] = [];
    const done = new Set<string>();
    for (const image of images) saved.push(await writeImage(pack, image, spool, done));
    await addEntry(pack, 'manifest.json', Buffer.from(JSON.stringify(manifestOf(saved))));
    await addEntry(pack, 'repositories', Buffer.from(JSON.stringify(repositoriesOf(saved))));
    pack.finalize();
    await output;
    return saved;
  } catch (err) {
    pack.destroy(err as Error);
    await output.catch(() => undefined);
    throw err;
  } finally {
    await rm(spool, { recursive: true, force: true });
  }
}

async function writeImage(
  pack: tar.Pack,
  image: SaveImage,
  spool: string,
  done: Set<string>,
): Promise<SavedImage> {
  const diffIds: Digest[] = [];
  const layerFiles: string[] = [];
  for (const layer of image.layers) {
    const file = path.join(spool, 'layer.tar');
    const { digest, size } = await spoolChecked(
      typeof layer === 'function' ? { open: layer } : layer,
      file,
    );
    const name = `${digestHex(digest)}/layer.tar`;
    if (!done.has(name)) {
      await addDirectory(pack, digestHex(digest));
      await addFile(pack, name, file, size);
      done.add(name);
    }
    await rm(file, { force: true });
    diffIds.push(digest);
    layerFiles.push(name);
  }
  const config = withDiffIds(image.config, diffIds);
  const configName = `${digestHex(config.digest)}.json`;
  if (!done.has(configName)) await addEntry(pack, configName, config.bytes);
  done.add(configName);
  return { config, tags: image.tags, layerFiles };
}

function manifestOf(saved: readonly SavedImage[]): unknown {
  return saved.map((s) => ({
    Config: `${digestHex(s.config.digest)}.json`,
    RepoTags: s.tags.length === 0 ? null : s.tags,
    Layers: s.layerFiles,
  }));
}

/** The legacy `repositories` file: repository → tag → the top layer's folder. */
function repositoriesOf(saved: readonly SavedImage[]): Record<string, Record<string, string>> {
  const repos: Record<string, Record<string, string>> = {};
  for (const s of saved) {
    const top = s.layerFiles.at(-1);
    if (top === undefined) continue;
    for (const tag of s.tags) {
      const at = tag.lastIndexOf(':');
      const repo = tag.slice(0, at);
      repos[repo] = { ...repos[repo], [tag.slice(at + 1)]: path.posix.dirname(top) };
    }
  }
  return repos;
}

// ---------------------------------------------------------------------------------------

/** Spools `layer.open()`, or its fallback when that fails or its digest is not the one expected. */
async function spoolChecked(
  layer: SaveLayer,
  file: string,
): Promise<{ digest: Digest; size: number }> {
  if (layer.fallback === undefined) return spoolLayer(await layer.open(), file);
  try {
    const spooled = await spoolLayer(await layer.open(), file);
    if (layer.diffId === undefined || spooled.digest === layer.diffId) return spooled;
  } catch {
    // the fallback below writes the layer
  }
  return spoolLayer(await layer.fallback(), file);
}

async function spoolLayer(
  layer: NodeJS.ReadableStream,
  file: string,
): Promise<{ digest: Digest; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  const tee = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  await pipeline(layer, tee, createWriteStream(file, { mode: 0o600 }));
  return { digest: `sha256:${hash.digest('hex')}`, size };
}

const EPOCH = new Date(0);

function addEntry(pack: tar.Pack, name: string, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry({ name, size: data.length, mode: 0o644, mtime: EPOCH }, data, (err) =>
      err ? reject(err) : resolve(),
    );
  });
}

function addDirectory(pack: tar.Pack, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry({ name, type: 'directory', mode: 0o755, mtime: EPOCH }, (err) =>
      err ? reject(err) : resolve(),
    );
  });
}

function addFile(pack: tar.Pack, name: string, file: string, size: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const entry = pack.entry({ name, size, mode: 0o644, mtime: EPOCH }, (err) =>
      err ? reject(err) : resolve(),
    );
    const input = createReadStream(file);
    input.on('error', (err) => {
      entry.destroy(err);
      reject(err);
    });
    input.pipe(entry as unknown as Writable);
  });
}

function countBytes(onProgress?: (bytesWritten: number) => void): Transform {
  let total = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      total += chunk.length;
      onProgress?.(total);
      done(null, chunk);
    },
  });
}
