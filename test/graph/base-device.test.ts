/**
 * A base device whose filesystem cannot be made (xfs refuses so small a device) leaves
 * nothing behind: the layer is refused with mkfs's words, no base device stays without its
 * filesystem, and the next layer tries again rather than snapshotting an empty device.
 */

import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, it } from 'node:test';
import { runThinp } from '../support/cli-process.js';
import { DAEMON_POOL_OPTS, DaemonProcess, requireTool } from '../support/daemon.js';
import { assertNoLeaks } from '../support/mount-leaks.js';

const dir = await mkdtemp(path.join(os.tmpdir(), 'thinp-base-device-'));
const root = path.join(dir, 'root');
const OPTS = [...DAEMON_POOL_OPTS, 'dm.basesize=64M', 'dm.fs=xfs'];
let daemon: DaemonProcess | undefined;

const thinp = (args: string[]) =>
  runThinp(args, {
    cwd: dir,
    globalArgs: ['--root', root, ...OPTS.flatMap((o) => ['--storage-opt', o])],
  });

before(async () => {
  await requireTool('mkfs.xfs', 'xfsprogs');
  daemon = await DaemonProcess.start(root, OPTS);
});

after(async () => {
  await daemon?.stop();
  await assertNoLeaks(dir);
  await rm(dir, { recursive: true, force: true });
});

it('a base device mkfs refuses is removed, and the next layer tries again', async () => {
  for (const id of ['first', 'second']) {
    const r = await thinp(['layer', 'create', id]);
    assert.equal(r.status, 1, r.stdout);
    assert.match(r.stderr, /mkfs\.xfs failed/);
    const devices = await thinp(['device', 'list', '--json']);
    assert.equal(devices.status, 0, devices.stderr);
    assert.doesNotMatch(devices.stdout, /"base"/, 'no base device without its filesystem');
    const layers = await thinp(['layer', 'list', '--json']);
    assert.deepEqual(JSON.parse(layers.stdout), []);
  }
});
