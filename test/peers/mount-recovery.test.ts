/**
 * What a restarted daemon finds. A child process mounts an export and dies at each crash
 * point of the mount layer (nbdfuse spawned, nbdfuse serving, loop device attached but not
 * yet recorded, filesystem mounted); `findMounts` then reports the attachment as stale when
 * a piece is missing and live when all are there (a loop device attached just before the
 * crash is found by its backing file), and `cleanupStale`, or the adopted objects' own
 * unmount/detach, leaves nothing. A failure forced in the middle of an attach (losetup
 * failing after nbdfuse runs) also leaves nothing.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import {
  chooseAttacher,
  cleanupStale,
  findMounts,
  MountError,
  makeFilesystem,
} from '../../src/mount/index.js';
import { relayCommand } from '../../src/nbd/index.js';
import { CRASH_AT_ENV } from '../../src/util/index.js';
import { type InProcessDaemon, requireTool, startInProcess } from '../support/daemon.js';
import { assertNoLeaks } from '../support/mount-leaks.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
const dir = await tempDir('thinp-mount-recovery-');
const stateDir = path.join(dir, 'root', 'run', 'mounts');
const nbdSocket = path.join(dir, 'root', 'nbd.sock');
const target = path.join(dir, 'mnt');
let daemon: InProcessDaemon;

before(async () => {
  await requireTool('nbdfuse', 'libnbd-bin');
  await requireTool('mkfs.ext4', 'e2fsprogs');
  daemon = await startInProcess(path.join(dir, 'root'));
  await daemon.handle.deviceSet.createDevice('rec', 32 * MiB);
  const attacher = await chooseAttacher({ nbdSocket, stateDir, relay: relayCommand });
  const a = await attacher.attach('rec');
  await makeFilesystem(a.devicePath, 'ext4', []).finally(() => a.detach());
});

afterEach(async () => {
  assert.deepEqual(await readdir(stateDir).catch(() => []), [], 'no record is left');
  await assertNoLeaks(dir);
});

after(async () => {
  // A failed test may have left some: clean them before the daemon goes.
  for (const found of await findMounts(stateDir)) await cleanupStale(found);
  await daemon?.stop();
});

/** The child mounting `rec`, dying at `point`; resolves with how it ended. */
async function mountInChild(point: string | undefined) {
  const env = { ...process.env };
  if (point === undefined) delete env[CRASH_AT_ENV];
  else env[CRASH_AT_ENV] = point;
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'test/support/mount-child.ts', nbdSocket, stateDir, 'rec', target],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => {
    output += s;
  });
  child.stderr?.setEncoding('utf8').on('data', (s: string) => {
    output += s;
  });
  const [code, signal] = (await once(child, 'close')) as [number | null, string | null];
  return { code, signal, output };
}

describe('attachments left by a crashed process', () => {
  const cases = [
    { point: 'mount-nbdfuse-spawned', state: 'stale', mounted: false },
    { point: 'mount-nbdfuse-started', state: 'stale', mounted: false },
    { point: 'mount-loop-attached', state: 'live', mounted: false },
    { point: 'mount-mounted', state: 'live', mounted: true },
    { point: undefined, state: 'live', mounted: true },
  ] as const;
  for (const c of cases) {
    test(`dead at ${c.point ?? 'exit, still mounted'}: found ${c.state} and taken down`, async () => {
      const ended = await mountInChild(c.point);
      if (c.point === undefined) assert.equal(ended.code, 0, ended.output);
      else assert.equal(ended.signal, 'SIGKILL', ended.output);
      const found = await findMounts(stateDir);
      assert.equal(found.length, 1);
      const [f] = found;
      if (f === undefined) return;
      assert.equal(f.state, c.state, `problems: ${f.problems.join('; ')}`);
      assert.match(
        f.attachment.devicePath,
        c.point === 'mount-nbdfuse-started' || c.point === 'mount-nbdfuse-spawned'
          ? /^$/
          : /^\/dev\/loop\d+$/,
      );
      assert.equal(f.mounted !== undefined, c.mounted);
      if (f.state === 'stale') await cleanupStale(f);
      else if (f.mounted !== undefined) await f.mounted.unmount();
      else await f.attachment.detach();
    });
  }
});

describe('a failure forced in the middle of an attach', () => {
  test('losetup failing after nbdfuse runs leaves no process, FUSE mount or record', async () => {
    // The real tools, except a losetup that fails.
    const bin = path.join(dir, 'bin');
    await mkdir(bin, { recursive: true });
    for (const [tool, pkg] of [
      ['nbdfuse', 'libnbd-bin'],
      ['fusermount3', 'fuse3'],
      ['umount', 'mount'],
      ['mount', 'mount'],
    ] as const) {
      await symlink(await requireTool(tool, pkg), path.join(bin, tool));
    }
    await writeFile(
      path.join(bin, 'losetup'),
      '#!/bin/sh\necho "losetup: forced failure" >&2\nexit 1\n',
    );
    await chmod(path.join(bin, 'losetup'), 0o755);
    const attacher = await chooseAttacher({
      nbdSocket,
      stateDir,
      relay: relayCommand,
      searchPath: bin,
    });
    await assert.rejects(attacher.attach('rec'), (err) => {
      assert.ok(err instanceof MountError, String(err));
      assert.match(err.message, /forced failure/);
      return true;
    });
  });
});
