/**
 * The records of the device set's JSON files, in Docker's field names so that a Docker
 * devicemapper directory reads as a thinp one:
 *
 * | file                           | fields                                                              |
 * | ------------------------------ | ------------------------------------------------------------------- |
 * | metadata/<name>                | device_id, size, transaction_id, initialized, deleted (+ origin, parent) |
 * | metadata/deviceset-metadata    | next_device_id, BaseDeviceUUID, BaseDeviceFilesystem                |
 * | metadata/transaction-metadata  | open_transaction_id, device_hash, device_id                         |
 * | metadata/replace-metadata      | name, replacement, old_device_id, initialized (+ origin, parent), while a replacement runs |
 * | thinp.json                     | mode, blockSize, created, dataFile, metadataFile, version (+ directLvm) |
 *
 * Decoders trust nothing: a missing or mistyped field is a BadInputError naming the file.
 */

import { BadInputError } from '../util/index.js';

export const DEVICE_SET_FILE = 'deviceset-metadata';
export const TRANSACTION_FILE = 'transaction-metadata';
export const REPLACE_FILE = 'replace-metadata';

/** thinp's own files in the metadata folder: never device names. */
export const OWN_FILES: readonly string[] = [DEVICE_SET_FILE, TRANSACTION_FILE, REPLACE_FILE];

export interface DeviceRecord {
  deviceId: number;
  /** Virtual size in bytes (the pool's metadata keeps no sizes). */
  size: number;
  /** The transaction that created the device. */
  transactionId: number;
  initialized: boolean;
  /** Removal was deferred while the device was busy; it finishes once released. */
  deleted: boolean;
  /** The name of the device this one was snapshotted from. */
  origin: string | undefined;
  /**
   * For a layer of the storage driver: its parent layer, '' for a layer on the base
   * device. Undefined for devices that are not layers.
   */
  parent: string | undefined;
}

export interface DeviceSetRecord {
  /** The first id to try for the next device. */
  nextDeviceId: number;
  baseDeviceUuid: string;
  baseDeviceFilesystem: string;
}

export interface TransactionRecord {
  /** The pool's transaction id once the operation commits. */
  openTransactionId: number;
  /** The name of the device the operation changes. */
  deviceHash: string;
  deviceId: number;
}

export type PoolMode = 'loop' | 'devices' | 'direct-lvm';

/**
 * How a direct-lvm pool was set up (Docker's setup-config.json): the options that decided
 * its layout, which may not change later, and where its devices were last attached.
 */
export interface DirectLvmRecord {
  poolUuid: string;
  device: string;
  thinpPercent: number;
  thinpMetaPercent: number;
  devices: Array<{ uuid: string; path: string }>;
}

/** The intent of `DeviceSet.replaceDevice`: `name` takes `replacement`'s thin device. */
export interface ReplaceRecord {
  name: string;
  replacement: string;
  /** The thin id `name` had before; it leaves the pool. */
  oldDeviceId: number;
  /** What `name` keeps of its own record. */
  initialized: boolean;
  origin: string | undefined;
  parent: string | undefined;
}

export interface PoolConfigRecord {
  mode: PoolMode;
  blockSize: number;
  /** ISO 8601 time of creation. */
  created: string;
  dataFile: string;
  metadataFile: string;
  /** The thinp version that created the pool. */
  version: string;
  directLvm?: DirectLvmRecord;
  /** dm.thinpooldev: the root whose pool this root uses (its devices are that root's). */
  thinPoolDev?: string;
}

type Json = Record<string, unknown>;

export function encodeDevice(r: DeviceRecord): Json {
  return {
    device_id: r.deviceId,
    size: r.size,
    transaction_id: r.transactionId,
    initialized: r.initialized,
    deleted: r.deleted,
    ...(r.origin === undefined ? {} : { origin: r.origin }),
    ...(r.parent === undefined ? {} : { parent: r.parent }),
  };
}

export function decodeDevice(file: string, json: unknown): DeviceRecord {
  const o = object(file, json);
  const origin = o.origin;
  if (origin !== undefined && typeof origin !== 'string') throw bad(file, 'origin', 'a string');
  const parent = o.parent;
  if (parent !== undefined && typeof parent !== 'string') throw bad(file, 'parent', 'a string');
  return {
    deviceId: count(file, o, 'device_id'),
    size: count(file, o, 'size'),
    transactionId: count(file, o, 'transaction_id'),
    initialized: flag(file, o, 'initialized', false),
    deleted: flag(file, o, 'deleted', false),
    origin,
    parent,
  };
}

export function encodeDeviceSet(r: DeviceSetRecord): Json {
  return {
    next_device_id: r.nextDeviceId,
    BaseDeviceUUID: r.baseDeviceUuid,
    BaseDeviceFilesystem: r.baseDeviceFilesystem,
  };
}

export function decodeDeviceSet(file: string, json: unknown): DeviceSetRecord {
  const o = object(file, json);
  return {
    nextDeviceId: count(file, o, 'next_device_id'),
    baseDeviceUuid: text(file, o, 'BaseDeviceUUID', ''),
    baseDeviceFilesystem: text(file, o, 'BaseDeviceFilesystem', ''),
  };
}

export function encodeTransaction(r: TransactionRecord): Json {
  return {
    open_transaction_id: r.openTransactionId,
    device_hash: r.deviceHash,
    device_id: r.deviceId,
  };
}

export function decodeTransaction(file: string, json: unknown): TransactionRecord {
  const o = object(file, json);
  return {
    openTransactionId: count(file, o, 'open_transaction_id'),
    deviceHash: text(file, o, 'device_hash'),
    deviceId: count(file, o, 'device_id'),
  };
}

export function encodeReplace(r: ReplaceRecord): Json {
  return {
    name: r.name,
    replacement: r.replacement,
    old_device_id: r.oldDeviceId,
    initialized: r.initialized,
    ...(r.origin === undefined ? {} : { origin: r.origin }),
    ...(r.parent === undefined ? {} : { parent: r.parent }),
  };
}

export function decodeReplace(file: string, json: unknown): ReplaceRecord {
  const o = object(file, json);
  return {
    name: text(file, o, 'name'),
    replacement: text(file, o, 'replacement'),
    oldDeviceId: count(file, o, 'old_device_id'),
    initialized: flag(file, o, 'initialized', true),
    origin: o.origin === undefined ? undefined : text(file, o, 'origin'),
    parent: o.parent === undefined ? undefined : text(file, o, 'parent'),
  };
}

export function encodePoolConfig(r: PoolConfigRecord): Json {
  return { ...r };
}

export function decodePoolConfig(file: string, json: unknown): PoolConfigRecord {
  const o = object(file, json);
  const mode = o.mode;
  if (mode !== 'loop' && mode !== 'devices' && mode !== 'direct-lvm') {
    throw bad(file, 'mode', "'loop', 'devices' or 'direct-lvm'");
  }
  const directLvm = mode === 'direct-lvm' ? decodeDirectLvm(file, o.directLvm) : undefined;
  const thinPoolDev = o.thinPoolDev === undefined ? undefined : text(file, o, 'thinPoolDev');
  return {
    ...(thinPoolDev === undefined ? {} : { thinPoolDev }),
    ...(directLvm === undefined ? {} : { directLvm }),
    mode,
    blockSize: count(file, o, 'blockSize'),
    created: text(file, o, 'created', ''),
    dataFile: text(file, o, 'dataFile'),
    metadataFile: text(file, o, 'metadataFile'),
    version: text(file, o, 'version', ''),
  };
}

function decodeDirectLvm(file: string, json: unknown): DirectLvmRecord {
  const o = object(file, json);
  const devices = o.devices;
  if (!Array.isArray(devices) || devices.length === 0) {
    throw bad(file, 'directLvm.devices', 'a list of {uuid, path}');
  }
  return {
    poolUuid: text(file, o, 'poolUuid'),
    device: text(file, o, 'device'),
    thinpPercent: count(file, o, 'thinpPercent'),
    thinpMetaPercent: count(file, o, 'thinpMetaPercent'),
    devices: devices.map((d) => {
      const e = object(file, d);
      return { uuid: text(file, e, 'uuid'), path: text(file, e, 'path') };
    }),
  };
}

// ---------------------------------------------------------------------------------------

function object(file: string, json: unknown): Json {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new BadInputError(`${file} does not hold a JSON object`, { hint: HINT });
  }
  return json as Json;
}

function count(file: string, o: Json, key: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw bad(file, key, 'a whole number of 0 or more');
  }
  return v;
}

function flag(file: string, o: Json, key: string, fallback: boolean): boolean {
  const v = o[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw bad(file, key, 'true or false');
  return v;
}

function text(file: string, o: Json, key: string, fallback?: string): string {
  const v = o[key];
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== 'string') throw bad(file, key, 'a string');
  return v;
}

const HINT = 'restore the file from a backup, or remove it if it names nothing the pool holds';

function bad(file: string, key: string, expected: string): BadInputError {
  return new BadInputError(`${file}: "${key}" must be ${expected}`, { hint: HINT });
}
