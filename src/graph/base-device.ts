/**
 * The base device, as Docker's devicemapper driver sets it up at every start
 * (`setupBaseImage`): thin device `base` (metadata/base), dm.basesize bytes, with a real
 * filesystem of dm.fs. Every layer without a parent is a snapshot of it.
 *
 * - Missing: create it uninitialized, record the filesystem type in deviceset-metadata,
 *   attach it, mkfs (dm.mkfsarg; ext4 gets Docker's -E options and tune2fs), read its UUID
 *   with blkid, mark it initialized, record the UUID. A crash before "initialized" leaves a
 *   device the next start deletes and makes again.
 * - Present: compare the filesystem's UUID with the recorded one (Docker's error when they
 *   differ: another pool than last time); fill in a UUID or type recorded empty.
 * - dm.basesize given and larger than the device: grow the device, then its filesystem
 *   (mounted on a scratch mount point, xfs_growfs or resize2fs). Smaller: Docker's error.
 *   Layers made earlier keep their size (they are snapshots of the old base).
 *
 * It needs a served device (an attacher), so it runs in the daemon.
 */

import { mkdir, rmdir } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config/index.js';
import { BASE_DEVICE, type DeviceSet } from '../driver/index.js';
import type { Attacher, FsType, MountedFs } from '../mount/index.js';
import { BadInputError, BusyError, type Bytes, formatHumanSize } from '../util/index.js';
import type { FilesystemTools } from './tools.js';

export interface BaseDeviceContext {
  config: Config;
  set: DeviceSet;
  fs: FilesystemTools;
  attacher: Attacher;
  /**
   * Resolves once no attachment that outlived a previous daemon still uses device `name`
   * (a process that daemon started, such as its mkfs, may still write through it); a
   * BusyError when one still does after a while.
   */
  waitLingering: (name: string) => Promise<void>;
  log: (event: string, fields: Record<string, unknown>) => void;
}

/** Refused: the base device's filesystem is not the one this pool recorded. */
export class BaseDeviceMismatchError extends BadInputError {}

/** Creates, verifies and grows the base device; see the module comment. */
export async function setupBaseDevice(ctx: BaseDeviceContext): Promise<void> {
  const { set } = ctx;
  const existing = set.lookup(BASE_DEVICE);
  if (existing !== undefined && !existing.initialized) {
    ctx.log('base-device-unfinished', { device: BASE_DEVICE, id: existing.id });
    // A crash during the making leaves its mkfs (or blkid) running, writing through the
    // attachment that outlived the daemon: the device goes once they are done, so that none
    // of their writes lands on the device made next under the same name.
    await ctx.waitLingering(BASE_DEVICE);
    await set.removeDevice(BASE_DEVICE);
  }
  const base = set.lookup(BASE_DEVICE);
  if (base?.deleted === true) {
    throw new BusyError(
      `the base device is being removed but is still open (${set.openCount(BASE_DEVICE)} users)`,
      {
        hint:
          'end what still uses it (a process holding its loop device open: see ' +
          "'losetup -a' and 'fuser -v' on that device), then start the daemon again",
      },
    );
  }
  if (base === undefined) {
    await createBaseDevice(ctx);
    return;
  }
  await verifyBaseDevice(ctx);
  await growBaseDevice(ctx, base.size);
}

async function createBaseDevice(ctx: BaseDeviceContext): Promise<void> {
  const { set, config } = ctx;
  const type: FsType = config.storage.fs;
  await set.setBaseFilesystem({ uuid: '', filesystem: type });
  await set.createDevice(BASE_DEVICE, config.storage.baseSize, { initialized: false });
  let uuid: string;
  try {
    uuid = await withAttachment(ctx, async (devicePath) => {
      await ctx.fs.makeFilesystem(devicePath, type, [...config.storage.mkfsArgs]);
      return (await probe(ctx, devicePath)).uuid;
    });
  } catch (err) {
    // Nothing may be made on a base device without its filesystem: it goes, and the next
    // layer on the base device tries again.
    await set.removeDevice(BASE_DEVICE).catch(() => undefined);
    throw err;
  }
  await set.markInitialized(BASE_DEVICE);
  await set.setBaseFilesystem({ uuid, filesystem: type });
  ctx.log('base-device-created', { size: config.storage.baseSize, filesystem: type, uuid });
}

async function verifyBaseDevice(ctx: BaseDeviceContext): Promise<void> {
  const { set, config } = ctx;
  const recorded = set.baseFilesystem;
  const found = await withAttachment(ctx, (devicePath) => probe(ctx, devicePath));
  if (recorded.uuid !== '' && recorded.uuid !== found.uuid) {
    throw new BaseDeviceMismatchError(
      'Base Device UUID and Filesystem verification failed: Current Base Device UUID:' +
        `${found.uuid} does not match with stored UUID:${recorded.uuid}. Possibly using a ` +
        'different thin pool than last invocation',
      {
        hint:
          `give the --root of the pool this base device belongs to; if ${config.root} is ` +
          'right, its metadata folder belongs to another pool',
      },
    );
  }
  if (recorded.uuid === '' || recorded.filesystem === '') {
    await set.setBaseFilesystem({
      uuid: found.uuid,
      filesystem: recorded.filesystem === '' ? found.type : recorded.filesystem,
    });
  }
  const filesystem = set.baseFilesystem.filesystem;
  if (config.origins.fs.kind !== 'default' && config.storage.fs !== filesystem) {
    ctx.log('base-device-filesystem-kept', { asked: config.storage.fs, existing: filesystem });
  }
}

async function growBaseDevice(ctx: BaseDeviceContext, current: number): Promise<void> {
  const { config, set } = ctx;
  if (config.origins.baseSize.kind === 'default') return;
  const wanted = config.storage.baseSize;
  if (wanted < current) {
    throw new BadInputError(
      `Base device size cannot be smaller than ${formatHumanSize(current as Bytes)}`,
      { hint: `give dm.basesize=${current} or more: the base device only grows` },
    );
  }
  if (wanted === current) return;
  await set.growDevice(BASE_DEVICE, wanted);
  await withMounted(ctx, (mounted) => ctx.fs.growFilesystem(mounted));
  ctx.log('base-device-grown', { from: current, to: wanted });
}

/** Runs `fn` with the base device attached as a block device, detaching afterwards. */
async function withAttachment<T>(
  ctx: BaseDeviceContext,
  fn: (devicePath: string) => Promise<T>,
): Promise<T> {
  const attachment = await ctx.attacher.attach(BASE_DEVICE);
  try {
    return await fn(attachment.devicePath);
  } finally {
    await attachment.detach();
  }
}

/** Runs `fn` with the base filesystem mounted on ROOT/mnt/base, unmounting afterwards. */
async function withMounted<T>(
  ctx: BaseDeviceContext,
  fn: (mounted: MountedFs) => Promise<T>,
): Promise<T> {
  const target = path.join(ctx.config.layout.mountDir, BASE_DEVICE);
  await mkdir(target, { recursive: true, mode: 0o755 });
  const type = ctx.set.baseFilesystem.filesystem as FsType;
  const options = ctx.config.storage.mountOpt === undefined ? [] : [ctx.config.storage.mountOpt];
  const mounted = await ctx.fs.mountDevice(ctx.attacher, BASE_DEVICE, target, { type, options });
  try {
    return await fn(mounted);
  } finally {
    await mounted.unmount();
    await rmdir(target).catch(() => undefined);
  }
}

async function probe(
  ctx: BaseDeviceContext,
  devicePath: string,
): Promise<{ type: string; uuid: string }> {
  const found = await ctx.fs.probeFilesystem(devicePath);
  if (found === undefined || found.uuid === '') {
    throw new BadInputError(`the base device (${devicePath}) holds no filesystem blkid knows`, {
      hint:
        "remove the base device ('thinp device remove base') so that the next start makes " +
        'it again, or restore the pool from a backup',
    });
  }
  return found;
}
