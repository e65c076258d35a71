/**
 * What the kernel says is there: the mount table (/proc/self/mountinfo), loop devices and
 * their backing files (sysfs, `losetup -J`), and processes by pid and start time (so that a
 * recycled pid is never taken for ours). Reads only; nothing here changes the system.
 */

import { constants } from 'node:fs';
import { open, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { run } from './programs.js';

export interface MountEntry {
  mountPoint: string;
  fsType: string;
  source: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) =>
    String.fromCharCode(Number.parseInt(octal, 8)),
  );
}

/** One line of /proc/self/mountinfo: "id parent maj:min root mountpoint opts [tags] - type source super". */
export function parseMountInfoLine(line: string): MountEntry | undefined {
  const fields = line.split(' ');
  const dash = fields.indexOf('-', 6);
  if (fields.length < 10 || dash < 0) return undefined;
  return {
    mountPoint: unescapeMountField(fields[4] ?? ''),
    fsType: fields[dash + 1] ?? '',
    source: unescapeMountField(fields[dash + 2] ?? ''),
  };
}

/** The current mount table. */
export async function readMounts(): Promise<MountEntry[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const entry = parseMountInfoLine(line);
    if (entry !== undefined) entries.push(entry);
  }
  return entries;
}

/** The entries mounted exactly at `mountPoint` (stacked mounts give several). */
export async function mountsAt(mountPoint: string): Promise<MountEntry[]> {
  const wanted = path.resolve(mountPoint);
  return (await readMounts()).filter((m) => m.mountPoint === wanted);
}

/** The entries whose source is `devicePath` (a filesystem and its bind mounts). */
export async function mountsOf(devicePath: string): Promise<MountEntry[]> {
  return (await readMounts()).filter((m) => m.source === devicePath);
}

/**
 * Whether a filesystem (or anything else that claims block devices) holds `devicePath`, in
 * any mount namespace: an exclusive open fails with EBUSY then. A mount that lives on only
 * in a container's namespace, or one detached lazily while files are open in it, shows in
 * no mount table we can read, but it still claims its device.
 */
export async function deviceClaimed(devicePath: string): Promise<boolean> {
  try {
    const handle = await open(devicePath, constants.O_RDONLY | constants.O_EXCL);
    await handle.close();
    return false;
  } catch (err) {
    if ((err as { code?: unknown }).code === 'EBUSY') return true;
    if ((err as { code?: unknown }).code === 'ENOENT') return false;
    throw err;
  }
}

/** The backing file of loop device `devicePath` (/dev/loopN), or undefined when detached. */
export async function loopBackingFile(devicePath: string): Promise<string | undefined> {
  const name = path.basename(devicePath);
  try {
    const text = await readFile(`/sys/block/${name}/loop/backing_file`, 'utf8');
    return text.trim().replace(/ \(deleted\)$/, '');
  } catch {
    return undefined;
  }
}

export interface LoopDevice {
  name: string;
  backFile: string;
}

/** Every attached loop device, from `losetup -J`. */
export async function listLoopDevices(searchPath?: string): Promise<LoopDevice[]> {
  const result = await run('losetup', ['-J', '--list'], { searchPath });
  if (result.status !== 0 || result.stdout.trim() === '') return [];
  const parsed = JSON.parse(result.stdout) as {
    loopdevices?: Array<{ name?: string; 'back-file'?: string }>;
  };
  return (parsed.loopdevices ?? []).map((d) => ({
    name: d.name ?? '',
    backFile: (d['back-file'] ?? '').replace(/ \(deleted\)$/, ''),
  }));
}

/** Field 22 of /proc/PID/stat (start time in clock ticks), or undefined when gone or a zombie. */
export async function processStart(pid: number): Promise<string | undefined> {
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may hold spaces: split after it.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (rest[0] === 'Z' || rest[0] === 'X') return undefined;
  return rest[19];
}

/** Whether `pid` is still the process that started at `start`. */
export async function processAlive(pid: number, start: string | undefined): Promise<boolean> {
  const now = await processStart(pid);
  return now !== undefined && (start === undefined || now === start);
}

/** The pids whose parent is `pid`. */
export async function childrenOf(pid: number): Promise<number[]> {
  try {
    const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8');
    return text
      .trim()
      .split(/\s+/)
      .filter((s) => s !== '')
      .map(Number);
  } catch {
    return [];
  }
}

/** Polls `check` every `everyMs` until it is true; false once `timeoutMs` passed. */
export async function waitFor(
  check: () => Promise<boolean>,
  timeoutMs: number,
  everyMs = 20,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/**
 * The live processes in process group `pgid` that started no earlier than `minStart` (the
 * group leader's start time, so that a recycled group id is not taken for ours). nbdfuse
 * runs detached as a group leader, and the relay it forks stays in its group.
 */
export async function processGroup(pgid: number, minStart: string | undefined): Promise<number[]> {
  const members: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = await readFile(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (rest[0] === 'Z' || rest[0] === 'X' || Number(rest[2]) !== pgid) continue;
    if (minStart !== undefined && Number(rest[19]) < Number(minStart)) continue;
    members.push(Number(name));
  }
  return members;
}
