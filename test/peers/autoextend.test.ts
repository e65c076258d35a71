/**
 * Autoextend through the daemon: fio (nbd engine, crc32c verify, rate-limited so the test
 * stays short) fills a thin device past the threshold again and again; the pool grows by
 * dm.thinp_autoextend_percent of its size each time without a failed write, until nothing
 * is left to grow into; then a warning event, `thinp info` saying so, and past it ENOSPC
 * with what fio wrote still intact. In direct-lvm mode on a loop device, and for metadata
 * in loop mode. Loop devices are detached in `after`, whatever failed.
 */

import assert from 'node:assert/strict';
import { mkdir, stat, statfs } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { ApiClient } from '../../src/api/index.js';
import {
  type InProcessDaemon,
  NbdClient,
  requireTool,
  runTool,
  runToolOk,
  startInProcess,
} from '../support/daemon.js';
import { LoopDevices } from '../support/loop-device.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
const dir = await tempDir('thinp-autoextend-');
const loops = new LoopDevices();
after(() => loops.detachAll());

interface Growth {
  space: string;
  fromBytes: number;
  toBytes: number;
}

function logged(daemon: InProcessDaemon, event: string): Array<Record<string, unknown>> {
  return daemon.logs
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((r) => r.event === event);
}

const growths = (daemon: InProcessDaemon, space: string) =>
  logged(daemon, 'pool-autoextend').filter((g) => g.space === space) as unknown as Growth[];

/** fio writing `size` bytes of `device` sequentially, then verifying them (or only verifying). */
async function fio(daemon: InProcessDaemon, device: string, size: number, verifyOnly = false) {
  const result = await runTool(
    await requireTool('fio', 'fio'),
    [
      '--name=fill',
      '--ioengine=nbd',
      `--uri=${daemon.uri(device)}`,
      '--rw=write',
      '--bs=64k',
      '--iodepth=4',
      `--size=${size}`,
      '--rate=48m',
      '--verify=crc32c',
      '--do_verify=1',
      '--verify_fatal=1',
      '--verify_state_save=0',
      ...(verifyOnly ? ['--verify_only=1'] : []),
    ],
    { timeoutMs: 120_000 },
  );
  const output = result.stdout + result.stderr;
  assert.equal(result.status, 0, `fio exited with status ${result.status}:\n${output}`);
  assert.doesNotMatch(output, /verify: bad|verify failed|io_u error|err=\s*[1-9-]/i, output);
}

/** Every growth of `space` added `percent`% of the size before it, rounded up to `unit`. */
function assertGrowthSteps(list: readonly Growth[], percent: number, unit: number): void {
  for (const g of list) {
    const wanted = Math.ceil(Math.ceil((g.fromBytes * percent) / 100) / unit) * unit;
    assert.ok(
      g.toBytes - g.fromBytes === wanted || g.toBytes - g.fromBytes < wanted,
      `grew from ${g.fromBytes} to ${g.toBytes}, not by ${percent}%`,
    );
  }
  for (let i = 1; i < list.length; i++) {
    assert.equal((list[i] as Growth).fromBytes, (list[i - 1] as Growth).toBytes);
  }
}

/** Writes 64 KiB blocks from `offset` until the daemon answers ENOSPC; returns where. */
async function writeUntilFull(daemon: InProcessDaemon, device: string, offset: number) {
  const client = await NbdClient.connect(path.join(daemon.root, 'nbd.sock'), device);
  try {
    for (let at = offset; at < client.size; at += 64 * 1024) {
      try {
        await client.write(at, Buffer.alloc(64 * 1024, 0xab));
      } catch (err) {
        assert.match(String(err), /ENOSPC/);
        return at;
      }
    }
    throw new Error('the device never filled');
  } finally {
    await client.close();
  }
}

describe('autoextend', () => {
  test('direct-lvm: grows into the device by 20% steps, warns when full, then ENOSPC', async () => {
    const dev = await loops.attach(path.join(dir, 'lvm.img'), 192 * MiB);
    const daemon = await startInProcess(path.join(dir, 'lvm-root'), [
      `dm.directlvm_device=${dev}`,
      'dm.thinp_percent=20',
      'dm.thinp_metapercent=2',
      'dm.min_free_space=0%',
    ]);
    try {
      const set = daemon.handle.deviceSet;
      const start = set.status().data.totalBlocks * 65536;
      await set.createDevice('vol', 512 * MiB);
      await fio(daemon, 'vol', 120 * MiB);
      const data = growths(daemon, 'data');
      assert.ok(data.length >= 3, `${data.length} growths: ${JSON.stringify(data)}`);
      assert.equal(data[0]?.fromBytes, start);
      assertGrowthSteps(data, 20, MiB);
      const full = await writeUntilFull(daemon, 'vol', 120 * MiB);
      const warnings = logged(daemon, 'pool-autoextend-exhausted');
      assert.deepEqual(
        warnings.map((w) => w.space),
        ['data'],
      );
      const client = new ApiClient(daemon.handle.controlSocket);
      const metrics = await client.metrics();
      assert.match(
        metrics,
        new RegExp(
          `^thinp_autoextend_total\\{space="data"\\} ${growths(daemon, 'data').length}$`,
          'm',
        ),
      );
      assert.match(metrics, /^thinp_autoextend_exhausted\{space="data"\} 1$/m);
      const info = await client.info();
      assert.match(info.autoextend ?? '', /data past 80% with nothing left to grow into/);
      assert.equal(info.poolDevices, dev);
      const group = set.group?.describe()[0];
      assert.ok(group !== undefined && group.freeBytes < MiB, JSON.stringify(group));
      assert.ok(full > 150 * MiB, `ENOSPC already at ${full}`);
      await fio(daemon, 'vol', 120 * MiB, true);
    } finally {
      await daemon.stop();
    }
  });

  test('loop mode: grows the data file within the free space of its filesystem', async () => {
    const fsDev = await loops.attach(path.join(dir, 'fs.img'), 128 * MiB);
    const mnt = path.join(dir, 'fs');
    await mkdir(mnt);
    await runToolOk(await requireTool('mkfs.ext4', 'e2fsprogs'), ['-q', '-F', '-m', '0', fsDev]);
    await runToolOk(await requireTool('mount', 'mount'), [fsDev, mnt]);
    try {
      const daemon = await startInProcess(path.join(mnt, 'root'), [
        'dm.loopdatasize=16M',
        'dm.loopmetadatasize=4M',
        'dm.min_free_space=0%',
      ]);
      try {
        const set = daemon.handle.deviceSet;
        await set.createDevice('vol', 512 * MiB);
        await fio(daemon, 'vol', 48 * MiB);
        const data = growths(daemon, 'data');
        assert.ok(data.length >= 3, `${data.length} growths: ${JSON.stringify(data)}`);
        assert.equal(data[0]?.fromBytes, 16 * MiB);
        assertGrowthSteps(data, 20, 64 * 1024);
        const full = await writeUntilFull(daemon, 'vol', 48 * MiB);
        assert.deepEqual(
          logged(daemon, 'pool-autoextend-exhausted').map((w) => w.space),
          ['data'],
        );
        const fs = await statfs(mnt);
        const free = fs.bavail * fs.bsize;
        assert.ok(full > 80 * MiB, `ENOSPC already at ${full}`);
        assert.ok(free < 8 * MiB, `${free} bytes still free`);
        // What the pool may still write to its sparse files fits in what the filesystem has.
        const files = ['data', 'metadata'].map((f) => path.join(mnt, 'root', 'devicemapper', f));
        const holes = (await Promise.all(files.map((f) => stat(f)))).reduce(
          (sum, st) => sum + st.size - st.blocks * 512,
          0,
        );
        assert.ok(holes <= free, `${holes} bytes of holes, ${free} bytes free`);
        await fio(daemon, 'vol', 48 * MiB, true);
      } finally {
        await daemon.stop();
      }
    } finally {
      await runToolOk(await requireTool('umount', 'mount'), [mnt]);
    }
  });

  test('a burst of twice the pool at once, with dm.no_space_policy=queue: no write fails', async () => {
    const dev = await loops.attach(path.join(dir, 'queue.img'), 128 * MiB);
    const daemon = await startInProcess(path.join(dir, 'queue-root'), [
      `dm.directlvm_device=${dev}`,
      'dm.thinp_percent=10',
      'dm.thinp_metapercent=2',
      'dm.thinp_autoextend_threshold=99',
      'dm.thinp_autoextend_percent=50',
      'dm.no_space_policy=queue',
      'dm.min_free_space=0%',
    ]);
    try {
      const set = daemon.handle.deviceSet;
      const start = set.status().data.totalBlocks * 65536;
      await set.createDevice('vol', 64 * MiB);
      const client = await NbdClient.connect(path.join(daemon.root, 'nbd.sock'), 'vol');
      try {
        // Twice the pool at once, 64 KiB writes all in flight: what outruns the growth waits.
        const writes = [];
        for (let at = 0; at < 2 * start; at += 64 * 1024) {
          writes.push(client.write(at, Buffer.alloc(64 * 1024, 0x5c)));
        }
        await Promise.all(writes);
        const back = await client.read(2 * start - 64 * 1024, 64 * 1024);
        assert.deepEqual(back, Buffer.alloc(64 * 1024, 0x5c));
      } finally {
        await client.close();
      }
      const { totalBlocks } = set.status().data;
      assert.ok(totalBlocks * 65536 >= 2 * start, `the pool holds ${totalBlocks} blocks`);
    } finally {
      await daemon.stop();
    }
  });

  test('metadata: grows the metadata file before it runs out (loop mode)', async () => {
    const daemon = await startInProcess(path.join(dir, 'meta-root'), [
      'dm.loopdatasize=256M',
      'dm.loopmetadatasize=1M',
      'dm.min_free_space=0%',
    ]);
    try {
      const set = daemon.handle.deviceSet;
      for (let i = 0; i < 240; i++) {
        await set.createDevice(`d${i}`, 16 * MiB);
        await set.open(`d${i}`).write(Buffer.alloc(4096, i & 0xff), 8 * MiB);
        await set.release(`d${i}`);
      }
      await set.pool.commit();
      await new Promise((resolve) => setTimeout(resolve, 100));
      const meta = growths(daemon, 'metadata');
      assert.ok(meta.length >= 1, 'metadata never grew');
      assertGrowthSteps(meta, 20, 4096);
      const { usedBlocks, totalBlocks } = set.status().metadata;
      assert.ok(totalBlocks > 256, `still ${totalBlocks} metadata blocks`);
      assert.ok(usedBlocks * 100 < totalBlocks * 80, `${usedBlocks} of ${totalBlocks} used`);
      assert.equal(logged(daemon, 'pool-outOfSpace').length, 0);
    } finally {
      await daemon.stop();
    }
  });
});
