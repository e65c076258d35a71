/**
 * After a restart: the attachments recorded in a state directory, each checked against the
 * system (mount table, `losetup -J`, /proc/PID with its start time). One whose every piece
 * is there is `live`: the daemon adopts it (the relay under nbdfuse has reconnected or is
 * reconnecting). One handed over to mounts not ours (lingering.ts) whose processes still
 * run is `lingering`: its device still has a user. Any other is `stale` (a daemon crashed
 * mid-attach, nbdfuse died, a loop device went away): `cleanupStale` removes what remains,
 * lazily, so a dead device never blocks the cleanup.
 */

import { LingeringAttachment } from './lingering.js';
import { listRecordFiles, readRecord, writeRecord } from './state-file.js';
import { type LoopDevice, listLoopDevices, mountsAt, processAlive } from './system.js';
import { teardown } from './teardown.js';
import { TrackedAttachment, TrackedMount } from './tracked.js';
import type { AttachmentRecord, FoundMount } from './types.js';

async function problemsOf(record: AttachmentRecord, loops: LoopDevice[]): Promise<string[]> {
  const problems: string[] = [];
  if (record.kind === 'nbdfuse') {
    const loop = loops.find((l) => l.name === record.devicePath);
    if (record.devicePath === '' || loop?.backFile !== record.fuseFile) {
      problems.push(`no loop device on ${record.fuseFile}`);
    }
    if (record.fuseDir === undefined || (await mountsAt(record.fuseDir)).length === 0) {
      problems.push(`no FUSE mount at ${record.fuseDir}`);
    }
    if (
      record.relayPid !== undefined &&
      !(await processAlive(record.relayPid, record.relayStart))
    ) {
      problems.push(`the relay (pid ${record.relayPid}) is gone`);
    }
  }
  if (record.pid === undefined || !(await processAlive(record.pid, record.pidStart))) {
    problems.push(`${record.kind} (pid ${record.pid}) is gone`);
  }
  if (record.target !== undefined) {
    const entries = await mountsAt(record.target);
    if (!entries.some((e) => e.source === record.devicePath)) {
      problems.push(`${record.target} is not mounted from ${record.devicePath}`);
    }
  }
  return problems;
}

/** A loop device attached to the FUSE file before its name was recorded (a crash between). */
function recoverLoop(record: AttachmentRecord, loops: LoopDevice[]): boolean {
  if (record.devicePath !== '' || record.fuseFile === undefined) return false;
  const loop = loops.find((l) => l.backFile === record.fuseFile);
  if (loop === undefined) return false;
  record.devicePath = loop.name;
  return true;
}

/** Every attachment recorded in `stateDir`, live or stale. */
export async function findMounts(
  stateDir: string,
  options: { searchPath?: string } = {},
): Promise<FoundMount[]> {
  const loops = await listLoopDevices(options.searchPath);
  const found: FoundMount[] = [];
  for (const stateFile of await listRecordFiles(stateDir)) {
    const record = await readRecord(stateFile);
    if (record === undefined) continue;
    const attachment = new TrackedAttachment(record, stateFile, options.searchPath);
    const mounted =
      record.target === undefined
        ? undefined
        : new TrackedMount(
            attachment,
            record.target,
            record.fsType ?? 'ext4',
            record.mountOptions ?? [],
          );
    if (record.handedOver === true) {
      const lingering = new LingeringAttachment(record, stateFile);
      const ended = await lingering.ended();
      found.push({
        stateFile,
        record,
        state: ended ? 'stale' : 'lingering',
        problems: ended ? ['handed over to mounts not ours, and its processes have ended'] : [],
        attachment,
        mounted: undefined,
        lingering: ended ? undefined : lingering,
      });
      continue;
    }
    if (recoverLoop(record, loops)) await writeRecord(stateFile, record);
    const problems = await problemsOf(record, loops);
    found.push({
      stateFile,
      record,
      state: problems.length === 0 ? 'live' : 'stale',
      problems,
      attachment,
      mounted,
      lingering: undefined,
    });
  }
  return found;
}

/** Removes whatever remains of a stale attachment: lazy umount, loop, FUSE, processes, record. */
export async function cleanupStale(
  found: FoundMount,
  options: { searchPath?: string } = {},
): Promise<void> {
  await teardown(found.record, found.stateFile, { lazy: true, ...options });
}
