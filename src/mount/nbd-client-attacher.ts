/**
 * The attacher for kernels with the nbd module: `nbd-client` connects /dev/nbdN to the
 * daemon's socket. `-persist` makes nbd-client reconnect when the daemon restarts, so the
 * kernel device waits instead of failing (the kernel's own answer to what the relay does
 * for nbdfuse).
 *
 * NOT TESTED on the machine this was written on: it has no nbd module (/sys/module/nbd), so
 * only the choice between the backends is tested (choose-attacher tests); this file follows
 * nbd-client(8) and the kernel's sysfs layout (/sys/block/nbdN/pid exists while connected).
 */

import { readdir, readFile } from 'node:fs/promises';
import { BusyError } from '../util/index.js';
import { MountError } from './errors.js';
import { exportLock } from './export-lock.js';
import { runOk } from './programs.js';
import { readRecord, removeRecord, stateFileOf, writeRecord } from './state-file.js';
import { processStart, waitFor } from './system.js';
import { TrackedAttachment } from './tracked.js';
import type { Attacher, AttacherOptions, AttachmentRecord, AttachOptions } from './types.js';

/** The pid serving /dev/nbdN, or undefined when it is free. */
export async function nbdDevicePid(name: string): Promise<number | undefined> {
  try {
    return Number((await readFile(`/sys/block/${name}/pid`, 'utf8')).trim());
  } catch {
    return undefined;
  }
}

/** The free /dev/nbdN devices, lowest first. */
async function freeNbdDevices(): Promise<string[]> {
  const names = (await readdir('/sys/block')).filter((n) => /^nbd\d+$/.test(n));
  names.sort((a, b) => Number(a.slice(3)) - Number(b.slice(3)));
  const free: string[] = [];
  for (const n of names) if ((await nbdDevicePid(n)) === undefined) free.push(n);
  return free;
}

export class NbdClientAttacher implements Attacher {
  readonly kind = 'nbd-client' as const;

  constructor(private readonly options: AttacherOptions) {}

  attach(exportName: string, o: AttachOptions = {}): Promise<TrackedAttachment> {
    const stateFile = stateFileOf(this.options.stateDir, exportName);
    return exportLock.run(stateFile, () => this.attachLocked(exportName, stateFile, o));
  }

  private async attachLocked(
    exportName: string,
    stateFile: string,
    o: AttachOptions,
  ): Promise<TrackedAttachment> {
    if ((await readRecord(stateFile)) !== undefined) {
      throw new BusyError(`export ${exportName} is already attached`, {
        hint: `detach it first; after a crash, clean it with findMounts/cleanupStale (${stateFile})`,
      });
    }
    const record: AttachmentRecord = {
      version: 1,
      kind: 'nbd-client',
      exportName,
      readOnly: o.readOnly === true,
      devicePath: '',
    };
    for (const name of await freeNbdDevices()) {
      record.devicePath = `/dev/${name}`;
      await writeRecord(stateFile, record);
      try {
        await this.connect(record, name);
        await writeRecord(stateFile, record);
        return new TrackedAttachment(record, stateFile, this.options.searchPath);
      } catch (err) {
        // nbd-client failed, so the device is not ours: forget it, never disconnect it.
        await removeRecord(stateFile);
        if (!(err instanceof MountError)) throw err;
        // taken by someone else meanwhile: try the next one
      }
    }
    throw new BusyError(`no free /dev/nbdN device for export ${exportName}`, {
      hint: "load more with 'modprobe nbd nbds_max=64' or detach unused ones (nbd-client -d)",
    });
  }

  private async connect(record: AttachmentRecord, name: string): Promise<void> {
    const args = ['-unix', this.options.nbdSocket, record.devicePath, '-N', record.exportName];
    args.push('-block-size', '4096', '-persist');
    if (record.readOnly) args.push('-readonly');
    await runOk('nbd-client', args, record.devicePath, this.options);
    if (!(await waitFor(async () => (await nbdDevicePid(name)) !== undefined, 10_000))) {
      throw new MountError(record.devicePath, 'nbd-client', 'the device did not connect');
    }
    record.pid = await nbdDevicePid(name);
    if (record.pid !== undefined) record.pidStart = await processStart(record.pid);
  }
}
