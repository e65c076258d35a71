/**
 * A filesystem mounted on an export: attach, then `mount -t TYPE -o OPTIONS`. xfs always gets
 * `nouuid` (snapshots share their origin's UUID, which xfs otherwise refuses to mount twice),
 * a read-only mount gets `ro`. The target is recorded before the mount is made; when the
 * mount fails, the attachment is torn down, so nothing is left behind.
 */

import { mkdir } from 'node:fs/promises';
import { crashPoint } from '../util/index.js';
import { MountError } from './errors.js';
import { runOk } from './programs.js';
import { writeRecord } from './state-file.js';
import { mountsAt } from './system.js';
import { teardown } from './teardown.js';
import { TrackedAttachment, TrackedMount } from './tracked.js';
import type { Attacher, FsOptions, MountedFs } from './types.js';

/** The `-o` list for a mount of `fs`. */
export function mountOptions(fs: FsOptions): string[] {
  const options = [...fs.options];
  if (fs.type === 'xfs' && !options.includes('nouuid')) options.push('nouuid');
  if (fs.readOnly === true && !options.includes('ro')) options.push('ro');
  return options;
}

export async function mountDevice(
  attacher: Attacher,
  exportName: string,
  target: string,
  fs: FsOptions,
): Promise<MountedFs> {
  const attachment = await attacher.attach(exportName, { readOnly: fs.readOnly === true });
  if (!(attachment instanceof TrackedAttachment)) {
    throw new TypeError('mountDevice needs an attacher of this layer');
  }
  const { record, stateFile, searchPath } = attachment;
  try {
    await mkdir(target, { recursive: true });
    record.target = target;
    record.fsType = fs.type;
    record.mountOptions = mountOptions(fs);
    await writeRecord(stateFile, record);
    await mountOn(record.devicePath, target, fs.type, mountOptions(fs), searchPath);
    crashPoint('mount-mounted');
  } catch (err) {
    await teardown(record, stateFile, { searchPath }).catch((e) => {
      throw new AggregateError([err, e], `mounting ${exportName} failed, and so did cleanup`);
    });
    throw err;
  }
  return new TrackedMount(attachment, target, fs.type, mountOptions(fs));
}

/** `mount -t type -o options device target`, checked in the mount table. */
export async function mountOn(
  device: string,
  target: string,
  type: FsOptions['type'],
  options: readonly string[],
  searchPath: string | undefined,
): Promise<void> {
  const args = ['-t', type, ...(options.length > 0 ? ['-o', options.join(',')] : [])];
  await runOk('mount', [...args, device, target], device, {
    searchPath,
    hint: `check that ${device} holds a ${type} filesystem and that the options are valid`,
  });
  const entries = await mountsAt(target);
  if (!entries.some((e) => e.source === device)) {
    throw new MountError(device, 'mount', `${target} is not in the mount table`);
  }
}
