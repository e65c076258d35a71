import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { FileDevice, nativeStatus } from '../../../src/block/index.js';
import { punchHole } from '../../../src/block/native.js';
import { tempDir } from '../../support/temp.js';

const MiB = 1024 * 1024;
const dir = await tempDir('thinp-punch-');

describe('the native addon', () => {
  test('is built and loads (npm install builds it with node-gyp)', () => {
    const status = nativeStatus();
    assert.equal(status.available, true, `the addon did not load: ${status.reason}`);
    assert.equal(typeof punchHole, 'function');
  });

  test('rejects arguments that are not non-negative safe integers', async () => {
    assert.ok(punchHole !== undefined);
    const handle = await open(path.join(dir, 'arguments.img'), 'w+');
    after(() => handle.close());
    const bad: [number, number, number][] = [
      [-1, 0, 1],
      [handle.fd, -1, 1],
      [handle.fd, 0.5, 1],
      [handle.fd, 0, Number.NaN],
      [handle.fd, 0, Number.POSITIVE_INFINITY],
      [handle.fd, 2 ** 53, 1],
      [2 ** 31, 0, 1],
    ];
    for (const args of bad) {
      await assert.rejects(punchHole(...args), TypeError, `punchHole(${args.join(', ')})`);
    }
    const untyped = punchHole as unknown as (...args: unknown[]) => Promise<void>;
    await assert.rejects(untyped(String(handle.fd), 0, 1), /fd must be a non-negative/);
    await assert.rejects(untyped(handle.fd, 0), /length must be a non-negative/);
  });

  test('reports a failed fallocate as an errno error', async () => {
    assert.ok(punchHole !== undefined);
    // Far above any open descriptor (a closed one could be reused by the time it is used).
    const fd = 2 ** 31 - 1;
    await assert.rejects(punchHole(fd, 0, 4096), (err: NodeJS.ErrnoException) => {
      assert.equal(err.code, 'EBADF');
      assert.equal(err.errno, -9);
      assert.equal(err.syscall, 'fallocate');
      assert.match(err.message, /^EBADF: .*fallocate$/);
      return true;
    });
  });
});

describe('FileDevice.discard', () => {
  test('gives the space of the middle 4 MiB of 8 MiB back to the filesystem', async () => {
    const file = path.join(dir, 'punched.img');
    const device = await FileDevice.open(file, { create: { size: 16 * MiB } });
    const data = randomBytes(8 * MiB);
    await device.write(data, 0);
    await device.flush();
    const before = await device.allocatedBytes();
    assert.ok(before >= 8 * MiB, `${before} bytes allocated after writing 8 MiB`);

    await device.discard(2 * MiB, 4 * MiB);
    assert.equal(device.punchesHoles, true, 'the filesystem under the temp folder punches holes');
    const dropped = before - (await device.allocatedBytes());
    assert.ok(dropped >= 3.5 * MiB, `only ${dropped} bytes were given back`);

    const back = Buffer.alloc(8 * MiB, 0xee);
    await device.read(back, 0);
    assert.deepEqual(back.subarray(0, 2 * MiB), data.subarray(0, 2 * MiB));
    assert.ok(back.subarray(2 * MiB, 6 * MiB).every((byte) => byte === 0));
    assert.deepEqual(back.subarray(6 * MiB), data.subarray(6 * MiB));
    await device.close();
    assert.equal((await stat(file)).size, 16 * MiB, 'discard keeps the file size');
  });

  test('punches unaligned ranges, zeroing the partial blocks at the edges', async () => {
    const file = path.join(dir, 'ragged.img');
    const device = await FileDevice.open(file, { create: { size: 1 * MiB } });
    const data = randomBytes(MiB);
    await device.write(data, 0);
    await device.discard(1000, 100_000);
    const expected = Buffer.from(data);
    expected.fill(0, 1000, 101_000);
    const back = Buffer.alloc(MiB);
    await device.read(back, 0);
    assert.deepEqual(back, expected);
    await device.close();
  });

  test('reports the allocated bytes of a sparse file, and fails once closed', async () => {
    const device = await FileDevice.open(path.join(dir, 'sparse.img'), {
      create: { size: 64 * MiB },
    });
    assert.ok((await device.allocatedBytes()) < MiB);
    await device.close();
    await assert.rejects(device.allocatedBytes(), /closed/);
  });
});
