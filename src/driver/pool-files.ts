/**
 * The devices under a pool: in loop mode the sparse files ROOT/devicemapper/{data,metadata},
 * in direct mode the two devices of dm.datadev and dm.metadatadev (opened as files here).
 * An existing pool is never overwritten; a half-made one (a crash during creation, a file
 * removed by hand) is reported with what is there and how to start over.
 */

import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { FileDevice } from '../block/index.js';
import type { Config } from '../config/index.js';
import {
  BadInputError,
  ConfigError,
  ExistsError,
  NotFoundError,
  pathExists,
  UnavailableError,
} from '../util/index.js';
import { readStateFile } from './state-files.js';
import { decodePoolConfig, type PoolConfigRecord, type PoolMode } from './state-records.js';

export interface PoolFiles {
  mode: PoolMode;
  dataFile: string;
  metadataFile: string;
}

export interface OpenedPoolFiles extends PoolFiles {
  data: FileDevice;
  metadata: FileDevice;
  /** thinp.json; undefined for a Docker devicemapper directory, which has none. */
  record: PoolConfigRecord | undefined;
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
    default:
      throw new UnavailableError(
        `${backing.kind === 'existing-pool' ? 'dm.thinpooldev' : 'dm.directlvm_device'} ` +
          'is not supported by this build of thinp',
        { hint: 'use loop mode (the default) or dm.datadev with dm.metadatadev' },
      );
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
  const files = configuredFiles(config);
  if (await pathExists(config.layout.poolConfigFile)) {
    throw new ExistsError(
      `a pool exists at ${config.root}; an existing pool is never overwritten`,
      {
        hint: "use it ('thinp pool status'), or give another --root",
      },
    );
  }
  if (files.mode === 'devices') return { ...files, ...(await openFiles(files)), record: undefined };
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
  const files: PoolFiles = record ?? (await dockerDirectory(config));
  checkMatchesOptions(config, files);
  if (files.mode === 'loop') await refuseMissing(config, files);
  const opened = await openFiles(files);
  if (await isBlank(opened.metadata)) {
    await Promise.all([opened.data.close(), opened.metadata.close()]);
    throw halfMade(config, `${files.metadataFile} is blank (its creation was cut short)`);
  }
  return { ...files, ...opened, record };
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
  const made = files.mode === 'loop' ? 'loop mode' : `direct mode on ${files.dataFile}`;
  throw new ConfigError(
    `the pool at ${config.root} was created in ${made}, but the options give ` +
      `${wanted.mode === 'loop' ? 'loop mode' : `${wanted.dataFile} and ${wanted.metadataFile}`}`,
    { hint: 'give the options the pool was created with, or another --root' },
  );
}

async function openFiles(files: PoolFiles): Promise<{ data: FileDevice; metadata: FileDevice }> {
  const data = await FileDevice.open(files.dataFile);
  try {
    return { data, metadata: await FileDevice.open(files.metadataFile) };
  } catch (err) {
    await data.close();
    throw err;
  }
}

/** Whether the first 4 KiB of the metadata (where the superblock lives) are all zeros. */
async function isBlank(device: FileDevice): Promise<boolean> {
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
