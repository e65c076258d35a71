/**
 * The exclusive lock on a root directory: at most one process opens a root's pool at a
 * time. The lock is the file ROOT/thinp.lock, created with O_EXCL and holding
 * `{"pid", "command", "started"}` of its holder.
 *
 * Contracts:
 * - `acquire` succeeds only if no live process holds the lock. A live holder is a
 *   BusyError naming its pid, command and start time.
 * - A lock whose pid is no longer running is stale (its holder was killed): it is taken
 *   over, and `tookOverFrom` says from whom. Two processes taking over one stale lock
 *   serialize on ROOT/thinp.lock.takeover, so only one of them wins.
 * - A lock file that cannot be read as a holder is being written by its creator, unless
 *   it is older than a few seconds (then it is stale).
 * - `release` removes the lock if it is still this holder's. A lock not released by the
 *   time the process exits is removed at exit.
 */

import { rmSync } from 'node:fs';
import { link, open, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { BusyError, IoError } from '../util/index.js';
import { errnoOf } from './state-files.js';

export const LOCK_FILE = 'thinp.lock';

export interface LockHolder {
  pid: number;
  command: string;
  /** ISO 8601 time at which the holder took the lock. */
  started: string;
}

/** A lock file younger than this with no readable holder is still being written. */
const WRITING_GRACE_MS = 5000;
const ATTEMPTS = 3;

/** Locks this process holds, removed at exit if still held (exit handlers cannot await). */
const held = new Set<string>();
let exitHookInstalled = false;

export class RootLock {
  readonly file: string;
  readonly holder: LockHolder;
  /** The dead process whose stale lock this one replaced. */
  readonly tookOverFrom: LockHolder | undefined;
  private released = false;

  private constructor(file: string, holder: LockHolder, tookOverFrom: LockHolder | undefined) {
    this.file = file;
    this.holder = holder;
    this.tookOverFrom = tookOverFrom;
  }

  /** Takes the lock on `root` (which must exist) for `command`, e.g. 'thinp device list'. */
  static async acquire(root: string, command: string): Promise<RootLock> {
    const file = path.join(root, LOCK_FILE);
    const me: LockHolder = { pid: process.pid, command, started: new Date().toISOString() };
    let tookOverFrom: LockHolder | undefined;
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      if (await tryCreate(file, me)) {
        holdUntilExit(file);
        return new RootLock(file, me, tookOverFrom);
      }
      const current = await readHolder(file);
      if (current === 'gone') continue;
      if (current === 'unreadable' ? await isFresh(file) : isAlive(current.pid)) {
        throw busy(root, current);
      }
      if (await takeOver(root, file, current))
        tookOverFrom = current === 'unreadable' ? undefined : current;
    }
    throw busy(root, await readHolder(file));
  }

  /** Gives the lock up; harmless when called twice. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    held.delete(this.file);
    const current = await readHolder(this.file);
    if (current !== 'gone' && current !== 'unreadable' && sameHolder(current, this.holder)) {
      await rm(this.file, { force: true });
    }
  }
}

// ---------------------------------------------------------------------------------------

/**
 * Creates the lock file holding `me`, or returns false if it exists. The holder is written to
 * a file of this process's own and linked into place, so the lock never exists without its
 * holder (a process killed half way leaves no empty lock, only its own temporary file).
 */
async function tryCreate(file: string, me: LockHolder): Promise<boolean> {
  const temp = `${file}.${process.pid}.tmp`;
  try {
    const handle = await open(temp, 'w', 0o644);
    try {
      await handle.writeFile(`${JSON.stringify(me)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await link(temp, file);
    } catch (err) {
      if (errnoOf(err) === 'EEXIST') return false;
      throw err;
    }
    return true;
  } catch (err) {
    throw new IoError(file, 'create', (err as Error).message, { cause: err });
  } finally {
    await rm(temp, { force: true });
  }
}

type ReadHolder = LockHolder | 'gone' | 'unreadable';

async function readHolder(file: string): Promise<ReadHolder> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return 'gone';
    throw err;
  }
  try {
    const o = JSON.parse(text) as Partial<LockHolder>;
    if (typeof o.pid !== 'number' || !Number.isSafeInteger(o.pid) || o.pid <= 0) {
      return 'unreadable';
    }
    return {
      pid: o.pid,
      command: typeof o.command === 'string' ? o.command : 'thinp',
      started: typeof o.started === 'string' ? o.started : 'an unknown time',
    };
  } catch {
    return 'unreadable';
  }
}

/**
 * Removes the stale lock `stale` under the takeover guard, if it is still the one seen.
 * Returns whether this process removed it.
 */
async function takeOver(root: string, file: string, stale: ReadHolder): Promise<boolean> {
  const guard = `${file}.takeover`;
  const guardHolder: LockHolder = {
    pid: process.pid,
    command: 'taking over a stale lock',
    started: new Date().toISOString(),
  };
  if (!(await tryCreate(guard, guardHolder))) {
    if (await isFresh(guard)) throw busy(root, await readHolder(file));
    await rm(guard, { force: true });
    return false;
  }
  try {
    const again = await readHolder(file);
    const same =
      again === stale ||
      (typeof again === 'object' && typeof stale === 'object' && sameHolder(again, stale));
    if (!same) return false;
    await rm(file, { force: true });
    return true;
  } finally {
    await rm(guard, { force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoOf(err) === 'EPERM';
  }
}

async function isFresh(file: string): Promise<boolean> {
  try {
    return Date.now() - (await stat(file)).mtimeMs < WRITING_GRACE_MS;
  } catch {
    return false;
  }
}

function sameHolder(a: LockHolder, b: LockHolder): boolean {
  return a.pid === b.pid && a.started === b.started && a.command === b.command;
}

function busy(root: string, holder: ReadHolder): BusyError {
  const who =
    typeof holder === 'object'
      ? `pid ${holder.pid} ('${holder.command}' since ${holder.started})`
      : 'another thinp process';
  return new BusyError(`${root} is in use by ${who}`, { hint: 'wait for it or stop it' });
}

function holdUntilExit(file: string): void {
  held.add(file);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const f of held) rmSync(f, { force: true });
  });
}
