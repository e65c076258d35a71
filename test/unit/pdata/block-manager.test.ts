/**
 * The block manager's batched paths: `readMany` (runs of neighbours in one read, cached
 * blocks from the cache, every block validated), `writeNew` (staged into runs, on the
 * device at the latest by `flush`), and `flush` (neighbouring dirty blocks in one write).
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type BlockDevice, MemoryDevice } from '../../../src/block/index.js';
import {
  BlockManager,
  btreeNodeValidator,
  LEAF_NODE,
  METADATA_BLOCK_SIZE,
  Node,
} from '../../../src/pdata/index.js';
import { ChecksumError } from '../../../src/util/index.js';

/** A device that counts its reads and writes. */
class CountingDevice extends MemoryDevice {
  reads = 0;
  writes = 0;
  override async read(buf: Uint8Array, offset: number): Promise<void> {
    this.reads++;
    await super.read(buf, offset);
  }
  override async write(buf: Uint8Array, offset: number): Promise<void> {
    this.writes++;
    await super.write(buf, offset);
  }
}

/** A leaf holding the single key `key`. */
function leaf(key: number): Buffer {
  const buf = Buffer.alloc(METADATA_BLOCK_SIZE);
  const node = new Node(buf);
  node.init(LEAF_NODE, 8);
  node.insertAt(0, key, Buffer.alloc(8));
  return buf;
}

function keyOf(buf: Buffer): number {
  return new Node(buf).key(0);
}

/** Writes leaves at `locs` (key = location) with `writeNew` and flushes. */
async function writeLeaves(device: BlockDevice, locs: number[]): Promise<void> {
  const bm = new BlockManager(device);
  for (const loc of locs) await bm.writeNew(loc, leaf(loc), btreeNodeValidator);
  await bm.flush();
}

describe('BlockManager.writeNew', () => {
  test('stages neighbouring blocks into one device write, on the device by flush', async () => {
    const device = new CountingDevice(64 * METADATA_BLOCK_SIZE);
    const bm = new BlockManager(device);
    for (const loc of [3, 4, 5, 6, 10, 11]) {
      await bm.writeNew(loc, leaf(loc), btreeNodeValidator);
    }
    assert.equal(device.writes, 1, 'the run 3..6 went out when the run broke at 10');
    await bm.flush();
    assert.equal(device.writes, 2, 'the run 10..11 went out at the flush');
    const reader = new BlockManager(device);
    for (const loc of [3, 4, 5, 6, 10, 11]) {
      assert.equal(keyOf(await reader.read(loc, btreeNodeValidator)), loc);
    }
  });
});

describe('BlockManager.readMany', () => {
  test('reads runs of neighbours with one read each and returns blocks in the order asked', async () => {
    const device = new CountingDevice(64 * METADATA_BLOCK_SIZE);
    await writeLeaves(device, [1, 2, 3, 4, 20, 21, 40]);
    const bm = new BlockManager(device);
    const before = device.reads;
    const bufs = await bm.readMany([40, 2, 1, 21, 3, 20, 4], btreeNodeValidator);
    assert.deepEqual(bufs.map(keyOf), [40, 2, 1, 21, 3, 20, 4]);
    assert.equal(device.reads - before, 3, 'runs 1..4, 20..21 and 40');
  });

  test('takes cached blocks from the cache, dirty ones included', async () => {
    const device = new CountingDevice(64 * METADATA_BLOCK_SIZE);
    await writeLeaves(device, [1, 2]);
    const bm = new BlockManager(device);
    const fresh = await bm.create(7, btreeNodeValidator);
    new Node(fresh).init(LEAF_NODE, 8);
    new Node(fresh).insertAt(0, 77, Buffer.alloc(8));
    const before = device.reads;
    const bufs = await bm.readMany([7, 1, 2], btreeNodeValidator);
    assert.equal(bufs[0], fresh, 'the dirty block is the cached buffer itself');
    assert.deepEqual(bufs.map(keyOf), [77, 1, 2]);
    assert.equal(device.reads - before, 1);
  });

  test('fails on a damaged block, naming it', async () => {
    const device = new MemoryDevice(64 * METADATA_BLOCK_SIZE);
    await writeLeaves(device, [1, 2, 3]);
    await device.write(Buffer.from([0xff]), 2 * METADATA_BLOCK_SIZE + 100);
    const bm = new BlockManager(device);
    await assert.rejects(bm.readMany([1, 2, 3], btreeNodeValidator), (error: unknown) => {
      assert.ok(error instanceof ChecksumError);
      assert.equal(error.block, 2);
      assert.match(error.message, /^btree node \(metadata block 2\): bad checksum/);
      return true;
    });
  });
});

describe('BlockManager.flush', () => {
  test('writes neighbouring dirty blocks with one write', async () => {
    const device = new CountingDevice(64 * METADATA_BLOCK_SIZE);
    const bm = new BlockManager(device);
    for (const loc of [8, 9, 10, 11, 30]) {
      const buf = await bm.create(loc, btreeNodeValidator);
      buf.set(leaf(loc));
    }
    await bm.flush();
    assert.equal(device.writes, 2, 'runs 8..11 and 30');
    const reader = new BlockManager(device);
    const bufs = await reader.readMany([8, 9, 10, 11, 30], btreeNodeValidator);
    assert.deepEqual(bufs.map(keyOf), [8, 9, 10, 11, 30]);
  });
});
