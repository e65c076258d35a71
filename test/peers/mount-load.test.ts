/**
 * Four ext4 mounts at once on a daemon in this process: attached, made and mounted in
 * parallel, each written with files while every file is read back and checked as soon as
 * it is written, then all unmounted at once. Mounted again read-only, every file is intact
 * and `e2fsck -fn` is clean. The daemon serves all four from this process, so the file work
 * runs in child processes (fs-child.ts), as the storage driver's must; the mount layer's own
 * work (nbdfuse, losetup, mkfs, mount) is all external programs run asynchronously. Nothing (loop device, FUSE mount, nbdfuse or relay) is left afterwards.
 */

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import {
  type Attacher,
  chooseAttacher,
  type MountedFs,
  makeFilesystem,
  mountDevice,
} from '../../src/mount/index.js';
import { relayCommand } from '../../src/nbd/index.js';
import { type InProcessDaemon, requireTool, runTool, startInProcess } from '../support/daemon.js';
import { checksumsInChild, writeFilesInChild } from '../support/fs-child.js';
import { assertNoLeaks } from '../support/mount-leaks.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
const MOUNTS = 4;
const FILES = 24;
const dir = await tempDir('thinp-mount-load-');
let daemon: InProcessDaemon;
let attacher: Attacher;

before(async () => {
  await requireTool('nbdfuse', 'libnbd-bin');
  await requireTool('e2fsck', 'e2fsprogs');
  daemon = await startInProcess(path.join(dir, 'root'));
  attacher = await chooseAttacher({
    nbdSocket: path.join(dir, 'root', 'nbd.sock'),
    stateDir: path.join(dir, 'root', 'run', 'mounts'),
    relay: relayCommand,
    prefer: 'nbdfuse',
  });
});

after(async () => {
  await daemon?.stop();
  await assertNoLeaks(dir);
});

const names = Array.from({ length: MOUNTS }, (_, i) => `load-${i}`);
const target = (name: string) => path.join(dir, 'mnt', name);

test('four mounts written and verified in parallel, then unmounted', async () => {
  await Promise.all(names.map((n) => daemon.handle.deviceSet.createDevice(n, 192 * MiB)));
  await Promise.all(
    names.map(async (n) => {
      const a = await attacher.attach(n);
      await makeFilesystem(a.devicePath, 'ext4', []).finally(() => a.detach());
    }),
  );
  const mounted: MountedFs[] = [];
  const sums = new Map<string, Map<string, string>>();
  try {
    await Promise.all(
      names.map(async (n) => {
        const m = await mountDevice(attacher, n, target(n), { type: 'ext4', options: [] });
        mounted.push(m);
        sums.set(n, await writeFilesInChild(m.target, FILES));
      }),
    );
    const devices = new Set(mounted.map((m) => m.attachment.devicePath));
    assert.equal(devices.size, MOUNTS, 'each mount has its own loop device');
  } finally {
    await Promise.allSettled(mounted.map((m) => m.unmount()));
  }
  await assertNoLeaks(dir);

  const again: MountedFs[] = [];
  try {
    await Promise.all(
      names.map(async (n) => {
        const m = await mountDevice(attacher, n, target(n), {
          type: 'ext4',
          options: [],
          readOnly: true,
        });
        again.push(m);
        const read = await checksumsInChild(m.target);
        assert.deepEqual(read, sums.get(n), `${n}: the files read back differently`);
      }),
    );
  } finally {
    await Promise.allSettled(again.map((m) => m.unmount()));
  }
  const e2fsck = await requireTool('e2fsck', 'e2fsprogs');
  for (const n of names) {
    const a = await attacher.attach(n, { readOnly: true });
    try {
      const check = await runTool(e2fsck, ['-fn', a.devicePath]);
      assert.equal(check.status, 0, `${n}: ${check.stdout}${check.stderr}`);
    } finally {
      await a.detach();
    }
  }
});
