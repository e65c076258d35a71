/**
 * MetadataImport on its own: what it builds opens as a pool with the given devices,
 * details, mappings and data block counts; what it refuses is refused with the error kind
 * and a hint.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryDevice } from '../../../src/block/index.js';
import { MetadataImport, PoolMetadata } from '../../../src/thin/index.js';
import { BadInputError, ExistsError } from '../../../src/util/index.js';

const POOL = { dataBlockSize: 128, nrDataBlocks: 1000, time: 4, transactionId: 9, flags: 0 };
const DETAILS = { transactionId: 2, creationTime: 1, snapshottedTime: 3 };

describe('MetadataImport', () => {
  test('builds a pool that opens with the devices, details, mappings and counts given', async () => {
    const device = new MemoryDevice(16 << 20);
    const build = await MetadataImport.begin(device, POOL);
    build.beginDevice(7, DETAILS);
    await build.addRun(10, 100, 600, 2);
    await build.addRun(700, 0, 1, 4);
    await build.endDevice();
    build.beginDevice(3, DETAILS);
    await build.addRun(0, 100, 3, 1);
    await build.endDevice();
    build.beginDevice(5, DETAILS);
    await build.endDevice();
    await build.finish();

    const md = await PoolMetadata.open(device);
    assert.deepEqual(await md.deviceIds(), [3, 5, 7]);
    assert.deepEqual(await md.deviceDetails(7), { ...DETAILS, mappedBlocks: 601 });
    assert.equal(await md.mappedBlocks(5), 0);
    assert.equal(md.time, 4);
    assert.equal(md.transactionId, 9);
    // Shared when mapped before the device's snapshot time (3).
    assert.deepEqual(await md.lookup(7, 609), { dataBlock: 699, time: 2, shared: true });
    assert.deepEqual(await md.lookup(7, 700), { dataBlock: 0, time: 4, shared: false });
    assert.equal(await md.lookup(7, 9), undefined);
    assert.ok((await md.mappingTreeDepth(7)) >= 2, 'device 7 needs more than one leaf');
    // Blocks 100..102 are mapped twice, 0 and 103..699 once.
    assert.equal(md.dataUsage.usedBlocks, 601);
    await md.close();
  });

  test('refuses a device twice, mappings out of order or beyond the data device', async () => {
    const build = await MetadataImport.begin(new MemoryDevice(16 << 20), POOL);
    build.beginDevice(1, DETAILS);
    await build.addRun(50, 0, 10, 0);
    await assert.rejects(build.addRun(55, 20, 1, 0), (error: unknown) => {
      assert.ok(error instanceof BadInputError);
      assert.match(error.message, /vblock 55 overlaps or precedes the previous one/);
      assert.ok(error.hint !== undefined);
      return true;
    });
    await assert.rejects(build.addRun(100, 995, 10, 0), /beyond end of data device/);
    await assert.rejects(build.addRun(100, 0, 1, 2 ** 24), /mapping time 16777216/);
    await build.endDevice();
    assert.throws(() => build.beginDevice(1, DETAILS), ExistsError);
    assert.throws(() => build.beginDevice(2 ** 24, DETAILS), /thin device id 16777216/);
  });

  test('a device too small is refused before anything is written', async () => {
    const device = new MemoryDevice(32 * 1024);
    await assert.rejects(
      MetadataImport.begin(device, POOL),
      /a metadata device of 32768 bytes is too small/,
    );
    assert.equal(device.allocatedPages, 0);
  });
});
