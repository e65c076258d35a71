/**
 * Loading the configuration: built-in defaults, then the `--config` file, then
 * `--storage-opt` flags, the later source winning option by option. Within one source an
 * option given twice keeps its last value (or appends, for `dm.mkfsarg` and `dm.mountopt`).
 * Everything is checked before anything is returned: a bad value or a conflicting pair is
 * a ConfigError that names the option, where it came from, and the fix.
 */

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import {
  BadInputError,
  ConfigError,
  closestMatch,
  findOnPath,
  formatSize,
  type JsonPosition,
} from '../util/index.js';
import { fileSource, readConfigFile } from './config-file.js';
import { type RootLayout, rootLayout } from './layout.js';
import type { OptionSpec } from './option-kinds.js';
import {
  type Filesystem,
  fieldOfKey,
  OPTION_FIELDS,
  OPTIONS,
  type OptionField,
  STATIC_DEFAULTS,
  type StorageOptions,
} from './options.js';

/** Where an option's value came from. */
export type Origin =
  | { kind: 'default' }
  | { kind: 'file'; file: string; at: JsonPosition }
  | { kind: 'flag' };

/** What holds the pool's data and metadata, as the options choose. */
export type PoolBacking =
  | { kind: 'loop'; dataFile: string; metadataFile: string }
  | { kind: 'devices'; dataDevice: string; metadataDevice: string }
  | { kind: 'existing-pool'; poolName: string }
  | { kind: 'direct-lvm'; device: string };

export interface Config {
  /** Absolute path of the root directory. */
  root: string;
  layout: RootLayout;
  /** Absolute path of the configuration file, if one was given. */
  configFile: string | undefined;
  storage: StorageOptions;
  backing: PoolBacking;
  origins: Readonly<Record<OptionField, Origin>>;
}

export interface LoadRequest {
  /** The root directory, relative to `cwd` or absolute. */
  root: string;
  configFile?: string | undefined;
  /** `KEY=VALUE` texts from `--storage-opt`, in order. */
  storageOpts?: readonly string[];
  cwd?: string;
  /** The environment; its PATH decides the default filesystem. */
  env?: NodeJS.ProcessEnv;
}

interface Entry {
  text: string;
  origin: Origin;
}

/** Options given by one source, and where each came from. */
interface Given {
  values: Partial<StorageOptions>;
  origins: Partial<Record<OptionField, Origin>>;
}

export async function loadConfig(request: LoadRequest): Promise<Config> {
  const cwd = request.cwd ?? process.cwd();
  const root = resolveRoot(request.root, cwd);
  const configFile =
    request.configFile === undefined ? undefined : path.resolve(cwd, request.configFile);
  const fileEntries = await readFileEntries(configFile);
  const flagEntries = (request.storageOpts ?? []).map(
    (text): Entry => ({ text, origin: { kind: 'flag' } }),
  );
  const given = overlay(collect(fileEntries), collect(flagEntries));
  checkCombinations(given);
  const layout = rootLayout(root);
  const backing = chooseBacking(given.values, layout);
  const storage = await resolveDefaults(given.values, backing, request.env ?? process.env);
  checkSizes(storage, given, backing);
  const origins = Object.fromEntries(
    OPTION_FIELDS.map((field) => [field, given.origins[field] ?? { kind: 'default' }]),
  ) as Record<OptionField, Origin>;
  return { root, layout, configFile, storage, backing, origins };
}

async function readFileEntries(configFile: string | undefined): Promise<Entry[]> {
  if (configFile === undefined) return [];
  return (await readConfigFile(configFile)).map(({ text, at }) => ({
    text,
    origin: { kind: 'file', file: configFile, at },
  }));
}

function resolveRoot(root: string, cwd: string): string {
  if (root.trim() === '') {
    throw new ConfigError('the root directory is empty', {
      hint: 'give --root DIR or set THINP_ROOT, or leave both out for ./var/lib/thinp',
    });
  }
  return path.resolve(cwd, root);
}

// ---------------------------------------------------------------------------------------
// Reading entries

function collect(entries: readonly Entry[]): Given {
  const given: Given = { values: {}, origins: {} };
  for (const entry of entries) {
    const { field, value } = parseEntry(entry);
    const spec = OPTIONS[field] as OptionSpec<unknown>;
    const earlier: unknown = given.values[field];
    const combined = earlier !== undefined && spec.combine ? spec.combine(earlier, value) : value;
    (given.values as Record<OptionField, unknown>)[field] = combined;
    given.origins[field] = entry.origin;
  }
  return given;
}

function parseEntry(entry: Entry): { field: OptionField; value: unknown } {
  const source = describeOrigin(entry.origin);
  const equals = entry.text.indexOf('=');
  if (equals <= 0) {
    throw new ConfigError(`'${entry.text}' is not KEY=VALUE`, {
      source,
      hint: 'write a storage option as dm.basesize=20G',
    });
  }
  const key = entry.text.slice(0, equals).trim().toLowerCase();
  const field = fieldOfKey(key);
  if (field === undefined) {
    throw new ConfigError(`unknown option ${key}`, { source, hint: unknownKeyHint(key) });
  }
  try {
    return { field, value: OPTIONS[field].parse(entry.text.slice(equals + 1).trim()) };
  } catch (cause) {
    if (!(cause instanceof BadInputError)) throw cause;
    throw new ConfigError(`${key}: ${cause.message}`, { source, cause, ...hintOf(cause) });
  }
}

function unknownKeyHint(key: string): string {
  const known = OPTION_FIELDS.map((field) => OPTIONS[field].key);
  const near = closestMatch(key, known);
  const list = "'thinp config --help' lists every option";
  return near === undefined ? list : `did you mean ${near}? ${list}`;
}

function hintOf(error: BadInputError): { hint?: string } {
  return error.hint === undefined ? {} : { hint: error.hint };
}

/** `upper`'s options replace `lower`'s, option by option. */
function overlay(lower: Given, upper: Given): Given {
  return {
    values: { ...lower.values, ...upper.values },
    origins: { ...lower.origins, ...upper.origins },
  };
}

export function describeOrigin(origin: Origin): string {
  switch (origin.kind) {
    case 'default':
      return 'default';
    case 'flag':
      return '--storage-opt';
    case 'file':
      return fileSource(origin.file, origin.at);
  }
}

// ---------------------------------------------------------------------------------------
// Choices that depend on each other

const DIRECT_CHOICES: readonly OptionField[] = ['dataDev', 'thinPoolDev', 'directLvmDevice'];
const DIRECT_LVM_ONLY: readonly OptionField[] = [
  'directLvmDeviceForce',
  'thinpPercent',
  'thinpMetaPercent',
];

function checkCombinations(given: Given): void {
  checkDevicePair(given);
  const direct = checkOneDirectChoice(given);
  checkLoopSizes(given, direct);
  checkDirectLvmOptions(given);
  checkDeferral(given);
}

const has = (given: Given, field: OptionField) => given.values[field] !== undefined;

function checkDevicePair(given: Given): void {
  if (has(given, 'dataDev') !== has(given, 'metadataDev')) {
    const present: OptionField = has(given, 'dataDev') ? 'dataDev' : 'metadataDev';
    const missing: OptionField = present === 'dataDev' ? 'metadataDev' : 'dataDev';
    throw new ConfigError(`${keyWithOrigin(given, present)} needs ${OPTIONS[missing].key}`, {
      hint: 'direct mode takes a data device and a metadata device: give both, or neither for loop mode',
    });
  }
  if (has(given, 'dataDev') && given.values.dataDev === given.values.metadataDev) {
    throw new ConfigError(
      `dm.datadev and dm.metadatadev are the same device ${given.values.dataDev}`,
      {
        hint: 'give two different devices, or one device as dm.directlvm_device for thinp to divide',
      },
    );
  }
}

/** At most one way of choosing direct-mode devices; returns the one given, if any. */
function checkOneDirectChoice(given: Given): OptionField | undefined {
  const [first, second] = DIRECT_CHOICES.filter((field) => has(given, field));
  if (first !== undefined && second !== undefined) {
    throw conflict(
      given,
      first,
      second,
      'each chooses the devices of direct mode',
      'give only one of them',
    );
  }
  return first;
}

function checkLoopSizes(given: Given, direct: OptionField | undefined): void {
  const loopOnly = (['loopDataSize', 'loopMetadataSize'] as const).find((field) =>
    has(given, field),
  );
  if (loopOnly !== undefined && direct !== undefined) {
    const hint = `drop ${OPTIONS[loopOnly].key}`;
    throw conflict(given, loopOnly, direct, 'loop-mode sizes do not apply in direct mode', hint);
  }
}

function checkDirectLvmOptions(given: Given): void {
  const lvmOnly = DIRECT_LVM_ONLY.find((field) => has(given, field));
  if (lvmOnly !== undefined && !has(given, 'directLvmDevice')) {
    throw new ConfigError(
      `${keyWithOrigin(given, lvmOnly)} configures dm.directlvm_device, which is not given`,
      { hint: `give dm.directlvm_device=/dev/... or drop ${OPTIONS[lvmOnly].key}` },
    );
  }
}

function checkDeferral(given: Given): void {
  if (given.values.useDeferredDeletion === true && given.values.useDeferredRemoval === false) {
    throw conflict(
      given,
      'useDeferredDeletion',
      'useDeferredRemoval',
      'deferred deletion needs deferred removal',
      'set dm.use_deferred_removal=true, or dm.use_deferred_deletion=false',
    );
  }
}

function chooseBacking(values: Partial<StorageOptions>, layout: RootLayout): PoolBacking {
  if (values.dataDev !== undefined && values.metadataDev !== undefined) {
    return { kind: 'devices', dataDevice: values.dataDev, metadataDevice: values.metadataDev };
  }
  if (values.thinPoolDev !== undefined) {
    return { kind: 'existing-pool', poolName: values.thinPoolDev };
  }
  if (values.directLvmDevice !== undefined) {
    return { kind: 'direct-lvm', device: values.directLvmDevice };
  }
  return { kind: 'loop', dataFile: layout.dataLoopFile, metadataFile: layout.metadataLoopFile };
}

/**
 * Defaults that depend on other things: the filesystem is xfs when mkfs.xfs is installed
 * and the kernel lists xfs in /proc/filesystems (Docker's rule), else ext4; blocks are discarded on removal in loop mode only unless asked (as Docker);
 * deferred deletion follows deferred removal unless it is given.
 */
async function xfsUsable(env: NodeJS.ProcessEnv): Promise<boolean> {
  if ((await findOnPath('mkfs.xfs', env.PATH)) === undefined) return false;
  const listed = await readFile('/proc/filesystems', 'utf8').catch(() => '');
  return listed.split('\n').some((line) => line.trim().split(/\s+/).at(-1) === 'xfs');
}

async function resolveDefaults(
  values: Partial<StorageOptions>,
  backing: PoolBacking,
  env: NodeJS.ProcessEnv,
): Promise<StorageOptions> {
  const fs: Filesystem = values.fs ?? ((await xfsUsable(env)) ? 'xfs' : 'ext4');
  const merged = { ...STATIC_DEFAULTS, ...values };
  return {
    ...merged,
    fs,
    blkdiscard: values.blkdiscard ?? backing.kind === 'loop',
    useDeferredDeletion: values.useDeferredDeletion ?? merged.useDeferredRemoval,
  };
}

function checkSizes(storage: StorageOptions, given: Given, backing: PoolBacking): void {
  if (backing.kind === 'loop' && storage.loopDataSize < storage.blockSize) {
    throw conflict(
      given,
      'loopDataSize',
      'blockSize',
      `a ${formatSize(storage.loopDataSize)} data file cannot hold one ${formatSize(storage.blockSize)} block`,
      'give a larger dm.loopdatasize or a smaller dm.blocksize',
    );
  }
  if (storage.thinpPercent + storage.thinpMetaPercent > 100) {
    throw conflict(
      given,
      'thinpPercent',
      'thinpMetaPercent',
      `together they take ${storage.thinpPercent + storage.thinpMetaPercent}% of the device`,
      'make their sum at most 100%',
    );
  }
}

function keyWithOrigin(given: Given, field: OptionField): string {
  const origin = given.origins[field] ?? { kind: 'default' };
  return `${OPTIONS[field].key} (${describeOrigin(origin)})`;
}

function conflict(
  given: Given,
  a: OptionField,
  b: OptionField,
  why: string,
  hint: string,
): ConfigError {
  return new ConfigError(
    `${keyWithOrigin(given, a)} and ${keyWithOrigin(given, b)} conflict: ${why}`,
    { hint },
  );
}
