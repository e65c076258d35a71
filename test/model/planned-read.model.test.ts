/**
 * A planned read (`ThinDevice.planRead`, what the native reply sender reads) holds its data
 * blocks until its pieces are read: a block it names is not discarded, and not handed to
 * another device, before `release()`, however late the pieces land.
 *
 * The pool has two data blocks. Device A's block is written and committed, device B's too.
 * Then, at once and under fast-check's `scheduler()`, which decides when every read,
 * write, discard and flush of the data device lands: a planned read of A's block, whose
 * pieces are read with the data device's `read` (landing whenever the scheduler lets it),
 * and the chain that would reuse the block: trim A's block, commit (the block is freed and
 * discarded), then write B's second block, which can only get the freed one. The planned
 * read must see A's bytes (it was planned before the trim) or zeros (after it), never B's,
 * and no read may overlap a discard. A read the device cannot plan at that moment (a
 * metadata operation of the chain under way) is read the usual way and checked the same;
 * most runs must plan theirs.
 *
 * The same with the read's landing held back by hand until the chain has gone as far as it
 * can: the commit must wait for the planned read (its in-flight entry), so B cannot have
 * the block before the read has landed.
 *
 * Mutation check (by hand, when this test was written): with `planRead` not entering the
 * in-flight set (no `enterIo`, `leave` a no-op), the second test fails (the chain completes
 * while the read is held, and the read returns B's bytes). The scheduled test passes then
 * too: its scheduler lands the read early in every run it drew.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MemoryDevice } from '../../src/block/index.js';
import { ThinPool } from '../../src/pool/index.js';
import { ReadPlan } from '../../src/util/index.js';
import {
  type DeviceOp,
  type Landing,
  ScheduledDevice,
  Valve,
} from '../support/scheduled-device.js';

const B = 64 * 1024;
const PSEUDO_FD = 1000;
const A = 1;
const OTHER = 2;

/** A planned read of `length` bytes at `offset` of `id`, its pieces read through `data`. */
async function readPlanned(
  pool: ThinPool,
  data: ScheduledDevice,
  id: number,
  offset: number,
  length: number,
): Promise<Buffer | undefined> {
  const plan = new ReadPlan();
  if (!pool.device(id, 2 * B).planRead(offset, length, plan)) return undefined;
  const buf = Buffer.alloc(length);
  try {
    let at = 0;
    for (let i = 0; i < plan.count; i++) {
      const fd = plan.pieces[3 * i] as number;
      const n = plan.pieces[3 * i + 2] as number;
      if (fd !== -1) await data.read(buf.subarray(at, at + n), plan.pieces[3 * i + 1] as number);
      at += n;
    }
  } finally {
    plan.release();
  }
  return buf;
}

/** A pool of two data blocks, full: A's block 0 is all 0xaa, OTHER's all 0xbb, committed. */
async function fullPool(when: Landing): Promise<{ data: ScheduledDevice; pool: ThinPool }> {
  const data = new ScheduledDevice(new MemoryDevice(2 * B), when, { readFd: PSEUDO_FD });
  const pool = await ThinPool.create(data, new MemoryDevice(4 << 20), {
    blockSize: B,
    commitIntervalMs: 0,
  });
  await pool.createThin(A);
  await pool.createThin(OTHER);
  await pool.device(A, 2 * B).write(Buffer.alloc(B, 0xaa), 0);
  await pool.device(OTHER, 2 * B).write(Buffer.alloc(B, 0xbb), 0);
  await pool.commit();
  assert.equal(pool.status().data.usedBlocks, 2, 'the data device is full');
  return { data, pool };
}

describe('a planned read against the reuse of its block', () => {
  it('never returns another device’s bytes, nor reads during a discard', async () => {
    let planned = 0;
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), async (s) => {
        let scheduled = false;
        const when = (_op: DeviceOp, label: string) =>
          scheduled ? s.schedule(Promise.resolve(), label) : Promise.resolve();
        const { data, pool } = await fullPool(when);

        scheduled = true;
        const read = s.schedule(Promise.resolve(), 'plan the read').then(async () => {
          const got = await readPlanned(pool, data, A, 0, B);
          if (got !== undefined) {
            planned++;
            return got;
          }
          const buf = Buffer.alloc(B);
          await pool.device(A, 2 * B).read(buf, 0);
          return buf;
        });
        const reuse = s.schedule(Promise.resolve(), 'start the reuse').then(async () => {
          await pool.device(A, 2 * B).discard(0, B);
          await pool.commit();
          await pool.device(OTHER, 2 * B).write(Buffer.alloc(B, 0xbb), B);
        });
        const [got] = await s.waitFor(Promise.all([read, reuse]));
        scheduled = false;

        assert.deepEqual(data.violations, []);
        const aa = got.equals(Buffer.alloc(B, 0xaa));
        const zeros = got.equals(Buffer.alloc(B));
        assert.ok(aa || zeros, `the planned read saw bytes of neither A nor a hole: ${got[0]}`);
        // B got the freed block: the reuse really happened.
        assert.equal(pool.status().data.usedBlocks, 2);
        await pool.close();
      }),
      { numRuns: 150, seed: 20261202, includeErrorInReport: true },
    );
    assert.ok(planned >= 50, `only ${planned} of 150 reads were planned`);
  });

  it('holds the block until the pieces are read, however late they land', async () => {
    const valve = new Valve();
    const { data, pool } = await fullPool(valve.when);
    valve.close('read');
    const read = readPlanned(pool, data, A, 0, B);
    let step = 'trim';
    const chain = (async () => {
      await pool.device(A, 2 * B).discard(0, B);
      step = 'commit';
      await pool.commit();
      step = 'write';
      await pool.device(OTHER, 2 * B).write(Buffer.alloc(B, 0xbb), B);
      step = 'done';
    })();
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(valve.held, 1, 'the planned read is held');
    assert.equal(step, 'commit', 'the commit waits for the planned read to land');
    valve.open();
    const got = await read;
    await chain;
    assert.ok(got?.equals(Buffer.alloc(B, 0xaa)), 'the planned read saw A');
    assert.deepEqual(data.violations, []);
    const other = Buffer.alloc(B);
    await pool.device(OTHER, 2 * B).read(other, B);
    assert.ok(other.equals(Buffer.alloc(B, 0xbb)), 'B got the freed block afterwards');
    assert.equal(pool.status().data.usedBlocks, 2);
    await pool.close();
  });
});
