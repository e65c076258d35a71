import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { FileDevice, MemoryDevice } from '../../../src/block/index.js';
import { ThinPool } from '../../../src/pool/index.js';
import { checkMetadata } from '../../../src/tools/index.js';
import { NoSpaceError } from '../../../src/util/index.js';
import { thinCheck } from '../../support/peers.js';
import { tempDir } from '../../support/temp.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const B = 64 * KiB;
const dir = tempDir('thinp-pool-');

function pattern(length: number, seed: number): Buffer {
  const buf = Buffer.alloc(length);
  for (let i = 0; i < length; i++) buf[i] = (i * 31 + seed * 7) & 0xff;
  return buf;
}

async function memoryPool(dataBytes = 64 * MiB, options = {}) {
  return ThinPool.create(new MemoryDevice(dataBytes), new MemoryDevice(8 * MiB), {
    blockSize: B,
    commitIntervalMs: 0,
    ...options,
  });
}

async function readBack(
  dev: { read(b: Buffer, o: number): Promise<void> },
  offset: number,
  length: number,
) {
  const buf = Buffer.alloc(length);
  await dev.read(buf, offset);
  return buf;
}

describe('ThinPool', () => {
  it('reads zeros where nothing was written and the bytes written anywhere else', async () => {
    const pool = await memoryPool();
    await pool.createThin(1);
    const dev = pool.device(1, 16 * MiB);
    const data = pattern(100_000, 1);
    await dev.write(data, 12_345);
    assert.deepEqual(await readBack(dev, 12_345, data.length), data);
    assert.deepEqual(await readBack(dev, 0, 12_345), Buffer.alloc(12_345));
    assert.deepEqual(await readBack(dev, 12_345 + data.length, 5000), Buffer.alloc(5000));
    assert.equal(pool.status().data.usedBlocks, 2, 'bytes 12,345..112,345 touch two blocks');
  });

  it('copies exactly one block when a shared block is written, and the snapshot keeps the old bytes', async () => {
    const pool = await memoryPool();
    await pool.createThin(1);
    const origin = pool.device(1, 16 * MiB);
    const before = pattern(10 * B, 2);
    await origin.write(before, 0);
    await pool.createSnapshot(2, 1);
    const used = pool.status().data.usedBlocks;
    const change = pattern(4 * KiB, 3);
    await origin.write(change, 3 * B + 100);
    assert.equal(pool.status().data.usedBlocks, used + 1);
    const snap = pool.device(2, 16 * MiB);
    assert.deepEqual(await readBack(snap, 0, 10 * B), before);
    const expected = Buffer.from(before);
    change.copy(expected, 3 * B + 100);
    assert.deepEqual(await readBack(origin, 0, 10 * B), expected);
    await pool.commit();
    assert.deepEqual((await checkMetadata(pool.metadata.device)).problems, []);
  });

  it('serializes concurrent writes to one block so none is lost', async () => {
    const pool = await memoryPool();
    await pool.createThin(1);
    const dev = pool.device(1, 4 * MiB);
    const writes = [];
    for (let i = 0; i < 16; i++) writes.push(dev.write(Buffer.alloc(4 * KiB, i + 1), i * 4 * KiB));
    await Promise.all(writes);
    for (let i = 0; i < 16; i++) {
      assert.deepEqual(await readBack(dev, i * 4 * KiB, 4 * KiB), Buffer.alloc(4 * KiB, i + 1));
    }
    assert.equal(pool.status().data.usedBlocks, 1);
  });

  it('unmaps whole blocks on discard and zeroes on write-zeroes', async () => {
    const pool = await memoryPool();
    await pool.createThin(1);
    const dev = pool.device(1, 4 * MiB);
    await dev.write(pattern(4 * B, 4), 0);
    await dev.discard(B, 2 * B);
    assert.equal(pool.status().data.usedBlocks, 2);
    assert.deepEqual(await readBack(dev, B, 2 * B), Buffer.alloc(2 * B));
    await dev.writeZeroes(100, 1000);
    assert.deepEqual(await readBack(dev, 100, 1000), Buffer.alloc(1000));
    assert.deepEqual(await dev.blockStatus(0, 4 * B), [
      { offset: 0, length: B, mapped: true },
      { offset: B, length: 2 * B, mapped: false },
      { offset: 3 * B, length: B, mapped: true },
    ]);
  });

  it('fails a write with NoSpaceError when the data device is full, damaging nothing, and grows', async () => {
    const pool = await memoryPool(4 * B);
    await pool.createThin(1);
    const dev = pool.device(1, 64 * MiB);
    const data = pattern(4 * B, 5);
    await dev.write(data, 0);
    await assert.rejects(dev.write(Buffer.alloc(10, 1), 10 * B), NoSpaceError);
    assert.equal(pool.mode, 'out_of_data_space');
    assert.deepEqual(await readBack(dev, 0, 4 * B), data);
    await pool.resizeData(8 * B);
    assert.equal(pool.mode, 'rw');
    await dev.write(Buffer.alloc(10, 1), 10 * B);
    assert.equal(pool.status().data.usedBlocks, 5);
  });

  it('queues a write until space appears under the queue policy', async () => {
    const pool = await memoryPool(2 * B, { noSpacePolicy: 'queue', queueTimeoutMs: 5000 });
    await pool.createThin(1);
    const dev = pool.device(1, 64 * MiB);
    await dev.write(pattern(2 * B, 6), 0);
    const queued = dev.write(Buffer.alloc(10, 9), 5 * B);
    await new Promise((r) => setTimeout(r, 50));
    await pool.resizeData(4 * B);
    await queued;
    assert.deepEqual(await readBack(dev, 5 * B, 10), Buffer.alloc(10, 9));
  });

  it('returns the space of a removed snapshot to the host file and passes thin_check', async () => {
    const data = await FileDevice.open(path.join(await dir, 'data'), {
      create: { size: 256 * MiB },
    });
    const metaFile = path.join(await dir, 'meta');
    const meta = await FileDevice.open(metaFile, { create: { size: 16 * MiB } });
    try {
      const pool = await ThinPool.create(data, meta, { blockSize: B, commitIntervalMs: 0 });
      await pool.createThin(1);
      await pool.device(1, 64 * MiB).write(pattern(8 * MiB, 7), 0);
      await pool.createSnapshot(2, 1);
      await pool.device(2, 64 * MiB).write(pattern(4 * MiB, 8), 0);
      await pool.commit();
      const before = await data.allocatedBytes();
      await pool.deleteDevice(2);
      await pool.commit();
      const after = await data.allocatedBytes();
      assert.ok(before - after >= 4 * MiB - 64 * KiB, `allocated ${before} -> ${after}`);
      assert.equal(pool.status().data.usedBlocks, 128);
      await pool.close();
    } finally {
      await data.close();
      await meta.close();
    }
    const check = await thinCheck(metaFile);
    assert.equal(check.status, 0, check.stdout + check.stderr);
  });
});

describe('ThinPool out of metadata space', () => {
  it('turns read-only, sets needs_check and keeps the last commit intact', async () => {
    const metaFile = path.join(await dir, 'small.meta');
    const data = new MemoryDevice(32_768 * B);
    const meta = await FileDevice.open(metaFile, { create: { size: 48 * 4096 } });
    try {
      const pool = await ThinPool.create(data, meta, { blockSize: B, commitIntervalMs: 0 });
      await pool.createThin(1);
      const dev = pool.device(1, 32_768 * B);
      const first = pattern(4 * B, 9);
      await dev.write(first, 0);
      await pool.commit();
      let failure: unknown;
      try {
        // Scattered single-block writes need a leaf each until metadata runs out.
        for (let v = 10; v < 32_768; v++) {
          await dev.write(Buffer.alloc(512, 1), v * B);
          if (v % 500 === 0) await pool.commit();
        }
      } catch (err) {
        failure = err;
      }
      assert.ok(failure instanceof Error, 'the writes ran out of metadata space');
      assert.equal(pool.mode, 'ro');
      await assert.rejects(dev.write(Buffer.alloc(1), 0), /read-only/);
      assert.deepEqual(await readBack(dev, 0, 4 * B), first);
      await meta.flush();
    } finally {
      await meta.close();
    }
    const check = await thinCheck(metaFile);
    assert.equal(check.status, 0, check.stdout + check.stderr);
    const reopened = await FileDevice.open(metaFile, { readOnly: true });
    try {
      const pool = await ThinPool.open(data, reopened, { commitIntervalMs: 0 });
      assert.equal(pool.status().needsCheck, true);
      assert.equal(pool.mode, 'ro');
      assert.deepEqual(await readBack(pool.device(1, 32_768 * B), 0, 4 * B), pattern(4 * B, 9));
    } finally {
      await reopened.close();
    }
  });
});

describe('ThinPool low water mark', () => {
  it('signals once when the free share falls below the mark, and again after a resize', async () => {
    const pool = await memoryPool(10 * B, { lowWaterPercent: 30 });
    const seen: Array<{ freeBlocks: number; totalBlocks: number }> = [];
    pool.on('lowWater', (e) => seen.push(e));
    await pool.createThin(1);
    const dev = pool.device(1, 64 * MiB);
    for (let v = 0; v < 9; v++) await dev.write(Buffer.alloc(B, 1), v * B);
    assert.deepEqual(seen, [{ freeBlocks: 2, totalBlocks: 10 }]);
    await pool.resizeData(20 * B);
    for (let v = 9; v < 18; v++) await dev.write(Buffer.alloc(B, 1), v * B);
    assert.deepEqual(seen[1], { freeBlocks: 5, totalBlocks: 20 });
    assert.equal(seen.length, 2);
  });
});

describe('ThinDevice.readAtOnce', () => {
  it('reads mapped blocks and holes with no promise when nothing waits, else says to read', async () => {
    const pool = await memoryPool();
    await pool.createThin(1);
    const dev = pool.device(1, 16 * MiB);
    const data = pattern(3 * B, 9);
    await dev.write(data, B);
    const reads = pool.counters.reads;
    const buf = Buffer.alloc(4 * B, 0xff);
    assert.equal(dev.readAtOnce(buf, 0), true);
    assert.deepEqual(buf.subarray(0, B), Buffer.alloc(B), 'a hole reads as zeros');
    assert.deepEqual(buf.subarray(B), data);
    assert.equal(pool.counters.reads, reads + 1);

    // While a metadata operation runs, the mappings may be part-way through a change.
    const busy = pool.metadata.lookup(1, 1);
    assert.equal(dev.readAtOnce(Buffer.alloc(B), B), false, 'the metadata is busy');
    await busy;
    assert.equal(pool.counters.reads, reads + 1, 'a refused read is not counted');
    assert.throws(() => dev.readAtOnce(Buffer.alloc(B), 16 * MiB), /outside thin device 1/);
  });
});

describe('the commit timer', () => {
  it('commits when mappings changed, not for writes in place (they wait for a FLUSH)', async () => {
    const pool = await memoryPool(64 * MiB, { commitIntervalMs: 10 });
    try {
      await pool.createThin(1);
      const dev = pool.device(1, 16 * MiB);
      const waitTimer = () => new Promise((resolve) => setTimeout(resolve, 60));
      await dev.write(pattern(B, 1), 0);
      await waitTimer();
      const afterProvision = pool.counters.commits;
      assert.ok(afterProvision >= 1, 'a new mapping is committed by the timer');
      await dev.write(pattern(4096, 2), 0);
      await waitTimer();
      assert.equal(pool.counters.commits, afterProvision, 'a write in place changes no metadata');
      await dev.flush();
      assert.equal(pool.counters.commits, afterProvision + 1, 'a FLUSH commits it');
      await dev.discard(0, B);
      await waitTimer();
      assert.ok(pool.counters.commits > afterProvision + 1, 'an unmap is committed by the timer');
    } finally {
      await pool.close();
    }
  });
});
