/**
 * The `dm.*` storage options: Docker's devicemapper names and value syntax, plus thinp's
 * own (`dm.zero_blocks`, `dm.no_space_policy`, `dm.uncached_write_min`). One table holds
 * every option's parser, so the loader, `thinp config` and the help text cannot drift apart.
 */

import type { Bytes } from '../util/index.js';
import {
  booleanOption,
  choiceOption,
  integerOption,
  joinedOption,
  listOption,
  nameOption,
  type OptionSpec,
  pathOption,
  percentOption,
  sizeOption,
} from './option-kinds.js';

export const FILESYSTEMS = ['ext4', 'xfs'] as const;
export type Filesystem = (typeof FILESYSTEMS)[number];

export const NO_SPACE_POLICIES = ['error', 'queue'] as const;
export type NoSpacePolicy = (typeof NO_SPACE_POLICIES)[number];

/** Every storage option, resolved: defaults filled in, combinations checked. */
export interface StorageOptions {
  baseSize: Bytes;
  loopDataSize: Bytes;
  loopMetadataSize: Bytes;
  blockSize: Bytes;
  fs: Filesystem;
  mkfsArgs: readonly string[];
  mountOpt: string | undefined;
  dataDev: string | undefined;
  metadataDev: string | undefined;
  thinPoolDev: string | undefined;
  directLvmDevice: string | undefined;
  directLvmDeviceForce: boolean;
  thinpPercent: number;
  thinpMetaPercent: number;
  autoextendThreshold: number;
  autoextendPercent: number;
  minFreeSpace: number;
  useDeferredRemoval: boolean;
  useDeferredDeletion: boolean;
  blkdiscard: boolean;
  zeroBlocks: boolean;
  noSpacePolicy: NoSpacePolicy;
  uncachedWriteMin: Bytes;
  overrideUdevSyncCheck: boolean;
  libdmLogLevel: number | undefined;
  xfsNospaceMaxRetries: number | undefined;
}

export type OptionField = keyof StorageOptions;
export type OptionTable = {
  readonly [F in OptionField]: OptionSpec<NonNullable<StorageOptions[F]>>;
};

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const sizeOf = (n: number) => n as Bytes;

/** Metadata blocks are 4 KiB, and the format addresses at most 255 × 16320 of them. */
const METADATA_BLOCK = sizeOf(4 * KiB);
export const MAX_METADATA_SIZE = sizeOf(255 * 16320 * 4 * KiB);

/** Data blocks: a multiple of 64 KiB from 64 KiB to 1 GiB, as the kernel's pool target. */
const DATA_BLOCK_RULE = { min: sizeOf(64 * KiB), max: sizeOf(GiB), multipleOf: sizeOf(64 * KiB) };
const DEVICE_SIZE_RULE = { min: sizeOf(MiB), multipleOf: sizeOf(512) };

export const OPTIONS: OptionTable = {
  baseSize: sizeOption(
    'dm.basesize',
    'size of the base device (can grow, never shrink)',
    DEVICE_SIZE_RULE,
  ),
  loopDataSize: sizeOption(
    'dm.loopdatasize',
    'loop mode: size of the sparse data file',
    DEVICE_SIZE_RULE,
  ),
  loopMetadataSize: sizeOption(
    'dm.loopmetadatasize',
    'loop mode: size of the sparse metadata file',
    {
      min: sizeOf(MiB),
      max: MAX_METADATA_SIZE,
      multipleOf: METADATA_BLOCK,
    },
  ),
  blockSize: sizeOption('dm.blocksize', 'data block size of the pool', DATA_BLOCK_RULE),
  fs: choiceOption('dm.fs', 'filesystem of the base device', FILESYSTEMS),
  mkfsArgs: listOption('dm.mkfsarg', 'extra argument for mkfs of the base device (repeatable)'),
  mountOpt: joinedOption('dm.mountopt', 'mount options for layers and containers'),
  dataDev: pathOption('dm.datadev', 'direct mode: block device for data'),
  metadataDev: pathOption('dm.metadatadev', 'direct mode: block device for metadata'),
  thinPoolDev: nameOption(
    'dm.thinpooldev',
    'direct mode: the pool of another root (its absolute path)',
  ),
  directLvmDevice: pathOption('dm.directlvm_device', 'direct mode: one block device thinp divides'),
  directLvmDeviceForce: booleanOption(
    'dm.directlvm_device_force',
    'format that device even if it holds a filesystem',
  ),
  thinpPercent: percentOption('dm.thinp_percent', 'share of that device for data', {
    min: 1,
    max: 99,
    sign: 'optional',
  }),
  thinpMetaPercent: percentOption('dm.thinp_metapercent', 'share of that device for metadata', {
    min: 1,
    max: 99,
    sign: 'optional',
  }),
  autoextendThreshold: percentOption(
    'dm.thinp_autoextend_threshold',
    'grow the pool when this full (100: never)',
    {
      min: 1,
      max: 100,
      sign: 'optional',
    },
  ),
  autoextendPercent: percentOption(
    'dm.thinp_autoextend_percent',
    'grow the pool by this share of its size',
    {
      min: 1,
      max: 100,
      sign: 'optional',
    },
  ),
  minFreeSpace: percentOption('dm.min_free_space', 'refuse new devices below this free share', {
    min: 0,
    max: 99,
    sign: 'required',
  }),
  useDeferredRemoval: booleanOption('dm.use_deferred_removal', 'defer removal of busy devices'),
  useDeferredDeletion: booleanOption('dm.use_deferred_deletion', 'defer deletion of busy devices'),
  blkdiscard: booleanOption('dm.blkdiscard', 'discard the blocks of removed devices'),
  zeroBlocks: booleanOption('dm.zero_blocks', 'zero new blocks that are partially written'),
  noSpacePolicy: choiceOption(
    'dm.no_space_policy',
    'when out of space: error, or queue writes up to 60 s',
    NO_SPACE_POLICIES,
  ),
  uncachedWriteMin: sizeOption(
    'dm.uncached_write_min',
    'writes this large go around the page cache (0: none)',
    { min: sizeOf(0), max: GiB as Bytes, multipleOf: sizeOf(4 * KiB) },
  ),
  overrideUdevSyncCheck: booleanOption(
    'dm.override_udev_sync_check',
    'accepted for compatibility: thinp uses no udev',
  ),
  libdmLogLevel: integerOption(
    'dm.libdm_log_level',
    'accepted for compatibility: thinp uses no libdm',
    {
      min: 2,
      max: 7,
    },
  ),
  xfsNospaceMaxRetries: integerOption(
    'dm.xfs_nospace_max_retries',
    'XFS retries on ENOSPC before it fails',
    {
      min: 0,
      max: Number.MAX_SAFE_INTEGER,
    },
  ),
};

/** Defaults that depend on nothing; the loader chooses the others (CHOSEN_DEFAULTS). */
export const STATIC_DEFAULTS: Omit<StorageOptions, 'fs' | 'blkdiscard' | 'useDeferredDeletion'> = {
  baseSize: sizeOf(10 * GiB),
  loopDataSize: sizeOf(100 * GiB),
  loopMetadataSize: sizeOf(2 * GiB),
  blockSize: sizeOf(64 * KiB),
  mkfsArgs: [],
  mountOpt: undefined,
  dataDev: undefined,
  metadataDev: undefined,
  thinPoolDev: undefined,
  directLvmDevice: undefined,
  directLvmDeviceForce: false,
  thinpPercent: 95,
  thinpMetaPercent: 1,
  autoextendThreshold: 80,
  autoextendPercent: 20,
  minFreeSpace: 10,
  useDeferredRemoval: true,
  zeroBlocks: true,
  noSpacePolicy: 'error',
  uncachedWriteMin: sizeOf(256 * KiB),
  overrideUdevSyncCheck: false,
  libdmLogLevel: undefined,
  xfsNospaceMaxRetries: undefined,
};

export const OPTION_FIELDS = Object.keys(OPTIONS) as OptionField[];

/** Defaults the loader chooses from other things (see resolveDefaults in load.ts). */
const CHOSEN_DEFAULTS: Partial<Record<OptionField, string>> = {
  fs: 'xfs if mkfs.xfs is installed, else ext4',
  blkdiscard: 'true in loop mode, false in direct mode',
  useDeferredDeletion: 'as dm.use_deferred_removal',
};

/** The default of `field` in words, for help: `10G`, `none`, `xfs if mkfs.xfs is installed…`. */
export function describeDefault(field: OptionField): string {
  const chosen = CHOSEN_DEFAULTS[field];
  if (chosen !== undefined) return chosen;
  const value: unknown = (STATIC_DEFAULTS as Partial<StorageOptions>)[field];
  if (value === undefined || (Array.isArray(value) && value.length === 0)) return 'none';
  return (OPTIONS[field] as OptionSpec<unknown>).format(value);
}

/** The field for `key` (case-insensitive, as Docker), or undefined if no option has it. */
export function fieldOfKey(key: string): OptionField | undefined {
  const lower = key.toLowerCase();
  return OPTION_FIELDS.find((field) => OPTIONS[field].key === lower);
}
