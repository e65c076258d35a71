/**
 * The data path's races and failure paths, each pinned down with a data device whose
 * operations a test holds in flight (test/support/scheduled-device.ts) or fails: a block
 * freed while I/O to it is in flight, a snapshot of an origin with a write in flight, FLUSH
 * in read-only mode, and a failed flush of the data device.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type BlockDevice, MemoryDevice } from '../../../src/block/index.js';
import { type PoolMode, ThinPool } from '../../../src/pool/index.js';
import { PoolMetadata } from '../../../src/thin/index.js';
import { checkMetadata } from '../../../src/tools/index.js';
import { IoError, ReadOnlyError } from '../../../src/util/index.js';
import { ScheduledDevice, settle, Valve } from '../../support/scheduled-device.js';

const B = 64 * 1024;
const SIZE = 16 * B;

async function slowPool(dataBlocks: number, meta: BlockDevice = new MemoryDevice(4 << 20)) {
  const valve = new Valve();
  const data = new ScheduledDevice(new MemoryDevice(dataBlocks * B), valve.when);
  const pool = await ThinPool.create(data, meta, { blockSize: B, commitIntervalMs: 0 });
  return { valve, data, pool };
}

function filled(length: number, byte: number): Buffer {
  return Buffer.alloc(length, byte);
}

describe('a data block freed while I/O to it is in flight', () => {
  it('is unmapped only after the in-place write to it, and discarded and reused only after it', async () => {
    const { valve, data, pool } = await slowPool(1);
    await pool.createThin(1);
    await pool.createThin(2);
    const d1 = pool.device(1, SIZE);
    const d2 = pool.device(2, SIZE);
    await d1.write(filled(B, 0x11), 0);
    await pool.commit();

    valve.close('write');
    const inPlace = d1.write(filled(4096, 0xaa), 0);
    await settle();
    assert.equal(data.writesInFlight, 1, 'the in-place write is in flight');
    const trimmed = d1.discard(0, B).then(() => pool.commit());
    await settle();
    valve.open();
    await Promise.all([inPlace, trimmed]);

    await d2.write(filled(10, 0x22), 8192);
    const out = Buffer.alloc(B);
    await d2.read(out, 0);
    const expected = Buffer.alloc(B);
    expected.fill(0x22, 8192, 8202);
    assert.deepEqual(data.violations, []);
    assert.ok(out.equals(expected), 'device 2 reads only its own bytes and zeros');
  });

  it('is not handed to another device while a read of it is in flight', async () => {
    const { valve, data, pool } = await slowPool(1);
    await pool.createThin(1);
    await pool.createThin(2);
    const d1 = pool.device(1, SIZE);
    const d2 = pool.device(2, SIZE);
    await d1.write(filled(B, 0x11), 0);
    await pool.commit();

    valve.close('read');
    const got = Buffer.alloc(4096);
    const reading = d1.read(got, 0);
    await settle();
    assert.equal(valve.held, 1, 'the read is in flight');
    const freed = d1.discard(0, B).then(() => pool.commit());
    const reused = freed.then(() => d2.write(filled(B, 0x22), 0));
    await settle();
    valve.open();
    await Promise.all([reading, freed, reused]);
    assert.deepEqual(data.violations, []);
    assert.ok(got.equals(filled(4096, 0x11)), 'the read returns device 1 bytes, not device 2');
  });
});

describe('a snapshot of an origin with writes in flight', () => {
  it('waits for them, holds new ones, and never changes after it is taken', async () => {
    const { valve, pool } = await slowPool(16);
    await pool.createThin(1);
    const origin = pool.device(1, SIZE);
    await origin.write(filled(B, 0x11), 0);

    valve.close('write');
    const inFlight = origin.write(filled(4096, 0xbb), 0);
    await settle();
    let taken = false;
    const snapshot = pool.createSnapshot(2, 1).then(() => {
      taken = true;
    });
    await settle();
    assert.equal(taken, false, 'the snapshot waits for the write in flight to its origin');
    const later = origin.write(filled(4096, 0xcc), 4096);
    await settle();
    valve.open();
    await snapshot;
    const snap = pool.device(2, SIZE);
    const atCreation = Buffer.alloc(2 * 4096);
    await snap.read(atCreation, 0);
    await Promise.all([inFlight, later]);
    const afterwards = Buffer.alloc(2 * 4096);
    await snap.read(afterwards, 0);

    const expected = Buffer.concat([filled(4096, 0xbb), filled(4096, 0x11)]);
    assert.ok(atCreation.equals(expected), 'the snapshot has the write that was in flight');
    assert.ok(afterwards.equals(expected), 'and not the write issued while it was taken');
    const o = Buffer.alloc(2 * 4096);
    await origin.read(o, 0);
    assert.ok(o.equals(Buffer.concat([filled(4096, 0xbb), filled(4096, 0xcc)])));
  });

  it('lets a removal wait for the writes in flight to the device removed', async () => {
    const { valve, data, pool } = await slowPool(2);
    await pool.createThin(1);
    await pool.createThin(2);
    const d1 = pool.device(1, SIZE);
    await d1.write(filled(B, 0x11), 0);
    await pool.commit();
    valve.close('write');
    const inPlace = d1.write(filled(4096, 0xaa), 0);
    await settle();
    const removed = pool.deleteDevice(1).then(() => pool.commit());
    await settle();
    valve.open();
    await Promise.all([inPlace, removed]);
    const d2 = pool.device(2, SIZE);
    await d2.write(filled(10, 0x22), 0);
    const out = Buffer.alloc(4096);
    await d2.read(out, 0);
    assert.deepEqual(data.violations, []);
    assert.equal(
      out.subarray(10).every((b) => b === 0),
      true,
      'no byte of device 1',
    );
  });
});

/** A metadata device whose writes can be made to fail. */
class FailingWrites extends MemoryDevice {
  failWrites = false;
  override async write(buf: Uint8Array, offset: number): Promise<void> {
    if (this.failWrites) throw new IoError(this.name, 'write', 'injected failure');
    return super.write(buf, offset);
  }
}

describe('FLUSH in read-only mode', () => {
  it('fails, as the kernel fails a flush it cannot carry out', async () => {
    const meta = new FailingWrites(4 << 20);
    const { data, pool } = await slowPool(16, meta);
    await pool.createThin(1);
    const dev = pool.device(1, SIZE);
    await dev.write(filled(B, 1), 0);
    await dev.flush();
    await dev.write(filled(4096, 2), 0);
    meta.failWrites = true;
    await assert.rejects(pool.commit(), IoError);
    assert.equal(pool.mode, 'ro');
    const flushes = data.issued.flush;
    await assert.rejects(
      dev.flush(),
      (err) => err instanceof IoError && /read-only/.test(err.message),
    );
    await assert.rejects(dev.write(filled(512, 3), 0, { fua: true }), ReadOnlyError);
    assert.equal(data.issued.flush, flushes, 'refused before the data device is touched');
  });
});

describe('a failed flush of the data device', () => {
  it('fails the pool: needs_check, writes and flushes fail with EIO, nothing more commits', async () => {
    const meta = new MemoryDevice(4 << 20);
    const { data, pool } = await slowPool(16, meta);
    const modes: PoolMode[] = [];
    pool.on('mode', (m) => modes.push(m));
    await pool.createThin(1);
    const dev = pool.device(1, SIZE);
    await dev.flush();
    const committed = pool.status().transactionId;
    await dev.write(filled(B, 7), 0);
    data.failNext('flush');
    await assert.rejects(dev.flush(), /injected failure/);
    assert.equal(pool.mode, 'fail');
    assert.deepEqual(modes, ['fail']);
    assert.equal(pool.status().needsCheck, true);
    await assert.rejects(
      dev.flush(),
      (err) => err instanceof IoError && /failed/.test(err.message),
    );
    await assert.rejects(dev.write(filled(512, 8), B), IoError);
    await assert.rejects(dev.discard(0, B), IoError);
    await assert.rejects(pool.createThin(2), IoError);

    const reopened = await PoolMetadata.open(meta);
    assert.equal(reopened.needsCheck, true);
    assert.equal(await reopened.mappedBlocks(1), 0, 'the block whose flush failed is not mapped');
    assert.equal(pool.status().transactionId, committed);
    assert.deepEqual((await checkMetadata(meta)).problems, []);
  });
});

describe("a commit's data flush", () => {
  it('runs first without holding provisions back, then again under the lock: what was mapped meanwhile is committed durable', async () => {
    const meta = new MemoryDevice(4 << 20);
    const { valve, data, pool } = await slowPool(16, meta);
    await pool.createThin(1);
    const dev = pool.device(1, SIZE);
    await dev.write(filled(4096, 1), 0);
    const flushes = data.issued.flush;

    valve.close('flush');
    const commit = pool.commit();
    await settle();
    assert.equal(data.issued.flush, flushes + 1, 'the long flush is under way');
    let provisioned = false;
    const meanwhile = dev.write(filled(4096, 2), 3 * B).then(() => {
      provisioned = true;
    });
    await settle();
    assert.equal(provisioned, true, 'a new block is provisioned while the disk flushes');
    valve.open();
    await Promise.all([commit, meanwhile]);
    assert.equal(data.issued.flush, flushes + 2, 'flushed again under the lock, then committed');

    const reopened = await PoolMetadata.open(meta);
    assert.equal(await reopened.mappedBlocks(1), 2, 'the block mapped meanwhile is committed');
  });

  it('is one flush when nothing was provisioned since the last commit', async () => {
    const { data, pool } = await slowPool(4);
    await pool.createThin(1);
    const dev = pool.device(1, SIZE);
    await dev.write(filled(B, 1), 0);
    await pool.commit();
    await dev.write(filled(4096, 2), 0);
    const flushes = data.issued.flush;
    await dev.flush();
    assert.equal(data.issued.flush, flushes + 1, 'an in-place write needs one flush');
  });
});
