/**
 * `kill -9` of the daemon while it makes the base device's filesystem. Its mkfs outlives it,
 * holding the base device's loop device open and writing through the attachment the killed
 * daemon left (its relay reconnects to the next daemon). The next daemon must wait for that
 * mkfs before it removes the unfinished base device and makes a new one: a new device under
 * the same name must never take the old mkfs's writes, nor be checked while the old one is
 * still being removed.
 *
 * The mkfs here is a stand-in first on the daemon's PATH: it claims the device, says so, waits
 * two seconds (so the kill lands while it holds the device), then runs the real mkfs.ext4.
 */

import assert from 'node:assert/strict';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiClient } from '../../src/api/index.js';
import { processAlive } from '../../src/mount/system.js';
import { findOnPath } from '../../src/util/index.js';
import { DAEMON_POOL_OPTS, DaemonProcess, requireTool } from '../support/daemon.js';
import { assertNoLeaks } from '../support/mount-leaks.js';
import { thinCheck } from '../support/peers.js';
import { tempDir } from '../support/temp.js';

const SBIN_PATH = [process.env.PATH ?? '', '/usr/sbin', '/sbin'].join(path.delimiter);
const OPTS = [...DAEMON_POOL_OPTS, 'dm.basesize=512M', 'dm.fs=ext4'];

/**
 * Writes the stand-in mkfs.ext4 into `bin`. It claims the device as mkfs does (an exclusive
 * open, which makes the device busy to the next daemon), writes its pid to `marker`, holds
 * the claim for two seconds, then runs the real mkfs.ext4 on it.
 */
async function slowMkfs(bin: string, marker: string): Promise<void> {
  await requireTool('mkfs.ext4', 'e2fsprogs');
  const real = await findOnPath('mkfs.ext4', SBIN_PATH);
  assert.ok(real !== undefined, 'mkfs.ext4 is on the search path');
  await mkdir(bin, { recursive: true });
  const script = [
    `#!${process.execPath}`,
    "const fs = require('node:fs');",
    "const { spawnSync } = require('node:child_process');",
    'const args = process.argv.slice(2);',
    'const fd = fs.openSync(args[args.length - 1], fs.constants.O_RDONLY | fs.constants.O_EXCL);',
    `fs.writeFileSync(${JSON.stringify(marker)}, process.pid + '\\n');`,
    'Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2000);',
    'fs.closeSync(fd);',
    `const run = spawnSync(${JSON.stringify(real)}, args, { stdio: 'inherit' });`,
    'process.exit(run.status ?? 1);',
    '',
  ].join('\n');
  await writeFile(path.join(bin, 'mkfs.ext4'), script);
  await chmod(path.join(bin, 'mkfs.ext4'), 0o755);
}

async function waitForFile(file: string, ms: number): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const text = await readFile(file, 'utf8').catch(() => '');
    if (text.endsWith('\n')) return text.trim();
    if (Date.now() > deadline) throw new Error(`${file} did not appear within ${ms} ms`);
    await sleep(25);
  }
}

describe('kill -9 while the base device is made', () => {
  test('the next daemon waits for the old mkfs, then makes the base device anew', async () => {
    const dir = await tempDir('thinp-base-kill-');
    const root = path.join(dir, 'root');
    const bin = path.join(dir, 'bin');
    const marker = path.join(dir, 'mkfs.pid');
    await slowMkfs(bin, marker);

    const first = await DaemonProcess.start(root, OPTS, [], [bin]);
    const client = new ApiClient(path.join(root, 'thinp.sock'));
    const creating = client.createLayer('first', {}).then(
      () => 'made',
      (err: Error) => err.message,
    );
    const mkfsPid = Number(await waitForFile(marker, 15_000));
    await first.kill9();
    assert.notEqual(await creating, 'made', 'the kill cut the layer short');
    assert.ok(
      await processAlive(mkfsPid, undefined),
      'the old mkfs still holds the base device after the kill',
    );

    const again = await DaemonProcess.start(root, OPTS);
    try {
      assert.ok(
        !(await processAlive(mkfsPid, undefined)),
        `the new daemon waited for the old mkfs to end:\n${again.stderr}`,
      );
      assert.match(again.stderr, /"event":"base-device-unfinished"/);
      assert.match(again.stderr, /"event":"base-device-created"/);
      const base = (await client.listDevices()).find((d) => d.name === 'base');
      assert.ok(base !== undefined, 'a base device');
      await client.createLayer('second', {});
      const mounted = await client.mountLayer('second');
      await writeFile(path.join(mounted, 'hello'), 'world');
      await client.unmountLayer('second');
      assert.deepEqual(
        (await client.listLayers()).map((l) => l.id),
        ['second'],
      );
    } finally {
      await again.stop();
    }
    await assertNoLeaks(dir);
    const check = await thinCheck(path.join(root, 'devicemapper', 'metadata'));
    assert.equal(check.status, 0, `thin_check: ${check.stderr}`);
  });
});
