/**
 * Which writes the pool sends around the data device's cache (`BlockDevice.writeUncached`):
 * a client's write of at least `uncachedWriteMin` bytes, in every way it reaches the data
 * device (a fresh block, an overwrite in place, a copy of a shared block); smaller writes,
 * and every write when the minimum is 0 or the device has no such call, through `write`.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { MemoryDevice } from '../../../src/block/index.js';
import { ThinPool, type ThinPoolOptions } from '../../../src/pool/index.js';

const B = 64 * 1024;
const MiB = 1024 * 1024;

/** A memory device that counts the bytes each kind of write brought it. */
class CountingDevice extends MemoryDevice {
  cachedBytes = 0;
  uncachedBytes = 0;

  override async write(buf: Uint8Array, offset: number): Promise<void> {
    this.cachedBytes += buf.length;
    await super.write(buf, offset);
  }

  async writeUncached(buf: Uint8Array, offset: number): Promise<void> {
    this.uncachedBytes += buf.length;
    await super.write(buf, offset);
  }
}

async function pool(options: ThinPoolOptions = {}) {
  const data = new CountingDevice(64 * B);
  const p = await ThinPool.create(data, new MemoryDevice(4 << 20), {
    blockSize: B,
    commitIntervalMs: 0,
    ...options,
  });
  await p.createThin(0);
  return { p, data, dev: p.device(0, 32 * B) };
}

async function readBack(p: ThinPool, id: number, offset: number, length: number) {
  const buf = Buffer.alloc(length);
  await p.device(id, 32 * B).read(buf, offset);
  return buf;
}

describe('uncached writes', () => {
  it('sends a large write around the cache: fresh blocks, then in place', async () => {
    const { p, data, dev } = await pool();
    const first = randomBytes(MiB);
    await dev.write(first, 0);
    assert.equal(data.uncachedBytes, MiB, 'sixteen fresh blocks, each written uncached');
    assert.equal(data.cachedBytes, 0);
    const second = randomBytes(MiB);
    await dev.write(second, 0);
    assert.equal(data.uncachedBytes, 2 * MiB, 'overwritten in place, uncached');
    assert.deepEqual(await readBack(p, 0, 0, MiB), second);
    await p.close();
  });

  it('copies a shared block around the cache too, and the snapshot keeps its bytes', async () => {
    const { p, data, dev } = await pool();
    const before = randomBytes(8 * B);
    await dev.write(before, 0);
    await p.createSnapshot(1, 0);
    const counted = data.uncachedBytes;
    // Partial at both ends: the edge blocks are copied (read, then written whole).
    const after = randomBytes(5 * B);
    await dev.write(after, B / 2);
    assert.equal(data.uncachedBytes - counted, 6 * B, 'six new blocks, written whole');
    assert.equal(data.cachedBytes, 0);
    assert.deepEqual(await readBack(p, 1, 0, 8 * B), before);
    const expected = Buffer.from(before);
    after.copy(expected, B / 2);
    assert.deepEqual(await readBack(p, 0, 0, 8 * B), expected);
    await p.close();
  });

  it('keeps smaller writes in the cache, and writes at once what it can', async () => {
    const { p, data, dev } = await pool();
    await dev.write(randomBytes(128 * 1024), 0);
    assert.equal(data.cachedBytes, 128 * 1024);
    assert.equal(data.uncachedBytes, 0);
    await p.close();
  });

  it('honours the minimum: lower it, or turn it off with 0', async () => {
    const low = await pool({ uncachedWriteMin: 4096 });
    await low.dev.write(randomBytes(4096), 0);
    assert.equal(low.dev.writeAtOnce(randomBytes(4096), 8192), false, 'left to write');
    assert.equal(low.data.uncachedBytes, 4096);
    await low.p.close();
    const off = await pool({ uncachedWriteMin: 0 });
    await off.dev.write(randomBytes(MiB), 0);
    assert.equal(off.data.uncachedBytes, 0);
    assert.equal(off.data.cachedBytes, MiB);
    await off.p.close();
  });

  it('writes through `write` when the data device has no uncached call', async () => {
    const data = new MemoryDevice(64 * B);
    const p = await ThinPool.create(data, new MemoryDevice(4 << 20), {
      blockSize: B,
      commitIntervalMs: 0,
    });
    await p.createThin(0);
    const bytes = randomBytes(MiB);
    await p.device(0, 32 * B).write(bytes, B);
    assert.deepEqual(await readBack(p, 0, B, MiB), bytes);
    await p.close();
  });
});
