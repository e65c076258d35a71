import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open, truncate } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { FileDevice } from '../../../src/block/index.js';
import { nowaitIo } from '../../../src/block/nowait-native.js';
import { tempDir } from '../../support/temp.js';

const dir = await tempDir('thinp-nowait-');

describe('the addon thinp_nowait', () => {
  test('is built and loads (npm install builds it with node-gyp)', () => {
    assert.ok(nowaitIo !== undefined, 'build/Release/thinp_nowait.node did not load');
  });

  test('reads what the page cache holds, at once', async () => {
    assert.ok(nowaitIo !== undefined);
    const handle = await open(path.join(dir, 'cached.img'), 'w+');
    after(() => handle.close());
    const data = randomBytes(3 * 4096);
    await handle.write(data, 0, data.length, 0);
    const buf = Buffer.alloc(4096 + 100);
    assert.equal(nowaitIo.readNowait(handle.fd, buf.subarray(100), 4096), 4096);
    assert.deepEqual(buf.subarray(100), data.subarray(4096, 8192));
    assert.ok(
      buf.subarray(0, 100).every((b) => b === 0),
      'wrote outside its view',
    );
    assert.equal(nowaitIo.readNowait(handle.fd, buf, data.length), 0, 'at the end of the file');
    assert.equal(nowaitIo.readNowait(handle.fd, buf.subarray(0, 0), 0), 0);
  });

  test('returns a negated errno instead of throwing for a failed call', () => {
    assert.ok(nowaitIo !== undefined);
    const fd = 2 ** 31 - 1;
    assert.equal(nowaitIo.readNowait(fd, Buffer.alloc(16), 0), -9); // EBADF
    assert.equal(nowaitIo.writeNowait(fd, Buffer.alloc(16), 0), -9);
  });

  test('throws a TypeError for bad arguments', () => {
    assert.ok(nowaitIo !== undefined);
    const untyped = nowaitIo.readNowait as unknown as (...args: unknown[]) => number;
    assert.throws(() => untyped(-1, Buffer.alloc(1), 0), TypeError);
    assert.throws(() => untyped(0, 'text', 0), /buffer must be a Uint8Array/);
    assert.throws(() => untyped(0, new Uint16Array(2), 0), /buffer must be a Uint8Array/);
    assert.throws(() => untyped(0, Buffer.alloc(1), -1), /offset must be/);
    assert.throws(() => untyped(0, Buffer.alloc(1), 0.5), /offset must be/);
    assert.throws(() => untyped(0, Buffer.alloc(1), 2 ** 53), /offset must be/);
  });
});

describe('FileDevice over the addon', () => {
  test('reads the same bytes with and without RWF_NOWAIT attempts', async () => {
    const file = path.join(dir, 'same.img');
    const fast = await FileDevice.open(file, { create: { size: 1 << 20 } });
    after(() => fast.close());
    const data = randomBytes(200_000);
    await fast.write(data, 12_345);
    const slow = await FileDevice.open(file, { nowait: false });
    after(() => slow.close());
    for (const [offset, length] of [
      [0, 1 << 20],
      [12_345, 200_000],
      [4095, 2],
      [100_000, 65_536],
    ] as const) {
      const a = Buffer.alloc(length, 1);
      const b = Buffer.alloc(length, 2);
      await fast.read(a, offset);
      await slow.read(b, offset);
      assert.deepEqual(a, b, `[${offset}, +${length})`);
    }
  });

  test('fills zeros past the end of a file shortened behind its back', async () => {
    const file = path.join(dir, 'short.img');
    const device = await FileDevice.open(file, { create: { size: 64 * 1024 } });
    after(() => device.close());
    await device.write(Buffer.alloc(64 * 1024, 0x5a), 0);
    await truncate(file, 10_000);
    const buf = Buffer.alloc(20_000, 0xee);
    await device.read(buf, 0);
    assert.ok(buf.subarray(0, 10_000).every((b) => b === 0x5a));
    assert.ok(buf.subarray(10_000).every((b) => b === 0));
  });
});
