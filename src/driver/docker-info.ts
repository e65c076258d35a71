/**
 * The "Storage Driver: devicemapper" section of `docker info`, field for field, so that
 * scripts and people who read Docker's can read thinp's. Sizes print as Docker prints them
 * (decimal units, 4 significant digits).
 *
 * Fields that need an open pool (space used and available, minimum free space, deferred
 * deleted devices) are reported once the pool exists; before that the section says the
 * pool is not created.
 */

import { access } from 'node:fs/promises';
import type { Config, Filesystem } from '../config/index.js';
import { type Bytes, formatHumanSize, THINP_VERSION, UnavailableError } from '../util/index.js';

export interface DockerInfo {
  driver: 'devicemapper';
  poolBlocksize: Bytes;
  baseDeviceSize: Bytes;
  backingFilesystem: Filesystem;
  /** thinp talks to no udev, so it never waits on udev events. */
  udevSyncSupported: false;
  dataFile: string | undefined;
  metadataFile: string | undefined;
  dataLoopFile: string | undefined;
  metadataLoopFile: string | undefined;
  deferredRemovalEnabled: boolean;
  deferredDeletionEnabled: boolean;
  libraryVersion: string;
  /** The pool's state; only a pool that is not created yet can be described so far. */
  pool: 'not created';
}

export async function dockerInfo(config: Config): Promise<DockerInfo> {
  const { storage, backing } = config;
  const loop = backing.kind === 'loop' ? backing : undefined;
  const devices = backing.kind === 'devices' ? backing : undefined;
  if (await exists(config.layout.poolConfigFile)) {
    throw new UnavailableError(
      `a pool exists at ${config.root}, but this build of thinp cannot open pools`,
      {
        hint: 'use a thinp version with the pool engine to read it',
      },
    );
  }
  return {
    driver: 'devicemapper',
    poolBlocksize: storage.blockSize,
    baseDeviceSize: storage.baseSize,
    backingFilesystem: storage.fs,
    udevSyncSupported: false,
    dataFile: loop?.dataFile ?? devices?.dataDevice,
    metadataFile: loop?.metadataFile ?? devices?.metadataDevice,
    dataLoopFile: loop?.dataFile,
    metadataLoopFile: loop?.metadataFile,
    deferredRemovalEnabled: storage.useDeferredRemoval,
    deferredDeletionEnabled: storage.useDeferredDeletion,
    libraryVersion: `thinp ${THINP_VERSION}`,
    pool: 'not created',
  };
}

/** The section as `docker info` prints it: a heading, then ` Label: value` lines. */
export function formatDockerInfo(info: DockerInfo): string {
  const fields: [string, string | undefined][] = [
    ['Pool Blocksize', formatHumanSize(info.poolBlocksize)],
    ['Base Device Size', formatHumanSize(info.baseDeviceSize)],
    ['Backing Filesystem', info.backingFilesystem],
    ['Udev Sync Supported', String(info.udevSyncSupported)],
    ['Data file', info.dataFile],
    ['Metadata file', info.metadataFile],
    ['Data loop file', info.dataLoopFile],
    ['Metadata loop file', info.metadataLoopFile],
    ['Deferred Removal Enabled', String(info.deferredRemovalEnabled)],
    ['Deferred Deletion Enabled', String(info.deferredDeletionEnabled)],
    ['Library Version', info.libraryVersion],
    ['Pool Status', info.pool],
  ];
  const lines = fields
    .filter(([, value]) => value !== undefined)
    .map(([label, value]) => ` ${label}: ${value}`);
  return `Storage Driver: ${info.driver}\n${lines.join('\n')}\n`;
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}
