/**
 * How far a pool's data or metadata space can grow without a new device, by mode:
 * - loop: the sparse file may grow while its size stays within what it holds now plus the
 *   free space of its filesystem (a file never promises space the filesystem cannot give);
 * - dm.datadev / dm.metadatadev: up to the end of the device (it may have grown: lvextend,
 *   `losetup -c`);
 * - direct-lvm: the free extents of the pool's devices (the volume group's business).
 */

import { statfs } from 'node:fs/promises';
import path from 'node:path';
import { BlockDevDevice, type BlockDevice, FileDevice } from '../block/index.js';

/** Bytes `device` may still grow by (0 when it cannot). */
export async function growRoom(device: BlockDevice): Promise<number> {
  if (device instanceof FileDevice) {
    const fs = await statfs(path.dirname(device.name));
    const allocated = await device.allocatedBytes();
    return Math.max(0, allocated + fs.bavail * fs.bsize - device.size);
  }
  if (device instanceof BlockDevDevice) return Math.max(0, device.deviceSize() - device.size);
  return 0;
}
