/**
 * dm.directlvm_device: thinp divides one block device itself, as Docker's direct-lvm setup
 * does with pvcreate, vgcreate and two lvcreates, but with its own label (pool-label.ts)
 * instead of LVM. Setting up refuses a device that holds anything blkid recognizes (a
 * filesystem, a partition table, an LVM or other label) or another thinp pool, unless
 * dm.directlvm_device_force=true, and a device too small for the percentages. Reopening
 * finds the devices by their labels, wherever they are attached now.
 */

import { execFile, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { BlockDevDevice } from '../block/index.js';
import type { Config } from '../config/index.js';
import { type Bytes, ConfigError, findOnPath, formatSize, NotFoundError } from '../util/index.js';

const size = (n: number) => formatSize(n as Bytes);

import {
  decodeLabel,
  EXTENT,
  hasLabelMagic,
  LABEL_AREA,
  LABEL_SLOT_SIZE,
  type PoolLabel,
} from './pool-label.js';
import { VolumeGroup } from './volume-group.js';

const run = promisify(execFile);
const SEARCH_PATH = [process.env.PATH ?? '', '/usr/sbin', '/sbin'].join(path.delimiter);

/** How long a scan waits for the label of one device. */
const SCAN_TIMEOUT_MS = 3000;

/** The least metadata a pool gets (LVM's minimum too). */
export const MIN_METADATA_BYTES = 2 * 1024 * 1024;
/** The least data space a pool gets. */
export const MIN_DATA_BYTES = 8 * 1024 * 1024;

/** Labels `config`'s dm.directlvm_device for a new pool; see the module comment. */
export async function setupDirectLvm(config: Config, device: string): Promise<VolumeGroup> {
  const bytes = await deviceSize(device);
  const { storage } = config;
  const found = await probe(device);
  if (found !== undefined && !storage.directLvmDeviceForce) {
    throw new ConfigError(`dm.directlvm_device ${device} holds ${found}`, {
      hint:
        'thinp formats only an empty device: give another device, or set ' +
        'dm.directlvm_device_force=true to wipe it (everything on it is lost)',
    });
  }
  const space = divide(device, bytes, storage.thinpPercent, storage.thinpMetaPercent);
  if (found !== undefined) await wipe(device);
  return VolumeGroup.format(device, bytes, { ...space, dataBlockSize: storage.blockSize });
}

/** Refuses a device to be added that holds anything, unless `force` (then wipes it). */
export async function checkNewDevice(device: string, force: boolean): Promise<void> {
  const found = await probe(device);
  if (found === undefined) return;
  if (!force) {
    throw new ConfigError(`${device} holds ${found}`, {
      hint:
        'thinp adds only an empty device: give another device, or set ' +
        'dm.directlvm_device_force=true to wipe it (everything on it is lost)',
    });
  }
  await wipe(device);
}

/** Data and metadata bytes for the percentages, in whole extents; refuses a small device. */
export function divide(
  device: string,
  deviceBytes: number,
  dataPercent: number,
  metaPercent: number,
): { dataBytes: number; metadataBytes: number } {
  const extents = (percent: number) => Math.floor((deviceBytes * percent) / 100 / EXTENT) * EXTENT;
  const metadataBytes = extents(metaPercent);
  const dataBytes = Math.min(extents(dataPercent), deviceBytes - LABEL_AREA - metadataBytes);
  const needed = Math.max(
    Math.ceil((MIN_METADATA_BYTES * 100) / metaPercent),
    Math.ceil((MIN_DATA_BYTES * 100) / dataPercent),
    LABEL_AREA + MIN_METADATA_BYTES + MIN_DATA_BYTES,
  );
  if (metadataBytes < MIN_METADATA_BYTES || dataBytes < MIN_DATA_BYTES) {
    throw new ConfigError(
      `dm.directlvm_device ${device} is too small: ${size(deviceBytes)} gives ` +
        `${size(dataBytes)} of data (dm.thinp_percent=${dataPercent}%) and ` +
        `${size(metadataBytes)} of metadata (dm.thinp_metapercent=${metaPercent}%); ` +
        `a pool needs at least ${size(MIN_DATA_BYTES)} and ${size(MIN_METADATA_BYTES)}`,
      {
        hint: `give a device of at least ${size(Math.ceil(needed / EXTENT) * EXTENT)}, or raise the percentages`,
      },
    );
  }
  return { dataBytes, metadataBytes };
}

/** What is on `device` that setting up would destroy, in words; undefined when nothing. */
export async function probe(device: string): Promise<string | undefined> {
  const label = await readLabel(device);
  if (label.found) {
    return typeof label.label === 'string'
      ? `a damaged thinp pool label (${label.label})`
      : `the label of thinp pool ${label.label.poolUuid}`;
  }
  const blkid = await findOnPath('blkid', SEARCH_PATH);
  if (blkid === undefined) {
    throw new NotFoundError('blkid is not installed: thinp needs it to check a device is empty', {
      hint: 'install the Debian package util-linux',
    });
  }
  try {
    const { stdout } = await run(blkid, ['-p', '-o', 'export', device]);
    return describeProbe(stdout);
  } catch (err) {
    // Exit status 2: blkid found nothing.
    if ((err as { code?: unknown }).code === 2) return undefined;
    throw err;
  }
}

/** blkid's `-o export` lines as "an ext4 filesystem", "a gpt partition table", ... */
export function describeProbe(stdout: string): string | undefined {
  const fields = new Map(
    stdout
      .split('\n')
      .map((line) => line.split('='))
      .filter((kv) => kv.length >= 2)
      .map(([k, ...v]) => [k as string, v.join('=')]),
  );
  const type = fields.get('TYPE');
  const usage = fields.get('USAGE');
  if (fields.has('PTTYPE')) return `a ${fields.get('PTTYPE')} partition table (blkid)`;
  if (type === undefined) return undefined;
  const what = usage === 'filesystem' ? 'filesystem' : usage === 'raid' ? 'RAID member' : 'label';
  return `${/^[aeiou]/i.test(type) ? 'an' : 'a'} ${type} ${what} (blkid)`;
}

/** The newer of the two label slots on `device`, or why neither is valid. */
export async function readLabel(device: string): Promise<LabelFound> {
  const dev = await BlockDevDevice.open(device, { readOnly: true });
  try {
    if (dev.size < 2 * LABEL_SLOT_SIZE) return { found: false };
    const buf = Buffer.alloc(2 * LABEL_SLOT_SIZE);
    await dev.read(buf, 0);
    return pickLabel(buf);
  } finally {
    await dev.close();
  }
}

type LabelFound = { found: false } | { found: true; label: PoolLabel | string };

/** The newer valid slot of the two in `buf`, or why neither is valid. */
function pickLabel(buf: Buffer): LabelFound {
  const slots = [buf.subarray(0, LABEL_SLOT_SIZE), buf.subarray(LABEL_SLOT_SIZE)];
  if (!slots.some(hasLabelMagic)) return { found: false };
  const decoded = slots.map(decodeLabel);
  const valid = decoded.filter((l): l is PoolLabel => typeof l !== 'string');
  valid.sort((a, b) => b.seqno - a.seqno);
  return { found: true, label: valid[0] ?? (decoded[0] as string) };
}

/**
 * `readLabel` for a device that may be anyone's: the read runs in a child process (dd),
 * given up after `timeoutMs`. A device of another owner can hang a read for good (a loop
 * device over a stalled FUSE file), and that must not hang thinp or take a thread of its
 * pool; the child is left to the kernel.
 */
function readLabelAside(device: string, timeoutMs = SCAN_TIMEOUT_MS): Promise<LabelFound> {
  return new Promise((resolve) => {
    const bytes = 2 * LABEL_SLOT_SIZE;
    const child = spawn('dd', [`if=${device}`, `bs=${bytes}`, 'count=1', 'status=none'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      child.unref();
      resolve({ found: false });
    }, timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.on('error', () => resolve({ found: false }));
    child.on('close', (code) => {
      clearTimeout(timer);
      const buf = Buffer.concat(chunks);
      resolve(code === 0 && buf.length === bytes ? pickLabel(buf) : { found: false });
    });
  });
}

/**
 * The volume group of pool `poolUuid`: reads the labels of `candidates` (the devices the
 * options and thinp.json name), then of every block device of the machine if some device
 * of the pool is still missing. Throws NotFoundError naming each missing device.
 */
export async function findVolumeGroup(
  poolUuid: string,
  candidates: readonly string[],
  lastKnown: ReadonlyMap<string, string>,
): Promise<VolumeGroup> {
  const seen = new Map<string, { path: string; label: PoolLabel }>();
  const tried = new Set<string>();
  const look = async (paths: readonly string[]) => {
    const fresh = [...new Set(paths)].filter((p) => !tried.has(p));
    for (const p of fresh) tried.add(p);
    const labels = await Promise.all(fresh.map((p) => readLabelAside(p)));
    for (const [i, label] of labels.entries()) {
      const p = fresh[i] as string;
      if (!label.found || typeof label.label === 'string') continue;
      if (label.label.poolUuid !== poolUuid) continue;
      const had = seen.get(label.label.deviceUuid);
      if (had === undefined || had.label.seqno < label.label.seqno) {
        seen.set(label.label.deviceUuid, { path: p, label: label.label });
      }
    }
  };
  const missing = () => {
    const newest = newestLabel(seen);
    return newest === undefined ? [undefined] : newest.devices.filter((d) => !seen.has(d.uuid));
  };
  await look(candidates);
  if (missing().length > 0) await look(await allBlockDevices());
  const newest = newestLabel(seen);
  if (newest === undefined || missing().length > 0) {
    throw new NotFoundError(
      `cannot find ${describeMissing(poolUuid, newest, seen, lastKnown)}: ` +
        'no attached block device has its label',
      {
        hint: 'attach the device (for a loop device: losetup --find FILE), then start thinp again',
      },
    );
  }
  const paths = newest.devices.map((d) => (seen.get(d.uuid) as { path: string }).path);
  const group = new VolumeGroup(newest, paths);
  group.noteSizes(await Promise.all(paths.map(deviceSize)));
  return group;
}

/** "device U (last at /dev/X), ..." for the devices of the pool no label was found for. */
function describeMissing(
  poolUuid: string,
  newest: PoolLabel | undefined,
  seen: Map<string, unknown>,
  lastKnown: ReadonlyMap<string, string>,
): string {
  if (newest === undefined) {
    return `any device of pool ${poolUuid} (last at ${[...lastKnown.values()].join(', ')})`;
  }
  return newest.devices
    .filter((d) => !seen.has(d.uuid))
    .map(
      (d) =>
        `device ${d.uuid} of pool ${poolUuid} (last at ${lastKnown.get(d.uuid) ?? 'an unrecorded path'})`,
    )
    .join(', ');
}

function newestLabel(seen: Map<string, { label: PoolLabel }>): PoolLabel | undefined {
  let newest: PoolLabel | undefined;
  for (const { label } of seen.values())
    if (newest === undefined || label.seqno > newest.seqno) newest = label;
  return newest;
}

/**
 * /dev/NAME for every block device the kernel lists in /proc/partitions that is large
 * enough to hold a pool (the sizes there cost no I/O: empty loop and nbd devices drop out).
 */
async function allBlockDevices(): Promise<string[]> {
  const text = await readFile('/proc/partitions', 'utf8').catch(() => '');
  return text
    .split('\n')
    .slice(2)
    .map((line) => line.trim().split(/\s+/))
    .filter(([, , kib, name]) => name !== undefined && Number(kib) * 1024 >= LABEL_AREA * 2)
    .map(([, , , name]) => `/dev/${name}`);
}

export async function deviceSize(device: string): Promise<number> {
  const dev = await BlockDevDevice.open(device, { readOnly: true });
  try {
    return dev.size;
  } finally {
    await dev.close();
  }
}

/** Erases every signature blkid knows, and the label area, on a device being forced. */
async function wipe(device: string): Promise<void> {
  const wipefs = await findOnPath('wipefs', SEARCH_PATH);
  if (wipefs !== undefined) await run(wipefs, ['-a', '-q', device]);
  const dev = await BlockDevDevice.open(device, { offset: 0, size: LABEL_AREA });
  try {
    await dev.write(Buffer.alloc(LABEL_AREA), 0);
    await dev.flush();
  } finally {
    await dev.close();
  }
}
