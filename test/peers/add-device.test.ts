/**
 * `thinp pool resize --add-device` on a direct-lvm pool while fio (nbd engine, crc32c
 * verify) writes through the daemon: no I/O fails, fio writes past what the first device
 * could hold, and a restart of the daemon keeps both devices; `thinp pool status` names
 * them. After both loop devices come back in the other order, the daemon finds them again. Loop devices over sparse files, detached in `after` whatever failed.
 */

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, test } from 'node:test';
import { thinp } from '../support/cli.js';
import { requireTool, runTool, startInProcess } from '../support/daemon.js';
import { LoopDevices } from '../support/loop-device.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
const dir = await tempDir('thinp-add-device-');
const loops = new LoopDevices();
after(() => loops.detachAll());

test('--add-device while fio writes: no failed I/O, the new space is used, a reboot keeps it', async () => {
  const first = await loops.attach(path.join(dir, 'a.img'), 96 * MiB);
  const second = await loops.attach(path.join(dir, 'b.img'), 64 * MiB);
  const root = path.join(dir, 'root');
  const opts = [
    `dm.directlvm_device=${first}`,
    'dm.thinp_percent=90',
    'dm.thinp_metapercent=4',
    'dm.min_free_space=0%',
  ];
  const daemon = await startInProcess(root, opts);
  let totalBlocks: number;
  try {
    const set = daemon.handle.deviceSet;
    await set.createDevice('vol', 256 * MiB);
    const fio = runTool(
      await requireTool('fio', 'fio'),
      [
        '--name=fill',
        '--ioengine=nbd',
        `--uri=${daemon.uri('vol')}`,
        '--rw=write',
        '--bs=64k',
        '--iodepth=4',
        '--size=120M',
        '--rate=32m',
        '--verify=crc32c',
        '--do_verify=1',
        '--verify_fatal=1',
        '--verify_state_save=0',
      ],
      { timeoutMs: 120_000 },
    );
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const args = ['--root', root, ...opts.flatMap((o) => ['--storage-opt', o])];
    const resized = await thinp([...args, 'pool', 'resize', '--add-device', second], {
      cwd: dir,
    });
    assert.equal(resized.status, 0, resized.stderr);
    const result = await fio;
    const output = result.stdout + result.stderr;
    assert.equal(result.status, 0, `fio exited with status ${result.status}:\n${output}`);
    assert.doesNotMatch(output, /verify: bad|verify failed|io_u error|err=\s*[1-9-]/i, output);
    const status = set.status();
    totalBlocks = status.data.totalBlocks;
    const firstHolds = Math.floor((96 * MiB - MiB - 3 * MiB) / 65536);
    assert.ok(status.data.usedBlocks > firstHolds, `${status.data.usedBlocks} blocks used`);
    const shown = await thinp([...args, 'pool', 'status'], { cwd: dir });
    assert.match(shown.stdout, new RegExp(`held by:\\n  ${first} \\(uuid [0-9a-f]{32}\\): `));
    assert.match(shown.stdout, new RegExp(`\\n  ${second} \\(uuid [0-9a-f]{32}\\): \\d+M data`));
  } finally {
    await daemon.stop();
  }
  // A "reboot": both devices come back, in the other order.
  await loops.detach(first);
  await loops.detach(second);
  const secondNow = await loops.reattach(path.join(dir, 'b.img'));
  const firstNow = await loops.reattach(path.join(dir, 'a.img'));
  const again = await startInProcess(root, opts);
  try {
    const set = again.handle.deviceSet;
    assert.equal(set.status().data.totalBlocks, totalBlocks);
    assert.deepEqual(
      set.group?.devices.map((d) => d.path),
      [firstNow, secondNow],
    );
  } finally {
    await again.stop();
  }
});
