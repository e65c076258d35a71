import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { FileDevice, MemoryDevice } from '../../../src/block/index.js';
import { PoolMetadata } from '../../../src/thin/index.js';
import { checkMetadata } from '../../../src/tools/index.js';
import {
  BadInputError,
  BusyError,
  ExistsError,
  NoSpaceError,
  NotFoundError,
} from '../../../src/util/index.js';
import { thinCheck } from '../../support/peers.js';
import { tempDir } from '../../support/temp.js';

const dir = tempDir('thinp-pool-metadata-');

async function fresh(nrDataBlocks = 1000, size = 8 << 20): Promise<PoolMetadata> {
  return PoolMetadata.format(new MemoryDevice(size), { dataBlockSize: 128, nrDataBlocks });
}

async function expectClean(md: PoolMetadata): Promise<void> {
  const report = await checkMetadata(md.device);
  assert.deepEqual(report.problems, []);
}

describe('PoolMetadata', () => {
  it('refuses to format a device that already holds metadata', async () => {
    const md = await fresh();
    await assert.rejects(
      PoolMetadata.format(md.device, { dataBlockSize: 128, nrDataBlocks: 10 }),
      ExistsError,
    );
  });

  it('rejects data block sizes the kernel rejects', async () => {
    for (const size of [0, 64, 129, 2_097_152 + 128]) {
      await assert.rejects(
        PoolMetadata.format(new MemoryDevice(1 << 20), { dataBlockSize: size, nrDataBlocks: 1 }),
        BadInputError,
      );
    }
  });

  it('names missing and existing devices and bad ids', async () => {
    const md = await fresh();
    await md.createThin(1);
    await assert.rejects(md.createThin(1), ExistsError);
    await assert.rejects(md.createSnapshot(1, 0), ExistsError);
    await assert.rejects(md.createSnapshot(2, 9), NotFoundError);
    await assert.rejects(md.deleteDevice(9), NotFoundError);
    await assert.rejects(md.lookup(9, 0), NotFoundError);
    await assert.rejects(md.createThin(2 ** 24), BadInputError);
    // None of those broke the transaction.
    await md.createThin(2);
    await md.commit();
    assert.deepEqual(await md.deviceIds(), [1, 2]);
  });

  it('sets the transaction id only from the current value', async () => {
    const md = await fresh();
    await md.setTransactionId(0, 5);
    await assert.rejects(md.setTransactionId(0, 6), /transaction id mismatch: the pool is at 5/);
    await md.commit();
    const reopened = await PoolMetadata.open(md.device);
    assert.equal(reopened.transactionId, 5);
    await reopened.createThin(3);
    assert.equal((await reopened.deviceDetails(3)).transactionId, 5);
  });

  it('marks snapshots with the pool time and reports sharing by time', async () => {
    const md = await fresh();
    await md.createThin(0);
    await md.insertMapping(0, 10, await md.allocDataBlock());
    await md.createSnapshot(1, 0);
    assert.equal(md.time, 1);
    assert.deepEqual(await md.deviceDetails(1), {
      mappedBlocks: 1,
      transactionId: 0,
      creationTime: 1,
      snapshottedTime: 1,
    });
    assert.equal((await md.lookup(0, 10))?.shared, true);
    assert.equal((await md.lookup(1, 10))?.shared, true);
    const copy = await md.allocDataBlock();
    await md.insertMapping(1, 10, copy);
    assert.deepEqual(await md.lookup(1, 10), { dataBlock: copy, time: 1, shared: false });
    await md.commit();
    await expectClean(md);
  });

  it('holds and releases a metadata snapshot without disturbing the live trees', async () => {
    const md = await fresh();
    await md.createThin(0);
    for (let v = 0; v < 400; v++) await md.insertMapping(0, v, await md.allocDataBlock());
    await md.commit();
    const before = md.metadataUsage.usedBlocks;
    const held = await md.reserveMetadataSnap();
    assert.ok(held > 0);
    await assert.rejects(md.reserveMetadataSnap(), BusyError);
    for (let v = 0; v < 400; v += 3) await md.removeMapping(0, v);
    await md.createThin(1);
    await md.commit();
    await expectClean(md);
    const heldRoots = await md.heldRoots();
    let heldMappings = 0;
    await md.walkMappings(0, () => void heldMappings++, heldRoots);
    assert.equal(heldMappings, 400, 'the held snapshot still sees every mapping');
    await md.releaseMetadataSnap();
    await md.commit();
    assert.equal(md.heldRoot, 0);
    await expectClean(md);
    assert.ok(md.metadataUsage.usedBlocks <= before + 4, 'released blocks are free again');
    await assert.rejects(md.releaseMetadataSnap(), NotFoundError);
  });

  it('writes needs_check at once, outside the transaction', async () => {
    const md = await fresh();
    await md.createThin(4);
    await md.setNeedsCheck();
    const reopened = await PoolMetadata.open(md.device);
    assert.equal(reopened.needsCheck, true);
    assert.deepEqual(await reopened.deviceIds(), [], 'the uncommitted device is not published');
  });

  it('fails cleanly when the data device is full, and grows', async () => {
    const md = await fresh(20);
    await md.createThin(0);
    for (let v = 0; v < 20; v++) await md.insertMapping(0, v, await md.allocDataBlock());
    await assert.rejects(md.allocDataBlock(), NoSpaceError);
    await md.resizeData(40_000);
    await md.insertMapping(0, 20, await md.allocDataBlock());
    await md.commit();
    assert.deepEqual(md.dataUsage, { usedBlocks: 21, totalBlocks: 40_000 });
    await assert.rejects(md.resizeData(10), /cannot shrink/);
    await expectClean(md);
  });

  it('turns metadata exhaustion into a failed transaction that abort recovers', async () => {
    const md = await fresh(100_000, 64 * 4096);
    await md.createThin(0);
    await md.commit();
    let failed: unknown;
    try {
      for (let v = 0; v < 100_000; v++)
        await md.insertMapping(0, v * 1000, await md.allocDataBlock());
    } catch (err) {
      failed = err;
    }
    assert.ok(failed instanceof NoSpaceError && failed.space === 'metadata', String(failed));
    await assert.rejects(md.createThin(1), /an earlier metadata change failed/);
    await md.abort();
    assert.equal(await md.mappedBlocks(0), 0);
    await expectClean(md);
  });

  it('grows the metadata device and keeps working past its old end', async () => {
    const file = path.join(await dir, 'grow.meta');
    const dev = await FileDevice.open(file, { create: { size: 40 * 4096 } });
    try {
      const md = await PoolMetadata.format(dev, { dataBlockSize: 128, nrDataBlocks: 200_000 });
      await md.createThin(0);
      await dev.grow(20_000 * 4096);
      await md.resizeMetadata(20_000);
      for (let v = 0; v < 30_000; v++) await md.insertMapping(0, v * 2, await md.allocDataBlock());
      await md.commit();
      assert.equal(md.metadataUsage.totalBlocks, 20_000);
      assert.ok(md.metadataUsage.usedBlocks > 40);
      await expectClean(md);
    } finally {
      await dev.close();
    }
    const check = await thinCheck(file);
    assert.equal(check.status, 0, check.stdout + check.stderr);
  });

  it('deletes a device and frees exactly what no one else references', async () => {
    const md = await fresh();
    await md.createThin(0);
    for (let v = 0; v < 100; v++) await md.insertMapping(0, v, await md.allocDataBlock());
    await md.createSnapshot(1, 0);
    for (let v = 0; v < 30; v++) await md.insertMapping(1, v, await md.allocDataBlock());
    await md.commit();
    assert.equal(md.dataUsage.usedBlocks, 130);
    await md.deleteDevice(1);
    assert.equal(md.dataUsage.usedBlocks, 100, "the snapshot's 30 own blocks are freed");
    await md.deleteDevice(0);
    await md.commit();
    assert.equal(md.dataUsage.usedBlocks, 0);
    await expectClean(md);
  });
});
