/**
 * Direct-lvm pools on real loop devices over sparse files: thinp divides one device by the
 * percentages, the metadata region read out of the device passes the real `thin_check`, the
 * pool is found again by its label after a simulated reboot (the daemon stopped, the loop
 * devices detached and attached again in another order), and a device holding ext4, a
 * device too small and changed percentages are refused without changing anything. Every
 * loop device is detached in `after`, whatever failed.
 */

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { open, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { type Config, loadConfig } from '../../src/config/index.js';
import { DeviceSet } from '../../src/driver/index.js';
import type { ThinpError } from '../../src/util/index.js';
import { thinp } from '../support/cli.js';
import { requireTool, runToolOk, startInProcess } from '../support/daemon.js';
import { LoopDevices, refreshLoop } from '../support/loop-device.js';
import { requirePeer, thinCheck } from '../support/peers.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
const LABEL_AREA = MiB;
const dir = await tempDir('thinp-direct-lvm-');
const loops = new LoopDevices();
after(() => loops.detachAll());
let roots = 0;

function config(device: string, ...opts: string[]): Promise<Config> {
  return loadConfig({
    root: path.join(dir, `root-${++roots}`),
    storageOpts: [`dm.directlvm_device=${device}`, 'dm.min_free_space=0%', ...opts],
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
  });
}

const again = (c: Config, ...opts: string[]) =>
  loadConfig({ root: c.root, storageOpts: opts, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });

/** SHA-256 of the first `length` bytes of `device`. */
async function digest(device: string, length = 2 * MiB): Promise<string> {
  const handle = await open(device, 'r');
  try {
    const buf = Buffer.alloc(length);
    await handle.read(buf, 0, length, 0);
    return createHash('sha256').update(buf).digest('hex');
  } finally {
    await handle.close();
  }
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

function describes(pattern: RegExp) {
  return (err: unknown) => {
    assert.match((err as ThinpError).describe(), pattern);
    return true;
  };
}

describe('direct-lvm pool', () => {
  test('divides the device by the percentages; thin_check passes on the metadata region', async () => {
    const dev = await loops.attach(path.join(dir, 'a.img'), 256 * MiB);
    const c = await config(dev, 'dm.thinp_percent=40', 'dm.thinp_metapercent=2');
    const set = await DeviceSet.create(c);
    try {
      const { data, metadata } = set.status();
      assert.equal(data.totalBlocks * data.blockSize, Math.floor((256 * 0.4) / 1) * MiB);
      assert.equal(metadata.totalBlocks * 4096, 5 * MiB);
      await set.createDevice('vol', 64 * MiB);
      await set.open('vol').write(Buffer.alloc(MiB, 0x5a), 3 * MiB);
      await set.release('vol');
    } finally {
      await set.close();
    }
    const record = JSON.parse(await readFile(c.layout.poolConfigFile, 'utf8'));
    assert.equal(record.mode, 'direct-lvm');
    assert.deepEqual(
      [record.directLvm.device, record.directLvm.thinpPercent, record.directLvm.thinpMetaPercent],
      [dev, 40, 2],
    );
    const meta = path.join(dir, 'a.meta');
    const handle = await open(dev, 'r');
    const buf = Buffer.alloc(5 * MiB);
    await handle.read(buf, 0, buf.length, LABEL_AREA);
    await handle.close();
    await writeFile(meta, buf);
    await requirePeer('thin_check');
    const check = await thinCheck(meta);
    assert.equal(check.status, 0, check.stderr);
  });

  test('is found by its label after the loop devices come back in another order', async () => {
    const files = ['r1.img', 'r2.img'].map((f) => path.join(dir, f));
    const first = await loops.attach(files[0] as string, 128 * MiB);
    const c = await config(first, 'dm.thinp_percent=50', 'dm.thinp_metapercent=2');
    const daemon = await startInProcess(c.root, [
      `dm.directlvm_device=${first}`,
      'dm.thinp_percent=50',
      'dm.thinp_metapercent=2',
    ]);
    try {
      await daemon.handle.deviceSet.createDevice('vol', 32 * MiB);
      const vol = daemon.handle.deviceSet.open('vol');
      await vol.write(Buffer.alloc(2 * MiB, 0x77), MiB);
      await daemon.handle.deviceSet.release('vol');
    } finally {
      await daemon.stop();
    }
    // The "reboot": the pool's device goes, another device takes its name, and the pool's
    // file comes back under a new one.
    await loops.detach(first);
    await loops.attach(files[1] as string, 16 * MiB);
    const moved = await loops.reattach(files[0] as string);
    assert.notEqual(moved, first);
    const reopened = await startInProcess(c.root, [
      `dm.directlvm_device=${first}`,
      'dm.thinp_percent=50',
      'dm.thinp_metapercent=2',
    ]);
    try {
      const set = reopened.handle.deviceSet;
      const got = Buffer.alloc(2 * MiB);
      await set.open('vol').read(got, MiB);
      await set.release('vol');
      assert.deepEqual(got, Buffer.alloc(2 * MiB, 0x77));
      assert.deepEqual(
        set.group?.devices.map((d) => d.path),
        [moved],
      );
    } finally {
      await reopened.stop();
    }
    const record = JSON.parse(await readFile(c.layout.poolConfigFile, 'utf8'));
    assert.deepEqual(
      record.directLvm.devices.map((d: { path: string }) => d.path),
      [moved],
    );
  });
});

describe('direct-lvm resize', () => {
  test('--data-size and --metadata-size take free extents, kept after a reopen; more is refused', async () => {
    const dev = await loops.attach(path.join(dir, 'resize.img'), 256 * MiB);
    const opts = [`dm.directlvm_device=${dev}`, 'dm.thinp_percent=40', 'dm.thinp_metapercent=2'];
    const c = await config(dev, ...opts.slice(1));
    const set = await DeviceSet.create(c);
    try {
      await set.resizeData(150 * MiB);
      await set.resizeMetadata(8 * MiB);
      await assert.rejects(
        set.resizeData(1024 * MiB),
        describes(/cannot grow to 1073741824 bytes: its devices have \d+ bytes free.*--add-device/),
      );
      await set.createDevice('vol', 16 * MiB);
    } finally {
      await set.close();
    }
    const reopened = await DeviceSet.open(c);
    try {
      const { data, metadata } = reopened.status();
      assert.equal(data.totalBlocks * data.blockSize, 150 * MiB);
      assert.equal(metadata.totalBlocks * 4096, 8 * MiB);
      const metaSegments = reopened.group?.segments.filter((s) => s.kind === 'metadata');
      assert.equal(metaSegments?.length, 2, 'the metadata grew into a second segment');
    } finally {
      await reopened.close();
    }
    const args = ['--root', c.root, ...opts.flatMap((o) => ['--storage-opt', o])];
    const checked = await thinp([...args, 'check'], { cwd: dir });
    assert.equal(checked.status, 0, checked.stderr + checked.stdout);
  });
});

describe('direct-lvm: a missing device', () => {
  test('is named with where it was last, and nothing opens', async () => {
    const dev = await loops.attach(path.join(dir, 'gone.img'), 256 * MiB);
    const c = await config(dev, 'dm.thinp_percent=40', 'dm.thinp_metapercent=2');
    await (await DeviceSet.create(c)).close();
    const { directLvm } = JSON.parse(await readFile(c.layout.poolConfigFile, 'utf8'));
    await loops.detach(dev);
    await assert.rejects(
      DeviceSet.open(c),
      describes(
        new RegExp(
          `cannot find any device of pool ${directLvm.poolUuid} \\(last at ${dev}\\).*losetup`,
        ),
      ),
    );
  });
});

describe('dm.datadev and dm.metadatadev', () => {
  test('a pool on two loop devices: recorded, reopened, checked, grown with its device', async () => {
    const dataFile = path.join(dir, 'data.img');
    const data = await loops.attach(dataFile, 64 * MiB);
    const meta = await loops.attach(path.join(dir, 'meta.img'), 8 * MiB);
    const c = await loadConfig({
      root: path.join(dir, `root-${++roots}`),
      storageOpts: [`dm.datadev=${data}`, `dm.metadatadev=${meta}`, 'dm.min_free_space=0%'],
      env: { PATH: '' },
    });
    const set = await DeviceSet.create(c);
    try {
      assert.equal(set.status().data.totalBlocks, 1024);
      await set.createDevice('vol', 16 * MiB);
      await set.open('vol').write(Buffer.alloc(MiB, 0x3c), 0);
      await set.release('vol');
    } finally {
      await set.close();
    }
    const record = JSON.parse(await readFile(c.layout.poolConfigFile, 'utf8'));
    assert.deepEqual([record.mode, record.dataFile, record.metadataFile], ['devices', data, meta]);
    await requirePeer('thin_check');
    const check = await thinCheck(meta);
    assert.equal(check.status, 0, check.stderr);
    await truncate(dataFile, 96 * MiB);
    await refreshLoop(data);
    const reopened = await DeviceSet.open(c);
    try {
      const got = Buffer.alloc(MiB);
      await reopened.open('vol').read(got, 0);
      await reopened.release('vol');
      assert.deepEqual(got, Buffer.alloc(MiB, 0x3c));
      assert.equal(await reopened.extendSpace('data', 64 * MiB), 32 * MiB);
      assert.equal(reopened.status().data.totalBlocks, 1536);
      assert.equal(await reopened.extendSpace('data', MiB), 0);
    } finally {
      await reopened.close();
    }
  });
});

describe('direct-lvm checks', () => {
  test('thinp check reads the metadata out of the device; a pool needing a check is not served', async () => {
    const dev = await loops.attach(path.join(dir, 'check.img'), 256 * MiB);
    const opts = [`dm.directlvm_device=${dev}`, 'dm.thinp_percent=40', 'dm.thinp_metapercent=2'];
    const c = await config(dev, ...opts.slice(1));
    const set = await DeviceSet.create(c);
    await set.createDevice('vol', 16 * MiB);
    const args = ['--root', c.root, ...opts.flatMap((o) => ['--storage-opt', o])];
    const checked = await thinp([...args, 'check'], { cwd: dir });
    await set.pool.metadata.setNeedsCheck();
    await set.close();
    assert.equal(checked.status, 0, checked.stderr);
    assert.match(checked.stdout, /devices: 1/i);
    await assert.rejects(
      startInProcess(c.root, [...opts, 'dm.min_free_space=0%']),
      describes(new RegExp(`needs a check.*run 'thinp --root ${c.root} check'`)),
    );
  });
});

describe('direct-lvm refusals change nothing', () => {
  test('a device holding ext4, unless forced', async () => {
    const file = path.join(dir, 'ext4.img');
    const dev = await loops.attach(file, 256 * MiB);
    await runToolOk(await requireTool('mkfs.ext4', 'e2fsprogs'), ['-q', '-F', dev]);
    const before = await digest(dev);
    const c = await config(dev);
    await assert.rejects(
      DeviceSet.create(c),
      describes(/holds an ext4 filesystem .*dm\.directlvm_device_force=true/),
    );
    assert.equal(await digest(dev), before);
    assert.equal(await exists(c.layout.poolConfigFile), false);
    const forced = await config(dev, 'dm.directlvm_device_force=true');
    const set = await DeviceSet.create(forced);
    await set.close();
    assert.notEqual(await digest(dev), before);
  });

  test('a device too small for the percentages', async () => {
    const dev = await loops.attach(path.join(dir, 'small.img'), 64 * MiB);
    const before = await digest(dev);
    const c = await config(dev);
    await assert.rejects(
      DeviceSet.create(c),
      describes(/too small: 64M gives .*dm\.thinp_metapercent=1%.*at least 200M/),
    );
    assert.equal(await digest(dev), before);
    assert.equal(await exists(c.layout.poolConfigFile), false);
  });

  test('changed percentages on an existing pool', async () => {
    const dev = await loops.attach(path.join(dir, 'changed.img'), 256 * MiB);
    const c = await config(dev, 'dm.thinp_percent=40', 'dm.thinp_metapercent=2');
    await (await DeviceSet.create(c)).close();
    const record = await readFile(c.layout.poolConfigFile, 'utf8');
    const before = await digest(dev, 8 * MiB);
    const changed = await again(
      c,
      `dm.directlvm_device=${dev}`,
      'dm.thinp_percent=60',
      'dm.thinp_metapercent=2',
    );
    await assert.rejects(
      DeviceSet.open(changed),
      describes(/dm\.thinp_percent=60% \(set up with 40%\).*does not change/),
    );
    assert.equal(await readFile(c.layout.poolConfigFile, 'utf8'), record);
    assert.equal(await digest(dev, 8 * MiB), before);
  });
});
