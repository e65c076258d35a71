/**
 * The "Storage Driver: devicemapper" section of `docker info`, field for field and in
 * Docker's order, so that scripts and people who read Docker's can read thinp's. Sizes
 * print as Docker prints them (decimal units, 4 significant digits).
 *
 * With an open device set every field has its value, as Docker computes it: space in use
 * and in total from the pool's status; "Data Space Available" is the pool's free space,
 * bounded in loop mode by the free space of the filesystem under ROOT (and likewise for
 * metadata); "Thin Pool Minimum Free Space" is dm.min_free_space of the data space. Base
 * Device Size and Backing Filesystem are the base device's own (its record and the
 * filesystem recorded in deviceset-metadata) once it exists, else the configured values.
 * Without a pool, the space fields are left out and the section says the pool is not
 * created.
 */

import { stat, statfs } from 'node:fs/promises';
import type { Config, Filesystem } from '../config/index.js';
import { type Bytes, formatHumanSize, THINP_VERSION } from '../util/index.js';
import type { AutoextendState } from './autoextend.js';
import type { DeviceSet } from './device-set.js';

export interface DockerInfo {
  driver: 'devicemapper';
  poolName: string | undefined;
  poolBlocksize: Bytes;
  baseDeviceSize: Bytes;
  backingFilesystem: Filesystem | string;
  dataFile: string | undefined;
  metadataFile: string | undefined;
  dataSpaceUsed: Bytes | undefined;
  dataSpaceTotal: Bytes | undefined;
  dataSpaceAvailable: Bytes | undefined;
  metadataSpaceUsed: Bytes | undefined;
  metadataSpaceTotal: Bytes | undefined;
  metadataSpaceAvailable: Bytes | undefined;
  thinPoolMinimumFreeSpace: Bytes | undefined;
  /** thinp talks to no udev, so it never waits on udev events. */
  udevSyncSupported: false;
  deferredRemovalEnabled: boolean;
  deferredDeletionEnabled: boolean;
  deferredDeletedDeviceCount: number | undefined;
  dataLoopFile: string | undefined;
  metadataLoopFile: string | undefined;
  libraryVersion: string;
  /** thinp: direct-lvm mode, the devices that hold the pool. */
  poolDevices?: string;
  /** thinp: what the daemon's autoextend does, and a space it can no longer grow. */
  autoextend?: string;
  /** Whether the pool exists (the fields that need it are undefined until it does). */
  pool: 'created' | 'not created';
}

const METADATA_BLOCK = 4096;

/**
 * The section for `config`'s pool: `set` open, or undefined when there is no pool yet;
 * `autoextend` is the daemon's, when one runs.
 */
export async function dockerInfo(
  config: Config,
  set?: DeviceSet,
  autoextend?: Readonly<AutoextendState>,
): Promise<DockerInfo> {
  const { storage, backing } = config;
  const loop = backing.kind === 'loop' ? backing : undefined;
  const devices = backing.kind === 'devices' ? backing : undefined;
  const common = {
    driver: 'devicemapper',
    baseDeviceSize: storage.baseSize,
    backingFilesystem: storage.fs,
    udevSyncSupported: false,
    deferredRemovalEnabled: storage.useDeferredRemoval,
    deferredDeletionEnabled: storage.useDeferredDeletion,
    libraryVersion: `thinp ${THINP_VERSION}`,
  } as const;
  if (set === undefined) {
    return {
      ...common,
      poolName: undefined,
      poolBlocksize: storage.blockSize,
      dataFile: loop?.dataFile ?? devices?.dataDevice,
      metadataFile: loop?.metadataFile ?? devices?.metadataDevice,
      ...NO_SPACE_FIELDS,
      deferredDeletedDeviceCount: undefined,
      dataLoopFile: loop?.dataFile,
      metadataLoopFile: loop?.metadataFile,
      pool: 'not created',
    };
  }
  const held = set.group?.devices.map((d) => d.path).join(', ');
  return {
    ...common,
    ...baseFields(set),
    ...(await poolFields(config, set)),
    ...(held === undefined ? {} : { poolDevices: held }),
    ...(autoextend === undefined ? {} : { autoextend: describeAutoextend(autoextend) }),
  };
}

/** "at 80% by 20%", or "off", and any space past the threshold that cannot grow. */
export function describeAutoextend(a: Readonly<AutoextendState>): string {
  if (!a.enabled) return 'off (dm.thinp_autoextend_threshold=100)';
  const stuck = (['data', 'metadata'] as const).filter((space) => a.exhausted[space]);
  const policy = `at ${a.threshold}% by ${a.percent}%`;
  if (stuck.length === 0) return policy;
  return `${policy}; ${stuck.join(' and ')} past ${a.threshold}% with nothing left to grow into`;
}

/** The name of the storage driver's base device in the device set (Docker's hash ""). */
export const BASE_DEVICE = 'base';

/** Base Device Size and Backing Filesystem of the base device, once it is made. */
function baseFields(set: DeviceSet): { baseDeviceSize?: Bytes; backingFilesystem?: string } {
  const base = set.lookup(BASE_DEVICE);
  if (base === undefined || !base.initialized) return {};
  const { filesystem } = set.baseFilesystem;
  return {
    baseDeviceSize: base.size as Bytes,
    ...(filesystem === '' ? {} : { backingFilesystem: filesystem }),
  };
}

const NO_SPACE_FIELDS = {
  dataSpaceUsed: undefined,
  dataSpaceTotal: undefined,
  dataSpaceAvailable: undefined,
  metadataSpaceUsed: undefined,
  metadataSpaceTotal: undefined,
  metadataSpaceAvailable: undefined,
  thinPoolMinimumFreeSpace: undefined,
} as const;

async function poolFields(config: Config, set: DeviceSet) {
  const { data, metadata } = set.status();
  const B = data.blockSize;
  const isLoop = set.files.mode === 'loop';
  const hostFree = isLoop ? await freeBytes(config.root) : Number.POSITIVE_INFINITY;
  const minFreeBlocks = Math.floor((data.totalBlocks * config.storage.minFreeSpace) / 100);
  return {
    poolName: await poolName(config.root),
    poolBlocksize: B as Bytes,
    dataFile: set.files.dataFile,
    metadataFile: set.files.metadataFile,
    dataSpaceUsed: (data.usedBlocks * B) as Bytes,
    dataSpaceTotal: (data.totalBlocks * B) as Bytes,
    dataSpaceAvailable: Math.min((data.totalBlocks - data.usedBlocks) * B, hostFree) as Bytes,
    metadataSpaceUsed: (metadata.usedBlocks * METADATA_BLOCK) as Bytes,
    metadataSpaceTotal: (metadata.totalBlocks * METADATA_BLOCK) as Bytes,
    metadataSpaceAvailable: Math.min(
      (metadata.totalBlocks - metadata.usedBlocks) * METADATA_BLOCK,
      hostFree,
    ) as Bytes,
    thinPoolMinimumFreeSpace: (minFreeBlocks * B) as Bytes,
    deferredDeletedDeviceCount: set.deferredDeletedCount,
    dataLoopFile: isLoop ? set.files.dataFile : undefined,
    metadataLoopFile: isLoop ? set.files.metadataFile : undefined,
    pool: 'created' as const,
  };
}

/** Free bytes of the filesystem holding `dir`, as Docker counts them (free blocks × size). */
async function freeBytes(dir: string): Promise<number> {
  const fs = await statfs(dir);
  return fs.bfree * fs.bsize;
}

/** Docker's pool name, from ROOT's device and inode: `docker-8:1-1234-pool`, here `thinp-...`. */
async function poolName(root: string): Promise<string> {
  return `${await devicePrefix(root)}-pool`;
}

/**
 * The prefix of Docker's device-mapper names for the pool at `root`, from ROOT's device
 * and inode: `docker-8:1-1234` in Docker, `thinp-8:1-1234` here. A device's name is
 * `<prefix>-<id>`, the base device's `<prefix>-base`.
 */
export async function devicePrefix(root: string): Promise<string> {
  const st = await stat(root, { bigint: true });
  const major = ((st.dev >> 8n) & 0xfffn) | ((st.dev >> 32n) & 0xfffff000n);
  const minor = (st.dev & 0xffn) | ((st.dev >> 12n) & 0xffffff00n);
  return `thinp-${major}:${minor}-${st.ino}`;
}

/** The section as `docker info` prints it: a heading, then ` Label: value` lines. */
export function formatDockerInfo(info: DockerInfo): string {
  const lines = dockerInfoPairs(info).map(([label, value]) => ` ${label}: ${value}`);
  return `Storage Driver: ${info.driver}\n${lines.join('\n')}\n`;
}

/** The fields shown, as [label, value] pairs: the graphdriver's `Status` answer. */
export function dockerInfoPairs(info: DockerInfo): [string, string][] {
  const size = (n: Bytes | undefined) => (n === undefined ? undefined : formatHumanSize(n));
  const fields: [string, string | undefined][] = [
    ['Pool Name', info.poolName],
    ['Pool Blocksize', formatHumanSize(info.poolBlocksize)],
    ['Base Device Size', formatHumanSize(info.baseDeviceSize)],
    ['Backing Filesystem', info.backingFilesystem],
    ['Data file', info.dataFile],
    ['Metadata file', info.metadataFile],
    ['Data Space Used', size(info.dataSpaceUsed)],
    ['Data Space Total', size(info.dataSpaceTotal)],
    ['Data Space Available', size(info.dataSpaceAvailable)],
    ['Metadata Space Used', size(info.metadataSpaceUsed)],
    ['Metadata Space Total', size(info.metadataSpaceTotal)],
    ['Metadata Space Available', size(info.metadataSpaceAvailable)],
    ['Thin Pool Minimum Free Space', size(info.thinPoolMinimumFreeSpace)],
    ['Udev Sync Supported', String(info.udevSyncSupported)],
    ['Deferred Removal Enabled', String(info.deferredRemovalEnabled)],
    ['Deferred Deletion Enabled', String(info.deferredDeletionEnabled)],
    ['Deferred Deleted Device Count', info.deferredDeletedDeviceCount?.toString()],
    ['Data loop file', info.dataLoopFile],
    ['Metadata loop file', info.metadataLoopFile],
    ['Library Version', info.libraryVersion],
    ['Pool Devices', info.poolDevices],
    ['Autoextend', info.autoextend],
    ['Pool Status', info.pool === 'not created' ? 'not created' : undefined],
  ];
  return fields.filter((f): f is [string, string] => f[1] !== undefined);
}
