import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../../src/config/index.js';
import { DeviceSet, RootLock } from '../../../src/driver/index.js';
import { BusyError, ConfigError } from '../../../src/util/index.js';
import { tempDir } from '../../support/temp.js';

const MiB = 1024 * 1024;
const dir = await tempDir('thinp-thinpooldev-');

const config = (root: string, ...opts: string[]) =>
  loadConfig({ root, storageOpts: ['dm.min_free_space=0%', ...opts], env: { PATH: '' } });

async function read(set: DeviceSet, name: string): Promise<Buffer> {
  const buf = Buffer.alloc(4096);
  await set.open(name).read(buf, 0);
  await set.release(name);
  return buf;
}

test('dm.thinpooldev uses the pool another root made, under that root lock', async () => {
  const a = path.join(dir, 'a');
  const b = path.join(dir, 'b');
  await mkdir(a);
  await mkdir(b);
  const own = await DeviceSet.create(
    await config(a, 'dm.loopdatasize=64M', 'dm.loopmetadatasize=8M'),
  );
  await own.createDevice('first', 16 * MiB);
  await own.open('first').write(Buffer.alloc(4096, 0x11), 0);
  await own.release('first');
  await own.close();

  const borrowed = await DeviceSet.create(await config(b, `dm.thinpooldev=${a}`));
  try {
    const made = await borrowed.createDevice('second', 16 * MiB);
    assert.equal(made.id, 2, 'the second device did not skip the id the pool has');
    await borrowed.open('second').write(Buffer.alloc(4096, 0x22), 0);
    await borrowed.release('second');
    await assert.rejects(RootLock.acquire(a, 'thinp device list'), BusyError);
  } finally {
    await borrowed.close();
  }

  const lock = await RootLock.acquire(a, 'test');
  const reopened = await DeviceSet.open(
    await config(a, 'dm.loopdatasize=64M', 'dm.loopmetadatasize=8M'),
  );
  try {
    assert.deepEqual(reopened.names(), ['first']);
    assert.deepEqual(await read(reopened, 'first'), Buffer.alloc(4096, 0x11));
    assert.deepEqual((await reopened.pool.metadata.deviceIds()).length, 2);
  } finally {
    await reopened.close();
    await lock.release();
  }

  const again = await DeviceSet.open(await config(b, `dm.thinpooldev=${a}/thinp.json`));
  try {
    assert.deepEqual(again.names(), ['second']);
    assert.deepEqual(await read(again, 'second'), Buffer.alloc(4096, 0x22));
  } finally {
    await again.close();
  }
  await assert.rejects(DeviceSet.open(await config(b)), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /is the pool of .*\/a \(dm\.thinpooldev\), but the options give no/);
    return true;
  });
});
