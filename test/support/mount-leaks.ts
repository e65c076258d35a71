/**
 * What a mount test may leave behind, found from the system itself: loop devices whose
 * backing file is under the test's directory, mounts (FUSE or filesystem) under it, and
 * nbdfuse or relay processes whose command line names it. `assertNoLeaks(dir)` fails with
 * the list, after taking what it found down (so a failing test leaves nothing on the
 * machine); tests call it after every test.
 */

import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { requireTool, runTool, runToolOk } from './daemon.js';
import { unmountUnder } from './dockerd.js';

export interface Leaks {
  loops: string[];
  mounts: string[];
  processes: string[];
}

async function processesNaming(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const cmd = (await readFile(`/proc/${name}/cmdline`, 'utf8')).split('\0').join(' ');
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state !== 'Z' && cmd.includes(dir) && /nbdfuse|relay-main/.test(cmd)) {
        found.push(`${name}: ${cmd}`);
      }
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

export async function findLeaks(dir: string): Promise<Leaks> {
  const listed = await runToolOk(await requireTool('losetup', 'mount'), ['-J', '--list']);
  const loops =
    listed.trim() === ''
      ? []
      : (
          JSON.parse(listed) as { loopdevices: Array<{ name: string; 'back-file': string }> }
        ).loopdevices
          .filter((d) => d['back-file'].includes(dir))
          .map((d) => `${d.name} on ${d['back-file']}`);
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  const mounts = mountinfo
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((m) => m.includes(dir));
  return { loops, mounts, processes: await processesNaming(dir) };
}

/**
 * Takes leftovers down, the way a crashed daemon's are: the relay and nbdfuse killed first
 * (so no unmount waits on a device that will never answer), then the mounts under `dir`
 * lazily, deepest first (`unmountUnder`), then the loop devices.
 */
export async function removeLeaks(dir: string, leaks: Leaks): Promise<void> {
  for (const p of leaks.processes) {
    try {
      process.kill(Number(p.slice(0, p.indexOf(':'))), 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  await unmountUnder(dir);
  const losetup = await requireTool('losetup', 'mount');
  for (const l of leaks.loops) await runTool(losetup, ['-d', l.slice(0, l.indexOf(' '))]);
}

export async function assertNoLeaks(dir: string): Promise<void> {
  const leaks = await findLeaks(dir);
  const none = { loops: [], mounts: [], processes: [] };
  if (leaks.loops.length + leaks.mounts.length + leaks.processes.length > 0) {
    await removeLeaks(dir, leaks);
  }
  assert.deepEqual(leaks, none, 'leftovers after the test (now taken down)');
}
