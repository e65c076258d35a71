/**
 * ThinDevice.writeAtOnce: an overwrite in place, and the first write to an unmapped block
 * whose metadata this transaction already owns, are done with no promise; every write that
 * needs more (metadata to read or copy, a commit under way, a shared block to copy, a FUA,
 * a block busy in its cell, two blocks, a new block to zero, a data device that cannot
 * write at once) is left to `write`, having changed nothing.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryDevice } from '../../../src/block/index.js';
import { cellKey } from '../../../src/pool/data-path.js';
import { ThinPool } from '../../../src/pool/index.js';
import { checkMetadata } from '../../../src/tools/index.js';
import { IoError } from '../../../src/util/index.js';

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

  it('provisions an unmapped block at once when the transaction owns its metadata', async () => {
    const p = await pool();
    const dev = p.device(0, 4 * B);
    const fresh = Buffer.alloc(4096, 9);
    assert.equal(dev.writeAtOnce(fresh, B + 4096), false, 'nothing is owned yet: to write');
    await dev.write(Buffer.alloc(4096, 1), 0);
    const before = { ...p.counters };
    const used = p.status().data.usedBlocks;
    assert.equal(dev.writeAtOnce(fresh, B + 4096), true);
    assert.equal(p.counters.provisions, before.provisions + 1);
    assert.equal(p.counters.writes, before.writes + 1);
    assert.equal(p.status().data.usedBlocks, used + 1);
    const expected = Buffer.alloc(B);
    fresh.copy(expected, 4096);
    assert.deepEqual(await readBack(p, 0, B, B), expected, 'the rest of the block reads zero');
    await p.commit();
    assert.equal(dev.writeAtOnce(fresh, 2 * B), false, 'committed: the path is not owned');
    await dev.write(fresh, 2 * B);
    assert.equal(dev.writeAtOnce(fresh, 3 * B), true, 'owned again');
    assert.equal(p.status().data.usedBlocks, used + 3);
    await p.commit();
    assert.deepEqual((await checkMetadata(p.metadata.device)).problems, []);
    await p.close();
  });

  it('provisions at once through full leaves, sharing them out or splitting them at once', async () => {
    const blocks = 3000;
    const p = await pool(new MemoryDevice(blocks * B));
    const dev = p.device(0, 16 * blocks * B);
    // Distinct blocks in a scattered order, as random fresh writes leave them.
    const order = Array.from({ length: blocks }, (_, i) => ((i * 7919) % blocks) * 16 + (i % 16));
    let left = 0;
    for (const v of order) {
      const buf = Buffer.alloc(4096, v % 251);
      if (dev.writeAtOnce(buf, v * B)) continue;
      left++;
      await dev.write(buf, v * B);
    }
    // The first write (nothing owned yet) and the root leaf's own split are left to write;
    // every later full leaf got room at once (a leaf holds at most 252 mappings).
    assert.ok(left <= 3, `${left} of ${blocks} fresh writes left to write`);
    assert.equal(p.status().data.usedBlocks, blocks);
    await p.commit();
    assert.deepEqual((await checkMetadata(p.metadata.device)).problems, []);
    for (const v of order.slice(0, 200)) {
      const got = Buffer.alloc(4096);
      await dev.read(got, v * B);
      assert.deepEqual(got, Buffer.alloc(4096, v % 251), `block ${v}`);
    }
    await p.close();
  });

  it('leaves a new block to write while a commit flushes the data device', async () => {
    const data = new MemoryDevice(16 * B);
    let unblock!: () => void;
    let flushing!: () => void;
    const inFlush = new Promise<void>((r) => (flushing = r));
    const flush = data.flush.bind(data);
    let flushes = 0;
    // The commit flushes twice: ahead, while provisions go on, then holding the pool.
    data.flush = async () => {
      if (++flushes === 2) {
        flushing();
        await new Promise<void>((r) => (unblock = r));
      }
      await flush();
    };
    const p = await pool(data);
    const dev = p.device(0, 4 * B);
    await dev.write(Buffer.alloc(4096, 1), 0);
    const commit = p.commit();
    await inFlush;
    const used = p.status().data.usedBlocks;
    assert.equal(dev.writeAtOnce(Buffer.alloc(4096, 2), B), false, 'a commit holds the pool');
    assert.equal(p.status().data.usedBlocks, used);
    unblock();
    await commit;
    await p.close();
  });

  it('gives the new block back when the data device cannot write it at once', async () => {
    const data = new MemoryDevice(16 * B);
    const p = await pool(data);
    const dev = p.device(0, 4 * B);
    await dev.write(Buffer.alloc(4096, 1), 0);
    const used = p.status().data.usedBlocks;
    data.writeNow = () => false;
    assert.equal(dev.writeAtOnce(Buffer.alloc(4096, 2), B), false);
    assert.equal(p.status().data.usedBlocks, used, 'the block is free again');
    data.writeNow = () => {
      throw new IoError(data.name, 'write', 'injected');
    };
    assert.throws(() => dev.writeAtOnce(Buffer.alloc(4096, 2), B), IoError);
    assert.equal(p.status().data.usedBlocks, used, 'given back after the failure too');
    assert.deepEqual(await readBack(p, 0, B, 4096), Buffer.alloc(4096), 'still unmapped');
    await p.commit();
    assert.deepEqual((await checkMetadata(p.metadata.device)).problems, []);
    await p.close();
  });

  it('leaves a new block that needs zeroing to write, but not a whole one', async () => {
    // Without discard, free blocks are not known to read zero: a partial write must zero.
    const data = Object.assign(new MemoryDevice(16 * B), { discard: undefined });
    const p = await pool(data);
    const dev = p.device(0, 4 * B);
    await dev.write(Buffer.alloc(B, 1), 0);
    assert.equal(p.newBlocksAreZero, false);
    assert.equal(dev.writeAtOnce(Buffer.alloc(4096, 2), B), false, 'the rest needs zeros');
    assert.equal(dev.writeAtOnce(Buffer.alloc(B, 3), 2 * B), true, 'a whole block does not');
    assert.deepEqual(await readBack(p, 0, 2 * B, B), Buffer.alloc(B, 3));
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
