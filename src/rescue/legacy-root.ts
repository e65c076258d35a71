/**
 * A Docker devicemapper root on disk, read: where its pool is (the loop files
 * `devicemapper/devicemapper/{data,metadata}`, or direct-lvm devices given by path), its
 * device records, and the image store and containers that name those devices. Reads only.
 *
 * Layout (Docker 1.10 to 20.10, `<root>` = /var/lib/docker):
 *   <root>/devicemapper/devicemapper/{data,metadata}     the pool (loop mode)
 *   <root>/devicemapper/metadata/<hash>, base            device records (JSON)
 *   <root>/image/devicemapper/imagedb/content/sha256/<id> image configs
 *   <root>/image/devicemapper/layerdb/sha256/<chain>/     diff, parent, cache-id, size
 *   <root>/image/devicemapper/layerdb/mounts/<ctr>/       mount-id, init-id, parent
 *   <root>/image/devicemapper/repositories.json          tags
 *   <root>/containers/<id>/config.v2.json                names and images
 */

import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { NotFoundError } from '../util/index.js';
import { NotDockerRootError } from './errors.js';
import {
  type ContainerConfig,
  type DeviceRecord,
  type DeviceSetRecord,
  type LayerRecord,
  type MountRecord,
  parseContainerConfig,
  parseDeviceRecord,
  parseDeviceSet,
  parseImageDiffIds,
  parseLayerRecord,
  parseRepositories,
  parseTransaction,
  type TransactionRecord,
} from './legacy-records.js';

/** Where the pool of a legacy root is. */
export interface LegacyPaths {
  root: string;
  dataFile: string;
  metadataFile: string;
  /** `<root>/devicemapper/metadata`: the device records. */
  recordsDir: string;
  imageDir: string;
  containersDir: string;
}

export interface LegacyImage {
  id: string;
  config: Buffer;
  diffIds: string[];
  /** Chain ids, bottom first. */
  chain: string[];
  tags: string[];
}

export interface LegacyContainer extends ContainerConfig {
  mount: MountRecord | undefined;
}

/** Everything rescue knows of a legacy root. */
export interface LegacyCatalog {
  paths: LegacyPaths;
  /** `deviceset-metadata`: the base device's UUID and filesystem (undefined if absent). */
  deviceSet: DeviceSetRecord | undefined;
  /** `transaction-metadata`: the driver's last opened transaction (undefined if absent). */
  transaction: TransactionRecord | undefined;
  devices: Map<string, DeviceRecord>;
  layers: Map<string, LayerRecord>;
  images: LegacyImage[];
  containers: LegacyContainer[];
}

/** The root's paths, checked; `data`/`metadata` override the loop files (direct-lvm). */
export async function locateRoot(
  root: string,
  devices: { data?: string; metadata?: string } = {},
): Promise<LegacyPaths> {
  const dm = path.join(root, 'devicemapper');
  const paths: LegacyPaths = {
    root,
    dataFile: devices.data ?? path.join(dm, 'devicemapper', 'data'),
    metadataFile: devices.metadata ?? path.join(dm, 'devicemapper', 'metadata'),
    recordsDir: path.join(dm, 'metadata'),
    imageDir: path.join(root, 'image', 'devicemapper'),
    containersDir: path.join(root, 'containers'),
  };
  if (!(await isDir(paths.recordsDir))) throw new NotDockerRootError(root, 'devicemapper/metadata');
  for (const [file, given, name] of [
    [paths.dataFile, devices.data, 'devicemapper/devicemapper/data'],
    [paths.metadataFile, devices.metadata, 'devicemapper/devicemapper/metadata'],
  ] as const) {
    if (await exists(file)) continue;
    if (given === undefined) throw new NotDockerRootError(root, name);
    throw new NotFoundError(`${given} does not exist`, {
      hint: 'give the pool data device with --data and its metadata device with --metadata',
    });
  }
  return paths;
}

/** Reads the device records, layers, images and containers of the root at `paths`. */
export async function readCatalog(paths: LegacyPaths): Promise<LegacyCatalog> {
  const layers = await readLayers(paths.imageDir);
  const setFile = path.join(paths.recordsDir, 'deviceset-metadata');
  const setText = await readOptional(setFile);
  const txFile = path.join(paths.recordsDir, 'transaction-metadata');
  const txText = await readOptional(txFile);
  return {
    paths,
    deviceSet: setText === undefined ? undefined : parseDeviceSet(setText, setFile),
    transaction: txText === undefined ? undefined : parseTransaction(txText, txFile),
    devices: await readDevices(paths.recordsDir),
    layers,
    images: await readImages(paths.imageDir),
    containers: await readContainers(paths),
  };
}

async function readDevices(dir: string): Promise<Map<string, DeviceRecord>> {
  const out = new Map<string, DeviceRecord>();
  for (const name of await listDir(dir)) {
    if (name.startsWith('.') || name.endsWith('.migrated')) continue;
    if (name === 'deviceset-metadata' || name === 'transaction-metadata') continue;
    const file = path.join(dir, name);
    out.set(name === 'base' ? '' : name, parseDeviceRecord(await readFile(file, 'utf8'), file));
  }
  return out;
}

async function readLayers(imageDir: string): Promise<Map<string, LayerRecord>> {
  const dir = path.join(imageDir, 'layerdb', 'sha256');
  const out = new Map<string, LayerRecord>();
  for (const hex of await listDir(dir)) {
    if (!/^[0-9a-f]{64}$/.test(hex)) continue;
    const d = path.join(dir, hex);
    const files = {
      diff: await readFile(path.join(d, 'diff'), 'utf8'),
      parent: await readOptional(path.join(d, 'parent')),
      'cache-id': await readFile(path.join(d, 'cache-id'), 'utf8'),
      size: await readOptional(path.join(d, 'size')),
    };
    out.set(`sha256:${hex}`, parseLayerRecord(`sha256:${hex}`, files, d));
  }
  return out;
}

async function readImages(imageDir: string): Promise<LegacyImage[]> {
  const dir = path.join(imageDir, 'imagedb', 'content', 'sha256');
  const repositories = path.join(imageDir, 'repositories.json');
  const text = await readOptional(repositories);
  const tags =
    text === undefined ? new Map<string, string>() : parseRepositories(text, repositories);
  const images: LegacyImage[] = [];
  for (const hex of await listDir(dir)) {
    if (!/^[0-9a-f]{64}$/.test(hex)) continue;
    const file = path.join(dir, hex);
    const config = await readFile(file);
    const diffIds = parseImageDiffIds(config.toString('utf8'), file);
    const id = `sha256:${hex}`;
    images.push({
      id,
      config,
      diffIds,
      chain: chainOf(diffIds),
      tags: [...tags]
        .filter(([, img]) => img === id)
        .map(([tag]) => tag)
        .sort(),
    });
  }
  return images.sort((a, b) => a.id.localeCompare(b.id));
}

/** The chain ids of `diffIds` (a layer the layerdb lacks is reported by whoever needs it). */
function chainOf(diffIds: readonly string[]): string[] {
  const chain: string[] = [];
  for (const diffId of diffIds) {
    const below = chain.at(-1);
    chain.push(below === undefined ? diffId : chainIdOf(below, diffId));
  }
  return chain;
}

function chainIdOf(parent: string, diffId: string): string {
  // sha256 of "<parent chain id> <diff id>", as the image spec defines chain ids.
  return `sha256:${createHash('sha256').update(`${parent} ${diffId}`).digest('hex')}`;
}

async function readContainers(paths: LegacyPaths): Promise<LegacyContainer[]> {
  const out: LegacyContainer[] = [];
  for (const id of await listDir(paths.containersDir)) {
    const file = path.join(paths.containersDir, id, 'config.v2.json');
    const text = await readOptional(file);
    if (text === undefined) continue;
    const config = parseContainerConfig(text, file);
    out.push({ ...config, mount: await readMount(paths.imageDir, config.id) });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

async function readMount(imageDir: string, container: string): Promise<MountRecord | undefined> {
  const dir = path.join(imageDir, 'layerdb', 'mounts', container);
  const mountId = await readOptional(path.join(dir, 'mount-id'));
  if (mountId === undefined) return undefined;
  const initId = await readOptional(path.join(dir, 'init-id'));
  const parent = await readOptional(path.join(dir, 'parent'));
  return {
    container,
    mountId: mountId.trim(),
    initId: initId?.trim() || undefined,
    parent: parent?.trim() || undefined,
  };
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

async function readOptional(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function isDir(p: string): Promise<boolean> {
  return (await stat(p).catch(() => undefined))?.isDirectory() === true;
}

async function exists(p: string): Promise<boolean> {
  return (await stat(p).catch(() => undefined)) !== undefined;
}
