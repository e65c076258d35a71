/**
 * ThinDevice.writeAtOnce: an overwrite in place is done with no promise, and every write
 * that needs more (a block to provision, a shared block to copy, a FUA, a block busy in
 * its cell, two blocks, a data device that cannot write at once) is left to `write`,
 * having written nothing.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryDevice } from '../../../src/block/index.js';
import { cellKey } from '../../../src/pool/data-path.js';
import { ThinPool } from '../../../src/pool/index.js';

const B = 64 * 1024;

async function pool(data = new MemoryDevice(16 * B)) {
  const p = await ThinPool.create(data, new MemoryDevice(4 << 20), {
    blockSize: B,
    commitIntervalMs: 0,
  });
  await p.createThin(0);
  return p;
}

async function readBack(p: ThinPool, id: number, offset: number, length: number) {
  const buf = Buffer.alloc(length);
  await p.device(id, 4 * B).read(buf, offset);
  return buf;
}

describe('ThinDevice.writeAtOnce', () => {
  it('overwrites a mapped, unshared block in place, and counts the write', async () => {
    const p = await pool();
    const dev = p.device(0, 4 * B);
    assert.equal(dev.writeAtOnce(Buffer.alloc(4096, 1), B), false, 'an unmapped block');
    await dev.write(Buffer.alloc(B, 2), B);
    const writes = p.counters.writes;
    const used = p.status().data.usedBlocks;
    assert.equal(dev.writeAtOnce(Buffer.alloc(4096, 3), B + 8192), true);
    assert.equal(p.counters.writes, writes + 1);
    assert.equal(p.status().data.usedBlocks, used, 'no block was allocated');
    const got = await readBack(p, 0, B, B);
    assert.deepEqual(got.subarray(8192, 8192 + 4096), Buffer.alloc(4096, 3));
    assert.deepEqual(got.subarray(0, 8192), Buffer.alloc(8192, 2));
    await p.close();
  });

  it('leaves a shared block to write, so that the snapshot keeps its bytes', async () => {
    const p = await pool();
    const dev = p.device(0, 4 * B);
    await dev.write(Buffer.alloc(B, 5), 0);
    await p.createSnapshot(1, 0);
    assert.equal(dev.writeAtOnce(Buffer.alloc(4096, 6), 0), false, 'shared with the snapshot');
    await dev.write(Buffer.alloc(4096, 6), 0);
    assert.equal(dev.writeAtOnce(Buffer.alloc(4096, 7), 4096), true, 'copied: its own now');
    assert.deepEqual(await readBack(p, 1, 0, B), Buffer.alloc(B, 5));
    const origin = await readBack(p, 0, 0, 8192);
    assert.deepEqual(origin, Buffer.concat([Buffer.alloc(4096, 6), Buffer.alloc(4096, 7)]));
    await p.close();
  });

  it('leaves FUA, two blocks and a busy cell to write', async () => {
    const p = await pool();
    const dev = p.device(0, 4 * B);
    await dev.write(Buffer.alloc(2 * B, 1), 0);
    assert.equal(dev.writeAtOnce(Buffer.alloc(4096), 0, { fua: true }), false, 'FUA');
    assert.equal(dev.writeAtOnce(Buffer.alloc(8192), B - 4096), false, 'two blocks');
    let release!: () => void;
    const held = p.cells.run(cellKey(0, 1), () => new Promise<void>((r) => (release = r)));
    assert.equal(dev.writeAtOnce(Buffer.alloc(4096), B), false, 'the cell is busy');
    assert.equal(dev.writeAtOnce(Buffer.alloc(4096), 0), true, 'another block is not');
    release();
    await held;
    assert.equal(dev.writeAtOnce(Buffer.alloc(4096), B), true, 'the cell is free again');
    await p.close();
  });

  it('needs a data device that can write at once', async () => {
    const data = new MemoryDevice(16 * B);
    const p = await pool(Object.assign(data, { writeNow: undefined }));
    const dev = p.device(0, 4 * B);
    await dev.write(Buffer.alloc(B, 1), 0);
    assert.equal(dev.writeAtOnce(Buffer.alloc(4096, 2), 0), false);
    assert.deepEqual(await readBack(p, 0, 0, 4096), Buffer.alloc(4096, 1));
    await p.close();
  });

  it('throws what write rejects with: a range past the end', async () => {
    const p = await pool();
    const dev = p.device(0, 4 * B);
    assert.throws(() => dev.writeAtOnce(Buffer.alloc(4096), 4 * B));
    await assert.rejects(dev.write(Buffer.alloc(4096), 4 * B));
    await p.close();
  });
});
