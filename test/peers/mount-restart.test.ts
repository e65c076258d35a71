/**
 * Mounts outlive the daemon. ext4 is mounted from a daemon process through nbdfuse and the
 * reconnecting relay; files are written; the daemon is stopped cleanly (and files written
 * while it is away), then started again, and the writes and a sync go through; then a
 * large copy with fsync runs while the daemon gets SIGKILL and starts again: the copy
 * finishes without an error, and every file written before, during and after the restarts
 * reads back intact. Once unmounted, `e2fsck -fn` finds the filesystem clean, and nothing
 * (loop device, FUSE mount, nbdfuse or relay) is left. And when the daemon is gone for good,
 * `cleanupStale` takes a mount down at once instead of waiting on the relay's retries.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ApiClient } from '../../src/api/index.js';
import {
  type Attacher,
  chooseAttacher,
  cleanupStale,
  findMounts,
  type MountedFs,
  makeFilesystem,
  mountDevice,
} from '../../src/mount/index.js';
import { relayCommand } from '../../src/nbd/index.js';
import { DaemonProcess, requireTool, runTool, runToolOk } from '../support/daemon.js';
import { assertNoLeaks } from '../support/mount-leaks.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
const dir = await tempDir('thinp-mount-restart-');
const root = path.join(dir, 'root');
const stateDir = path.join(root, 'run', 'mounts');
let daemon: DaemonProcess | undefined;
let attacher: Attacher;

before(async () => {
  await requireTool('nbdfuse', 'libnbd-bin');
  await requireTool('e2fsck', 'e2fsprogs');
  await requireTool('dd', 'coreutils');
  await requireTool('sync', 'coreutils');
  daemon = await DaemonProcess.start(root);
  await new ApiClient(daemon.controlSocket).createDevice('vol', { size: 256 * MiB });
  attacher = await chooseAttacher({
    nbdSocket: daemon.nbdSocket,
    stateDir,
    relay: relayCommand,
    prefer: 'nbdfuse',
  });
});

after(async () => {
  // Whatever failed, take the mount down before the daemon, then check nothing is left.
  for (const found of await findMounts(stateDir)) {
    if (found.state === 'live' && found.mounted !== undefined) await found.mounted.unmount();
    else await cleanupStale(found);
  }
  await daemon?.stop();
  await assertNoLeaks(dir);
});

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Writes `count` files of random sizes under `target/set`; returns their checksums. */
async function writeSet(target: string, set: string, count: number): Promise<Map<string, string>> {
  const sums = new Map<string, string>();
  await mkdir(path.join(target, set), { recursive: true });
  for (let i = 0; i < count; i++) {
    const data = randomBytes(i % 4 === 0 ? randomInt(MiB, 3 * MiB) : randomInt(1, 100_000));
    const name = path.join(set, `f${i}.bin`);
    await writeFile(path.join(target, name), data);
    sums.set(name, sha(data));
  }
  return sums;
}

async function verify(target: string, sums: Map<string, string>): Promise<void> {
  for (const [name, sum] of sums) {
    assert.equal(sha(await readFile(path.join(target, name))), sum, `${name} changed`);
  }
}

async function syncFs(target: string): Promise<void> {
  await runToolOk(await requireTool('sync', 'coreutils'), ['-f', target], { timeoutMs: 120_000 });
}

async function logOf(m: MountedFs): Promise<string> {
  const [found] = (await findMounts(stateDir)).filter((f) => f.record.target === m.target);
  return readFile(found?.record.logFile as string, 'utf8');
}

test('ext4 on the relay keeps every file across a clean stop and a kill -9 of the daemon', async (t) => {
  const a = await attacher.attach('vol');
  await makeFilesystem(a.devicePath, 'ext4', []).finally(() => a.detach());
  const target = path.join(dir, 'mnt');
  const m = await mountDevice(attacher, 'vol', target, { type: 'ext4', options: [] });
  const sums = new Map<string, string>();
  try {
    for (const [k, v] of await writeSet(target, 'before', 12)) sums.set(k, v);
    await syncFs(target);

    // A clean stop; files written while no daemon runs wait in the page cache.
    // Writing may need to read metadata blocks, which waits for the daemon: the writes
    // and the sync run while the daemon is away and start again.
    await daemon?.stop();
    const writing = writeSet(target, 'while-stopped', 6).then(async (written) => {
      await syncFs(target);
      return written;
    });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    daemon = await DaemonProcess.start(root);
    for (const [k, v] of await writing) sums.set(k, v);
    await verify(target, sums);

    // kill -9 in the middle of a large copy that ends with fsync.
    const source = path.join(dir, 'source.bin');
    const big = randomBytes(48 * MiB);
    await writeFile(source, big);
    const dd = spawn(
      await requireTool('dd', 'coreutils'),
      [`if=${source}`, `of=${path.join(target, 'big.bin')}`, 'bs=1M', 'conv=fsync'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let ddErr = '';
    dd.stderr?.setEncoding('utf8').on('data', (s: string) => {
      ddErr += s;
    });
    const ddDone = once(dd, 'close');
    await new Promise((resolve) => setTimeout(resolve, 400));
    const killed = await daemon.kill9();
    assert.equal(
      killed.code === 0 && killed.signal === null,
      false,
      'the daemon did not stop by itself',
    );
    daemon = await DaemonProcess.start(root);
    const [ddStatus] = (await ddDone) as [number | null];
    assert.equal(ddStatus, 0, `dd failed across the restart: ${ddErr}`);
    sums.set('big.bin', sha(big));
    for (const [k, v] of await writeSet(target, 'after', 8)) sums.set(k, v);
    await syncFs(target);
    await verify(target, sums);

    const log = await logOf(m);
    assert.ok((log.match(/relay-reconnected/g) ?? []).length >= 2, `the relay's log:\n${log}`);
    for (const line of log.split('\n')) if (/reconnected|replayed/.test(line)) t.diagnostic(line);
  } finally {
    await m.unmount();
  }
  const ro = await attacher.attach('vol', { readOnly: true });
  try {
    const check = await runTool(await requireTool('e2fsck', 'e2fsprogs'), ['-fn', ro.devicePath]);
    assert.equal(check.status, 0, `e2fsck -fn: ${check.stdout}${check.stderr}`);
  } finally {
    await ro.detach();
  }
  // Mounted again after everything: the files are there.
  const again = await mountDevice(attacher, 'vol', target, {
    type: 'ext4',
    options: [],
    readOnly: true,
  });
  try {
    await verify(target, sums);
  } finally {
    await again.unmount();
  }
});

test('with the daemon gone for good, cleanupStale takes a live mount down at once', async () => {
  const target = path.join(dir, 'mnt-gone');
  const m = await mountDevice(attacher, 'vol', target, { type: 'ext4', options: [] });
  await writeFile(path.join(target, 'unsynced.txt'), 'this may be lost');
  await daemon?.kill9();
  daemon = undefined;
  const [found] = await findMounts(stateDir);
  // Every piece is still there (the relay keeps retrying): a daemon starting now adopts it.
  assert.equal(found?.state, 'live', found?.problems.join('; '));
  assert.equal(found?.mounted?.target, m.target);
  const started = Date.now();
  if (found !== undefined) await cleanupStale(found);
  assert.ok(Date.now() - started < 30_000, `cleanup took ${Date.now() - started} ms`);
  await assertNoLeaks(dir);
  assert.deepEqual(await findMounts(stateDir), []);
});
