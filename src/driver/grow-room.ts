/**
 * How far a pool's data or metadata space can grow without a new device, by mode:
 * - loop: every byte the pool's sparse files may still write needs a free block of their
 *   filesystem, so a file may grow only by what the filesystem has free beyond what both
 *   files already promise (their holes), less a reserve for the filesystem's own needs;
 * - dm.datadev / dm.metadatadev: up to the end of the device (it may have grown: lvextend,
 *   `losetup -c`);
 * - direct-lvm: the free extents of the pool's devices (the volume group's business).
 */

import { stat, statfs } from 'node:fs/promises';
import path from 'node:path';
import { BlockDevDevice, type BlockDevice, FileDevice } from '../block/index.js';

/** The share of a filesystem kept free for its own metadata (extent trees, journal). */
const RESERVE_SHARE = 0.01;
const MAX_RESERVE = 64 * 1024 * 1024;

/**
 * Bytes `device` may still grow by (0 when it cannot). `siblings` are the pool's other
 * devices: files among them on the same filesystem share its free space.
 */
export async function growRoom(
  device: BlockDevice,
  siblings: readonly BlockDevice[] = [],
): Promise<number> {
  if (device instanceof FileDevice) return fileRoom(device, siblings);
  if (device instanceof BlockDevDevice) return Math.max(0, device.deviceSize() - device.size);
  return 0;
}

async function fileRoom(file: FileDevice, siblings: readonly BlockDevice[]): Promise<number> {
  const fs = await statfs(path.dirname(file.name));
  const home = (await stat(file.name)).dev;
  let promised = 0;
  let allocated = 0;
  for (const f of [file, ...siblings]) {
    if (!(f instanceof FileDevice) || (await stat(f.name)).dev !== home) continue;
    const bytes = await f.allocatedBytes();
    promised += Math.max(0, f.size - bytes);
    allocated += bytes;
  }
  // While writes are being allocated, the files' blocks can count more than the filesystem
  // has in use: what they count beyond it is not written yet, so it is promised too.
  promised += Math.max(0, allocated - (fs.blocks - fs.bfree) * fs.bsize);
  const reserve = Math.min(MAX_RESERVE, fs.blocks * fs.bsize * RESERVE_SHARE);
  return Math.max(0, Math.floor(fs.bavail * fs.bsize - promised - reserve));
}
