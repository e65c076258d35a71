/**
 * Handing an attachment over (see `Lingering` in types.ts): when our filesystem mount is
 * gone but the filesystem still lives in mounts that are not ours (a bind mount whose lazy
 * unmount has not finished, a container's mount namespace), the loop device, the FUSE mount,
 * nbdfuse and the relay cannot be taken down without cutting that filesystem's I/O. So the
 * kernel finishes the teardown at the last close instead: the loop device is detached with
 * autoclear, the FUSE mount lazily; nbdfuse and the relay serve until the FUSE session ends,
 * then exit, and the export's NBD connection closes with them.
 *
 * The record stays, marked `handedOver` and renamed `<key>.lingering-<pid>.json` (its log
 * likewise), so the export can be attached again meanwhile and a restarted daemon still
 * knows the device has a user. `settle()` removes it once the processes have ended.
 *
 * Crash safety: the record is marked in place (atomically) before it is renamed, and a
 * marked record is lingering whatever its name: a crash never makes a live hand-over look
 * stale, which would end the processes still serving it.
 */

import { rename, rm, rmdir } from 'node:fs/promises';
import { run, runOk } from './programs.js';
import { removeRecord, writeRecord } from './state-file.js';
import { mountsAt, processGroup } from './system.js';
import type { AttachmentRecord, Lingering } from './types.js';

export class LingeringAttachment implements Lingering {
  constructor(
    readonly record: AttachmentRecord,
    readonly stateFile: string,
  ) {}

  get exportName(): string {
    return this.record.exportName;
  }

  async ended(): Promise<boolean> {
    const { pid, pidStart } = this.record;
    if (pid === undefined) return true;
    return (await processGroup(pid, pidStart)).length === 0;
  }

  async settle(): Promise<void> {
    const { fuseDir, logFile } = this.record;
    if (fuseDir !== undefined) await rmdir(fuseDir).catch(() => undefined);
    if (logFile !== undefined) await rm(logFile, { force: true });
    await removeRecord(this.stateFile);
  }
}

/** The name a handed-over record (or log) moves to: `<stem>.lingering-<pid><ext>`. */
function lingeringName(file: string, ext: string, pid: number | undefined): string {
  const stem = file.endsWith(ext) ? file.slice(0, -ext.length) : file;
  return `${stem}.lingering-${pid ?? 'none'}${ext}`;
}

/** Hands `record` over to the kernel and the mounts that are not ours (see the module comment). */
export async function handOver(
  record: AttachmentRecord,
  stateFile: string,
  options: { searchPath?: string },
): Promise<Lingering> {
  await runOk('losetup', ['-d', record.devicePath], record.devicePath, options);
  const fuseDir = record.fuseDir;
  if (fuseDir !== undefined && (await mountsAt(fuseDir)).length > 0) {
    const result = await run('fusermount3', ['-u', '-z', fuseDir], options);
    if (result.status !== 0) await runOk('umount', ['-l', fuseDir], fuseDir, options);
  }
  if (fuseDir !== undefined) await rmdir(fuseDir).catch(() => undefined);
  if (record.logFile !== undefined) {
    const log = lingeringName(record.logFile, '.log', record.pid);
    if (
      await rename(record.logFile, log).then(
        () => true,
        () => false,
      )
    )
      record.logFile = log;
  }
  record.handedOver = true;
  await writeRecord(stateFile, record);
  const moved = lingeringName(stateFile, '.json', record.pid);
  await rename(stateFile, moved);
  return new LingeringAttachment(record, moved);
}
