/**
 * The JSON files of a Docker devicemapper root, parsed: the device records of the driver
 * (`devicemapper/metadata/<hash>`), the image store (`image/devicemapper/imagedb`, `layerdb`,
 * `repositories.json`) and the containers (`containers/<id>/config.v2.json`), in the formats
 * Docker 1.10 to 20.10 write. Each parser takes the file's text and its path (named in
 * errors) and checks the fields rescue uses; everything else is passed over.
 */

import { LegacyRecordError } from './errors.js';

/** `devicemapper/metadata/<hash>`: one thin device of the driver (`base` is hash ""). */
export interface DeviceRecord {
  deviceId: number;
  size: number;
  transactionId: number;
  initialized: boolean;
  deleted: boolean;
}

/** `layerdb/sha256/<chain>/`: one image layer. */
export interface LayerRecord {
  chainId: string;
  diffId: string;
  /** The parent layer's chain id; undefined for a bottom layer. */
  parent: string | undefined;
  /** The graphdriver id: the devicemapper device's hash. */
  cacheId: string;
  /** Docker's recorded size of the layer's diff, in bytes. */
  size: number;
}

/** `layerdb/mounts/<container>/`: a container's read-write layer. */
export interface MountRecord {
  container: string;
  mountId: string;
  initId: string | undefined;
  /** The chain id of the image layer below it. */
  parent: string | undefined;
}

/** `containers/<id>/config.v2.json`, the fields rescue uses. */
export interface ContainerConfig {
  id: string;
  /** Without Docker's leading slash. */
  name: string;
  /** The image id, `sha256:<hex>`. */
  image: string;
  driver: string;
  /** RFC 3339, as Docker wrote it ('' when absent). */
  created: string;
}

/** `devicemapper/metadata/deviceset-metadata`. */
export interface DeviceSetRecord {
  nextDeviceId: number;
  baseDeviceUuid: string;
  baseDeviceFilesystem: string;
}

export function parseDeviceSet(content: string, file: string): DeviceSetRecord {
  const json = parseJson(content, file);
  return {
    nextDeviceId: natural(json, 'next_device_id', file),
    baseDeviceUuid: typeof json.BaseDeviceUUID === 'string' ? json.BaseDeviceUUID : '',
    baseDeviceFilesystem:
      typeof json.BaseDeviceFilesystem === 'string' ? json.BaseDeviceFilesystem : '',
  };
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

function parseJson(text: string, file: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new LegacyRecordError(file, 'is not valid JSON', cause);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new LegacyRecordError(file, 'is not a JSON object');
  }
  return value as Record<string, unknown>;
}

function natural(json: Record<string, unknown>, key: string, file: string): number {
  const v = json[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new LegacyRecordError(file, `has no whole number "${key}"`);
  }
  return v;
}

function text(json: Record<string, unknown>, key: string, file: string): string {
  const v = json[key];
  if (typeof v !== 'string' || v === '') throw new LegacyRecordError(file, `has no "${key}"`);
  return v;
}

/** A digest `sha256:<64 hex>` from a file's text (trailing whitespace allowed). */
export function parseDigestText(content: string, file: string): string {
  const v = content.trim();
  if (!DIGEST.test(v)) throw new LegacyRecordError(file, 'does not hold a sha256 digest');
  return v;
}

export function parseDeviceRecord(content: string, file: string): DeviceRecord {
  const json = parseJson(content, file);
  return {
    deviceId: natural(json, 'device_id', file),
    size: natural(json, 'size', file),
    transactionId: natural(json, 'transaction_id', file),
    initialized: json.initialized === true,
    deleted: json.deleted === true,
  };
}

/** The layer directory's files, by name (`parent` absent for a bottom layer). */
export function parseLayerRecord(
  chainId: string,
  files: { diff: string; parent?: string; 'cache-id': string; size?: string },
  dir: string,
): LayerRecord {
  const cacheId = files['cache-id'].trim();
  if (!/^[0-9a-zA-Z][0-9a-zA-Z_.-]*$/.test(cacheId)) {
    throw new LegacyRecordError(`${dir}/cache-id`, 'does not hold a graphdriver id');
  }
  const size = files.size === undefined ? 0 : Number(files.size.trim());
  return {
    chainId,
    diffId: parseDigestText(files.diff, `${dir}/diff`),
    parent:
      files.parent === undefined || files.parent.trim() === ''
        ? undefined
        : parseDigestText(files.parent, `${dir}/parent`),
    cacheId,
    size: Number.isSafeInteger(size) && size >= 0 ? size : 0,
  };
}

/** `repositories.json`: tag (`name:tag`) → image id; digest references are left out. */
export function parseRepositories(content: string, file: string): Map<string, string> {
  const json = parseJson(content, file);
  const repos = json.Repositories ?? {};
  if (typeof repos !== 'object' || repos === null || Array.isArray(repos)) {
    throw new LegacyRecordError(file, 'has no "Repositories" object');
  }
  const tags = new Map<string, string>();
  for (const refs of Object.values(repos as Record<string, unknown>)) {
    if (typeof refs !== 'object' || refs === null) continue;
    for (const [ref, id] of Object.entries(refs as Record<string, unknown>)) {
      if (ref.includes('@') || typeof id !== 'string') continue;
      tags.set(ref, parseDigestText(id, `${file}: ${ref}`));
    }
  }
  return tags;
}

/** An image config's `rootfs.diff_ids`, bottom first. */
export function parseImageDiffIds(content: string, file: string): string[] {
  const json = parseJson(content, file);
  const rootfs = json.rootfs as { diff_ids?: unknown } | undefined;
  if (typeof rootfs !== 'object' || rootfs === null || !Array.isArray(rootfs.diff_ids)) {
    throw new LegacyRecordError(file, 'has no rootfs.diff_ids');
  }
  return rootfs.diff_ids.map((d, i) => parseDigestText(String(d), `${file}: diff_ids[${i}]`));
}

export function parseContainerConfig(content: string, file: string): ContainerConfig {
  const json = parseJson(content, file);
  return {
    id: text(json, 'ID', file),
    name: text(json, 'Name', file).replace(/^\//, ''),
    image: parseDigestText(text(json, 'Image', file), `${file}: Image`),
    driver: typeof json.Driver === 'string' ? json.Driver : '',
    created: typeof json.Created === 'string' ? json.Created : '',
  };
}

/** `devicemapper/metadata/transaction-metadata`: the driver's last opened transaction. */
export interface TransactionRecord {
  openTransactionId: number;
  deviceHash: string;
  deviceId: number;
}

export function parseTransaction(content: string, file: string): TransactionRecord {
  const json = parseJson(content, file);
  return {
    openTransactionId: natural(json, 'open_transaction_id', file),
    deviceHash: typeof json.device_hash === 'string' ? json.device_hash : '',
    deviceId: natural(json, 'device_id', file),
  };
}
