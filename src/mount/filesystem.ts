/**
 * Filesystems on an attached device, made and changed by their own tools (run
 * asynchronously): mkfs the way Docker's devicemapper driver does it, identification by
 * blkid, and growth of a mounted filesystem to its device's size.
 */

import { BadInputError } from '../util/index.js';
import { MountError } from './errors.js';
import { mountOn } from './mount-device.js';
import { run, runOk } from './programs.js';
import type { FsType, MountedFs } from './types.js';

/** ext4 as Docker makes it: no discard pass, every table written now (no lazy init). */
export const EXT4_MKFS_ARGS = ['-E', 'nodiscard,lazy_itable_init=0,lazy_journal_init=0'];

/**
 * Makes a `type` filesystem on `devicePath` with the caller's `extraArgs` (dm.mkfsarg).
 * ext4 then gets `tune2fs -c -1 -i 0`: no check forced by mount count or time.
 */
export async function makeFilesystem(
  devicePath: string,
  type: FsType,
  extraArgs: readonly string[],
  options: { searchPath?: string } = {},
): Promise<void> {
  const o = { ...options, timeoutMs: 600_000 };
  if (type === 'xfs') {
    await runOk('mkfs.xfs', ['-q', '-f', ...extraArgs, devicePath], devicePath, o);
    return;
  }
  if (type !== 'ext4') {
    throw new BadInputError(`filesystem type '${String(type)}' is not supported`, {
      hint: 'use xfs or ext4 (dm.fs)',
    });
  }
  await runOk(
    'mkfs.ext4',
    ['-q', '-F', ...EXT4_MKFS_ARGS, ...extraArgs, devicePath],
    devicePath,
    o,
  );
  await runOk('tune2fs', ['-c', '-1', '-i', '0', devicePath], devicePath, o);
}

/** `blkid -o export` output as a map of its KEY=value lines. */
export function parseBlkidExport(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) fields.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return fields;
}

/** The filesystem type and UUID on `devicePath`, probed directly; undefined when none. */
export async function probeFilesystem(
  devicePath: string,
  options: { searchPath?: string } = {},
): Promise<{ type: string; uuid: string } | undefined> {
  const result = await run('blkid', ['-p', '-o', 'export', devicePath], options);
  // blkid exits 2 when it finds nothing it knows on the device.
  if (result.status === 2) return undefined;
  if (result.status !== 0) {
    await runOk('blkid', ['-p', '-o', 'export', devicePath], devicePath, options);
  }
  const fields = parseBlkidExport(result.stdout);
  const type = fields.get('TYPE');
  if (type === undefined) return undefined;
  return { type, uuid: fields.get('UUID') ?? '' };
}

/**
 * Grows the mounted filesystem to the size of its device: resize2fs on the device for ext4,
 * xfs_growfs on the mount point for xfs, both online. ext4's online resize needs
 * CAP_SYS_RESOURCE, which containers often drop (resize2fs then says "Permission denied"):
 * the filesystem is then unmounted, checked (e2fsck -f -p), grown offline and mounted again
 * at the same place with the same options.
 */
export async function growFilesystem(
  mounted: MountedFs,
  type: FsType = mounted.type,
  options: { searchPath?: string } = {},
): Promise<void> {
  if (type !== mounted.type) {
    throw new BadInputError(`${mounted.target} holds ${mounted.type}, not ${type}`, {
      hint: 'grow it as the type it was mounted with',
    });
  }
  const device = mounted.attachment.devicePath;
  const o = { ...options, timeoutMs: 600_000 };
  if (type === 'xfs') {
    await runOk('xfs_growfs', [mounted.target], device, o);
    return;
  }
  const online = await run('resize2fs', [device], o);
  if (online.status === 0) return;
  if (!/Permission denied|Operation not permitted/.test(online.stderr)) {
    await runOk('resize2fs', [device], device, o);
  }
  await growExt4Offline(mounted, o);
}

async function growExt4Offline(
  mounted: MountedFs,
  o: { searchPath?: string; timeoutMs: number },
): Promise<void> {
  const device = mounted.attachment.devicePath;
  await runOk('umount', [mounted.target], mounted.target, {
    ...o,
    hint: `close what uses ${mounted.target}, then grow it again`,
  });
  // e2fsck exits 1 when it fixed something harmless (-p never asks), 0 when all was well.
  const check = await run('e2fsck', ['-f', '-p', device], o);
  if (check.status > 1) await runOk('e2fsck', ['-f', '-n', device], device, o);
  const grown = await run('resize2fs', [device], o);
  await mountOn(device, mounted.target, 'ext4', mounted.options, o.searchPath);
  if (grown.status !== 0) {
    throw new MountError(
      device,
      'resize2fs',
      grown.stderr.trim() || `exit status ${grown.status}`,
      {
        hint: `run 'e2fsck -f ${device}' and 'resize2fs ${device}' by hand to see why`,
      },
    );
  }
}
