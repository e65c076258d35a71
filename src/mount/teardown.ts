/**
 * Taking an attachment apart, top down, each step checked against the kernel before and
 * after: the filesystem mount, the loop device (or /dev/nbdN), the FUSE mount, the nbdfuse
 * process and the relay under it, the FUSE directory, and last nbdfuse's log and the state file. Every step
 * first looks whether its piece is still there, so a teardown that failed half way can run
 * again, and the same code cleans what a crashed daemon left (`lazy`: umount -l and
 * fusermount3 -z, for mounts whose device no longer answers; the relay and nbdfuse are ended
 * first then, so nothing waits on a device that will never answer).
 *
 * Handing over: when the filesystem still lives once our mount is gone (bind mounts made by
 * containerd, a container runtime or a test, whose unmounts are lazy and may come later; a
 * container's mount namespace that has not ended yet), the rest cannot be taken down without
 * cutting its I/O: it is handed over to the kernel instead (lingering.ts). Whether it still
 * lives is asked of the kernel (an exclusive open of the loop device fails while any
 * filesystem holds it), not only of our mount table, which shows no other namespace.
 */

import { rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { BusyError } from '../util/index.js';
import { MountError } from './errors.js';
import { handOver, LingeringAttachment } from './lingering.js';
import { run, runOk } from './programs.js';
import { removeRecord, writeRecord } from './state-file.js';
import {
  deviceClaimed,
  loopBackingFile,
  mountsAt,
  mountsOf,
  processAlive,
  processGroup,
  waitFor,
} from './system.js';
import type { AttachmentRecord, Lingering } from './types.js';

export interface TeardownOptions {
  /** Detach lazily (a crashed daemon's leftovers): never blocks on a dead device. */
  lazy?: boolean;
  searchPath?: string;
}

const STEP_TIMEOUT_MS = 15_000;

/** Unmounts the filesystem at `record.target`, if it is mounted. */
export async function unmountTarget(
  record: AttachmentRecord,
  options: TeardownOptions,
): Promise<void> {
  const target = record.target;
  if (target === undefined) return;
  if ((await mountsAt(target)).length > 0) {
    const args = options.lazy === true ? ['-l', target] : [target];
    const result = await run('umount', args, options);
    if (result.status !== 0 && /busy/i.test(result.stderr)) {
      throw new BusyError(`${target} is busy: something has a file open or its cwd there`, {
        hint: `close what uses it (fuser -vm ${target} names it), then unmount again`,
      });
    }
    if (result.status !== 0) await runOk('umount', args, target, options);
  }
  const gone = await waitFor(async () => (await mountsAt(target)).length === 0, STEP_TIMEOUT_MS);
  if (!gone) {
    throw new BusyError(`${target} is still mounted after umount`, {
      hint: `close what uses it, then run 'umount ${target}'`,
    });
  }
}

/**
 * Whether a loop device's backing file is our FUSE file. Once the FUSE mount is detached
 * (nbdfuse, ended, unmounts itself lazily while the loop still holds the file), the kernel
 * shows the file at the root of the detached mount: `/nbd` instead of its full path.
 */
function isOurBacking(backing: string | undefined, fuseFile: string): boolean {
  return backing === fuseFile || backing === `/${path.basename(fuseFile)}`;
}

/**
 * Detaches the loop device, if it is still the one on our FUSE file. Lazily (leftovers), a
 * loop device still held by a filesystem detached with it is left to autoclear at its last
 * close instead of being waited for.
 */
async function detachLoop(record: AttachmentRecord, options: TeardownOptions): Promise<void> {
  const { devicePath, fuseFile } = record;
  if (devicePath === '' || fuseFile === undefined) return;
  const ours = async () => isOurBacking(await loopBackingFile(devicePath), fuseFile);
  if (!(await ours())) return;
  await runOk('losetup', ['-d', devicePath], devicePath, { searchPath: options.searchPath });
  if (options.lazy === true) return;
  if (!(await waitFor(async () => !(await ours()), STEP_TIMEOUT_MS))) {
    throw new BusyError(`loop device ${devicePath} is still attached to ${fuseFile}`, {
      hint: `something still holds it open (a mount?): find it with 'losetup -l' and 'findmnt ${devicePath}'`,
    });
  }
}

/**
 * Ends a process (pid, start time): waits for it to end by itself (`graceMs`), then asks
 * politely, then firmly; resolves once it is gone.
 */
async function endProcess(
  pid: number | undefined,
  start: string | undefined,
  what: string,
  graceMs = 5_000,
) {
  if (pid === undefined) return;
  const alive = () => processAlive(pid, start);
  if (await waitFor(async () => !(await alive()), graceMs)) return;
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    try {
      process.kill(pid, signal);
    } catch {
      // gone meanwhile
    }
    if (await waitFor(async () => !(await alive()), 5_000)) return;
  }
  throw new BusyError(`${what} (pid ${pid}) does not end, even on SIGKILL`, {
    hint: `look at it with 'ps -o pid,stat,wchan -p ${pid}'`,
  });
}

/**
 * Ends nbdfuse's process group (nbdfuse and the relay it forked, even one forked after the
 * record was last written): waits `graceMs` for it to end by itself, then SIGTERM, SIGKILL.
 */
async function endGroup(record: AttachmentRecord, graceMs: number): Promise<void> {
  const { pid, pidStart } = record;
  if (pid === undefined || record.kind !== 'nbdfuse') return;
  const empty = async () => (await processGroup(pid, pidStart)).length === 0;
  if (await waitFor(empty, graceMs)) return;
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    for (const member of await processGroup(pid, pidStart)) {
      try {
        process.kill(member, signal);
      } catch {
        // gone meanwhile
      }
    }
    if (await waitFor(empty, 5_000)) return;
  }
  throw new BusyError(`nbdfuse's processes (group ${pid}) do not end, even on SIGKILL`, {
    hint: `look at them with 'ps -o pid,stat,wchan,args -g ${pid}'`,
  });
}

/** Unmounts the FUSE file system (nbdfuse then exits) and ends nbdfuse and the relay. */
async function stopFuse(record: AttachmentRecord, options: TeardownOptions): Promise<void> {
  const fuseDir = record.fuseDir;
  if (fuseDir === undefined) return;
  if ((await mountsAt(fuseDir)).length > 0) {
    const args = options.lazy === true ? ['-u', '-z', fuseDir] : ['-u', fuseDir];
    const result = await run('fusermount3', args, { searchPath: options.searchPath });
    if (result.status !== 0) await run('umount', ['-l', fuseDir], options);
  }
  if (!(await waitFor(async () => (await mountsAt(fuseDir)).length === 0, STEP_TIMEOUT_MS))) {
    throw new MountError(fuseDir, 'fusermount3', 'the FUSE mount is still there', {
      hint: `run 'fusermount3 -u -z ${fuseDir}'`,
    });
  }
  await endGroup(record, 5_000);
  await rmdir(fuseDir).catch((err: { code?: unknown }) => {
    if (err.code !== 'ENOENT') throw err;
  });
}

/** Disconnects /dev/nbdN (nbd-client backend), if it is still connected. */
async function disconnectNbd(record: AttachmentRecord, options: TeardownOptions): Promise<void> {
  if (record.kind !== 'nbd-client' || record.devicePath === '') return;
  await run('nbd-client', ['-d', record.devicePath], options);
  await endProcess(record.pid, record.pidStart, 'nbd-client');
}

/**
 * Everything of `record` gone, in order; the state file last. Throws on the first step that
 * fails (the record stays, so the teardown can run again). Resolves with the `Lingering`
 * attachment when the filesystem lives on in mounts not ours (handed over, see above).
 */
export async function teardown(
  record: AttachmentRecord,
  stateFile: string,
  options: TeardownOptions = {},
): Promise<Lingering | undefined> {
  if (record.handedOver === true && options.lazy !== true) {
    return new LingeringAttachment(record, stateFile);
  }
  if (options.lazy === true) {
    // Leftovers: the relay may still be retrying a daemon that is gone, and every I/O on the
    // device (even umount's) would wait for it. Ending the relay and nbdfuse first makes
    // that I/O fail at once, so the lazy unmounts below never block.
    await endGroup(record, 0);
  }
  await unmountTarget(record, options);
  if (record.target !== undefined) {
    delete record.target;
    delete record.fsType;
    delete record.mountOptions;
    await writeRecord(stateFile, record);
  }
  if (options.lazy !== true && (await stillInUse(record))) {
    return handOver(record, stateFile, options);
  }
  await detachLoop(record, options);
  await disconnectNbd(record, options);
  await stopFuse(record, options);
  if (record.logFile !== undefined) await rm(record.logFile, { force: true });
  await removeRecord(stateFile);
  return undefined;
}

/** Whether a filesystem on the attachment's device lives on (mounted by others, anywhere). */
async function stillInUse(record: AttachmentRecord): Promise<boolean> {
  if (record.kind !== 'nbdfuse' || record.devicePath === '') return false;
  if (record.fuseFile === undefined) return false;
  if ((await loopBackingFile(record.devicePath)) !== record.fuseFile) return false;
  return (await mountsOf(record.devicePath)).length > 0 || deviceClaimed(record.devicePath);
}
