/**
 * The devices under a pool: in loop mode the sparse files ROOT/devicemapper/{data,metadata},
 * in direct mode the two devices of dm.datadev and dm.metadatadev (block devices, or files),
 * or the regions thinp made on dm.directlvm_device (direct-lvm.ts), found by their labels.
 * An existing pool is never overwritten; a half-made one (a crash during creation, a file
 * removed by hand) is reported with what is there and how to start over.
 */

import { mkdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { BlockDevDevice, type BlockDevice, FileDevice } from '../block/index.js';
import { type Config, rootLayout } from '../config/index.js';
import {
  BadInputError,
  ConfigError,
  ExistsError,
  NotFoundError,
  pathExists,
  UnavailableError,
} from '../util/index.js';
import { findVolumeGroup, setupDirectLvm } from './direct-lvm.js';
import { RootLock } from './root-lock.js';
import { readStateFile } from './state-files.js';
import {
  type DirectLvmRecord,
  decodePoolConfig,
  type PoolConfigRecord,
  type PoolMode,
} from './state-records.js';
import type { VolumeGroup } from './volume-group.js';

export interface PoolFiles {
  mode: PoolMode;
  dataFile: string;
  metadataFile: string;
}

export interface OpenedPoolFiles extends PoolFiles {
  data: BlockDevice;
  metadata: BlockDevice;
  /** thinp.json; undefined for a Docker devicemapper directory, which has none. */
  record: PoolConfigRecord | undefined;
  /** Direct-lvm mode: the devices and how their space is divided. */
  group?: VolumeGroup;
  /** dm.thinpooldev: the pool exists already (another root made it); gives its lock back. */
  adopted?: { root: string; release: () => Promise<void> };
}

/** Where the options put the pool's data and metadata. */
export function configuredFiles(config: Config): PoolFiles {
  const { backing } = config;
  switch (backing.kind) {
    case 'loop':
      return { mode: 'loop', dataFile: backing.dataFile, metadataFile: backing.metadataFile };
    case 'devices':
      return {
        mode: 'devices',
        dataFile: backing.dataDevice,
        metadataFile: backing.metadataDevice,
      };
    case 'direct-lvm':
      return { mode: 'direct-lvm', dataFile: backing.device, metadataFile: backing.device };
    default:
      throw new UnavailableError('dm.thinpooldev names a pool that is opened, not made', {
        hint: "create the pool under its own root ('thinp --root DIR pool create')",
      });
  }
}

/** Whether anything of a pool is at ROOT: thinp.json, or a loop-mode file. */
export async function poolPresent(config: Config): Promise<boolean> {
  const { layout } = config;
  const found = await Promise.all(
    [layout.poolConfigFile, layout.dataLoopFile, layout.metadataLoopFile].map(pathExists),
  );
  return found.includes(true);
}

/** Makes the files of a new pool; refuses when anything of a pool is there already. */
export async function createPoolFiles(config: Config): Promise<OpenedPoolFiles> {
  if (await pathExists(config.layout.poolConfigFile)) {
    throw new ExistsError(
      `a pool exists at ${config.root}; an existing pool is never overwritten`,
      {
        hint: "use it ('thinp pool status'), or give another --root",
      },
    );
  }
  if (config.backing.kind === 'existing-pool') return adoptPool(config, config.backing.poolName);
  const files = configuredFiles(config);
  if (files.mode === 'devices') return { ...files, ...(await openFiles(files)), record: undefined };
  if (files.mode === 'direct-lvm') {
    const group = await setupDirectLvm(config, files.dataFile);
    return { ...files, ...(await group.openSpaces()), record: undefined, group };
  }
  await refuseLeftovers(config, files);
  await mkdir(path.dirname(files.dataFile), { recursive: true, mode: 0o700 });
  const { storage } = config;
  const data = await FileDevice.open(files.dataFile, { create: { size: storage.loopDataSize } });
  try {
    const size = storage.loopMetadataSize;
    const metadata = await FileDevice.open(files.metadataFile, { create: { size } });
    return { ...files, data, metadata, record: undefined };
  } catch (err) {
    await data.close();
    throw err;
  }
}

/** Opens the files of the pool at ROOT, checking that they make a whole pool. */
export async function openPoolFiles(config: Config): Promise<OpenedPoolFiles> {
  const file = config.layout.poolConfigFile;
  const json = await readStateFile(file);
  const record = json === undefined ? undefined : decodePoolConfig(file, json);
  if (record?.thinPoolDev !== undefined || config.backing.kind === 'existing-pool') {
    return { ...(await openAdopted(config, record)), record };
  }
  const files: PoolFiles = record ?? (await dockerDirectory(config));
  checkMatchesOptions(config, files);
  if (record?.directLvm !== undefined) checkSameSetup(config, record.directLvm);
  if (files.mode === 'loop') await refuseMissing(config, files);
  const group = record?.directLvm === undefined ? undefined : await findGroup(config, record);
  const opened = group === undefined ? await openFiles(files) : await group.openSpaces();
  if (await isBlank(opened.metadata)) {
    await Promise.all([opened.data.close(), opened.metadata.close()]);
    throw halfMade(config, `${files.metadataFile} is blank (its creation was cut short)`);
  }
  return { ...files, ...opened, record, ...(group === undefined ? {} : { group }) };
}

// ---------------------------------------------------------------------------------------
// dm.thinpooldev: a pool another root made

/** Opens the pool this root uses by dm.thinpooldev, checking the options still name it. */
async function openAdopted(
  config: Config,
  record: PoolConfigRecord | undefined,
): Promise<OpenedPoolFiles> {
  const given = config.backing.kind === 'existing-pool' ? config.backing.poolName : undefined;
  const recorded = record?.thinPoolDev;
  if (recorded === undefined || given === undefined || poolRootOf(given) !== recorded) {
    throw new ConfigError(
      `the pool at ${config.root} ${recorded === undefined ? 'is its own' : `is the pool of ${recorded} (dm.thinpooldev)`}, ` +
        `but the options give ${given === undefined ? 'no dm.thinpooldev' : `dm.thinpooldev=${given}`}`,
      { hint: 'give the options the root was set up with, or another --root' },
    );
  }
  return adoptPool(config, recorded);
}

/**
 * Opens the pool of the root at `location` (that root, or its thinp.json) under that
 * root's lock, held until the device set closes: no two processes write one pool.
 */
async function adoptPool(config: Config, location: string): Promise<OpenedPoolFiles> {
  const other = poolRootOf(location);
  if (other === config.root) {
    throw new ConfigError(`dm.thinpooldev=${location} names this root itself`, {
      hint: 'name the root of another pool, or leave dm.thinpooldev out',
    });
  }
  const lock = await RootLock.acquire(other, `thinp (dm.thinpooldev of ${config.root})`);
  try {
    const file = rootLayout(other).poolConfigFile;
    const json = await readStateFile(file);
    if (json === undefined) {
      throw new NotFoundError(`dm.thinpooldev=${location}: there is no pool at ${other}`, {
        hint: `create it first ('thinp --root ${other} pool create'), or give the right path`,
      });
    }
    const theirs = decodePoolConfig(file, json);
    const opened = await openPoolFiles(configOf(config, other, theirs));
    return { ...opened, adopted: { root: other, release: () => lock.release() } };
  } catch (err) {
    await lock.release();
    throw err;
  }
}

/** The root directory dm.thinpooldev names: the path itself, or the folder of its thinp.json. */
function poolRootOf(location: string): string {
  if (!path.isAbsolute(location)) {
    throw new ConfigError(`dm.thinpooldev=${location} is not an absolute path`, {
      hint: 'give the absolute path of the root that holds the pool, such as /var/lib/thinp',
    });
  }
  const resolved = path.resolve(location);
  return path.basename(resolved) === 'thinp.json' ? path.dirname(resolved) : resolved;
}

/** The options of the root `other` as its thinp.json describes its pool. */
function configOf(config: Config, other: string, theirs: PoolConfigRecord): Config {
  const layout = rootLayout(other);
  const backing: Config['backing'] =
    theirs.mode === 'loop'
      ? { kind: 'loop', dataFile: layout.dataLoopFile, metadataFile: layout.metadataLoopFile }
      : theirs.mode === 'devices'
        ? { kind: 'devices', dataDevice: theirs.dataFile, metadataDevice: theirs.metadataFile }
        : { kind: 'direct-lvm', device: theirs.directLvm?.device ?? theirs.dataFile };
  const lvm = theirs.directLvm;
  const storage = {
    ...config.storage,
    ...(lvm === undefined
      ? {}
      : { thinpPercent: lvm.thinpPercent, thinpMetaPercent: lvm.thinpMetaPercent }),
  };
  return { ...config, root: other, layout, backing, storage };
}

/**
 * The metadata device of the pool at ROOT (or the one the options name), read-only, for
 * the metadata tools: a file, a block device, or the metadata regions of a direct-lvm pool.
 */
export async function openPoolMetadata(config: Config): Promise<BlockDevice> {
  const file = config.layout.poolConfigFile;
  const json = await readStateFile(file);
  const record = json === undefined ? undefined : decodePoolConfig(file, json);
  if (record?.thinPoolDev !== undefined) {
    const other = record.thinPoolDev;
    const theirs = await readStateFile(rootLayout(other).poolConfigFile);
    if (theirs !== undefined) {
      const decoded = decodePoolConfig(rootLayout(other).poolConfigFile, theirs);
      return openPoolMetadata(configOf(config, other, decoded));
    }
  }
  if (record?.directLvm !== undefined) {
    return (await findGroup(config, record)).openSpace('metadata', { readOnly: true });
  }
  return openDevice((record ?? configuredFiles(config)).metadataFile, { readOnly: true });
}

/** The volume group of a direct-lvm pool, by its labels: on the devices named, or any. */
async function findGroup(config: Config, record: PoolConfigRecord): Promise<VolumeGroup> {
  const lvm = record.directLvm as DirectLvmRecord;
  const given = config.backing.kind === 'direct-lvm' ? [config.backing.device] : [];
  const candidates = [...given, ...lvm.devices.map((d) => d.path)];
  const lastKnown = new Map(lvm.devices.map((d) => [d.uuid, d.path]));
  return findVolumeGroup(lvm.poolUuid, candidates, lastKnown);
}

/** The layout of a direct-lvm pool was fixed at its setup; the options must not change it. */
function checkSameSetup(config: Config, lvm: DirectLvmRecord): void {
  const { storage } = config;
  const changed = [
    ['dm.thinp_percent', lvm.thinpPercent, storage.thinpPercent],
    ['dm.thinp_metapercent', lvm.thinpMetaPercent, storage.thinpMetaPercent],
  ].filter(([, was, now]) => was !== now);
  if (changed.length === 0) return;
  const what = changed.map(([key, was, now]) => `${key}=${now}% (set up with ${was}%)`).join(', ');
  throw new ConfigError(
    `the pool at ${config.root} was set up on ${lvm.device} with other options: ${what}; ` +
      'the layout of an existing pool does not change',
    {
      hint:
        `give the options it was set up with (${config.layout.poolConfigFile} records them); ` +
        "grow it with 'thinp pool resize' instead",
    },
  );
}

// ---------------------------------------------------------------------------------------

/** A Docker devicemapper directory: loop files and no thinp.json. */
async function dockerDirectory(config: Config): Promise<PoolFiles> {
  const { layout } = config;
  const [data, metadata] = await Promise.all([
    pathExists(layout.dataLoopFile),
    pathExists(layout.metadataLoopFile),
  ]);
  if (!data && !metadata) {
    throw new NotFoundError(`there is no pool at ${config.root}`, {
      hint: "create one with 'thinp pool create', or give the right --root",
    });
  }
  return { mode: 'loop', dataFile: layout.dataLoopFile, metadataFile: layout.metadataLoopFile };
}

async function refuseLeftovers(config: Config, files: PoolFiles): Promise<void> {
  const [data, metadata] = await Promise.all([
    pathExists(files.dataFile),
    pathExists(files.metadataFile),
  ]);
  if (data && metadata) {
    const blank = await FileDevice.open(files.metadataFile, { readOnly: true }).then(
      async (dev) => {
        try {
          return await isBlank(dev);
        } finally {
          await dev.close();
        }
      },
    );
    if (blank)
      throw halfMade(config, `${files.metadataFile} is blank (its creation was cut short)`);
    throw new ExistsError(
      `${path.dirname(files.dataFile)} already holds a data and a metadata file ` +
        '(a pool without thinp.json, as Docker leaves one); an existing pool is never overwritten',
      { hint: "use it as it is ('thinp pool status'), or give another --root" },
    );
  }
  if (data || metadata) {
    const there = data ? files.dataFile : files.metadataFile;
    const missing = data ? files.metadataFile : files.dataFile;
    throw halfMade(config, `${there} exists but ${missing} does not`);
  }
}

async function refuseMissing(config: Config, files: PoolFiles): Promise<void> {
  for (const file of [files.dataFile, files.metadataFile]) {
    if (!(await pathExists(file))) throw halfMade(config, `${file} is missing`);
  }
}

function halfMade(config: Config, what: string): ExistsError {
  const dir = path.dirname(config.layout.dataLoopFile);
  return new ExistsError(`a half-made pool is at ${config.root}: ${what}`, {
    hint:
      `if it holds nothing you need, remove ${dir} and ${config.layout.poolConfigFile}, ` +
      "then run 'thinp pool create' again",
  });
}

/** The pool was made in one mode; the options must not now point elsewhere. */
function checkMatchesOptions(config: Config, files: PoolFiles): void {
  const wanted = configuredFiles(config);
  if (wanted.mode === files.mode && wanted.dataFile === files.dataFile) {
    if (wanted.metadataFile === files.metadataFile) return;
  }
  if (wanted.mode === 'direct-lvm' && files.mode === 'direct-lvm') return;
  const made = files.mode === 'loop' ? 'loop mode' : `direct mode on ${files.dataFile}`;
  throw new ConfigError(
    `the pool at ${config.root} was created in ${made}, but the options give ` +
      `${wanted.mode === 'loop' ? 'loop mode' : `${wanted.dataFile} and ${wanted.metadataFile}`}`,
    { hint: 'give the options the pool was created with, or another --root' },
  );
}

async function openFiles(files: PoolFiles): Promise<{ data: BlockDevice; metadata: BlockDevice }> {
  const data = await openDevice(files.dataFile);
  try {
    return { data, metadata: await openDevice(files.metadataFile) };
  } catch (err) {
    await data.close();
    throw err;
  }
}

/** A block device as a BlockDevDevice, anything else as a file. */
async function openDevice(
  file: string,
  options: { readOnly?: boolean } = {},
): Promise<BlockDevice> {
  const isBlock = await stat(file).then(
    (s) => s.isBlockDevice(),
    () => false,
  );
  return isBlock ? BlockDevDevice.open(file, options) : FileDevice.open(file, options);
}

/** Whether the first 4 KiB of the metadata (where the superblock lives) are all zeros. */
async function isBlank(device: BlockDevice): Promise<boolean> {
  if (device.size < 4096) {
    throw new BadInputError(`${device.name} is ${device.size} bytes: too small for metadata`, {
      hint: 'give a metadata device of at least 1M',
    });
  }
  const buf = Buffer.alloc(4096);
  await device.read(buf, 0);
  return buf.every((b) => b === 0);
}

/** Removes the loop files a failed creation made. */
export async function removePoolFiles(files: PoolFiles): Promise<void> {
  await Promise.all([files.dataFile, files.metadataFile].map((f) => rm(f, { force: true })));
}
