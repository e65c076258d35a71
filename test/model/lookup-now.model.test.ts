/**
 * `lookupNow`, the pool's lookup that answers at once from cached metadata (reads use it to
 * skip the metadata lock and the in-flight set), against `lookup`, which waits its turn.
 *
 * Random writes, write-zeroes, discards, snapshots, removals and commits run one at a time,
 * each started without awaiting it: while it runs, every device's every block is looked up
 * at once after each microtask and each macrotask, and every answer that is not null must
 * be the block's mapping from before the operation or from after it, never a tree part-way
 * through a change. After each operation, every answer that is not null equals `lookup`'s,
 * so no mapping is stale after a snapshot (the origin's blocks become shared), a discard or
 * zeroing (unmapped), a copy-on-write (remapped) or a removal (no answer at all). The
 * metadata cache holds only 16 blocks, so the answers also take the null path (a node not
 * cached) and come back once the slow lookup has read the node in.
 *
 * Mutation check (by hand, when this test was written): with `lookupNow` answering while the
 * metadata lock is held (the `lock.locked` test removed), the first property fails: a block
 * reads as a mapping from a tree part-way through a change.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MemoryDevice } from '../../src/block/index.js';
import { ThinPool } from '../../src/pool/index.js';
import type { Mapping } from '../../src/thin/index.js';

const KiB = 1024;
const B = 64 * KiB;
const BLOCKS = 24;
const SIZE = BLOCKS * B;

type Op =
  | { kind: 'write'; pick: number; vblock: number; count: number; partial: boolean }
  | { kind: 'zero' | 'discard'; pick: number; vblock: number; count: number }
  | { kind: 'snapshot' | 'remove'; pick: number }
  | { kind: 'commit' };

const span = fc.record({
  pick: fc.nat(),
  vblock: fc.nat(BLOCKS - 1),
  count: fc.integer({ min: 1, max: 300 }),
});

const arbOp: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc
      .tuple(span, fc.boolean())
      .map(([s, partial]) => ({ kind: 'write' as const, ...s, partial })),
  },
  { weight: 2, arbitrary: span.map((s) => ({ kind: 'zero' as const, ...s })) },
  { weight: 2, arbitrary: span.map((s) => ({ kind: 'discard' as const, ...s })) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('snapshot' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'commit' as const }) },
);

/** A mapping as text, or "unmapped", or "gone" for a device that no longer exists. */
type State = string;

function show(m: Mapping | undefined): State {
  return m === undefined ? 'unmapped' : `${m.dataBlock}@${m.time}${m.shared ? ' shared' : ''}`;
}

class Runner {
  ids: number[] = [0];
  nextId = 1;
  /** Answers of `lookupNow` that were not null, and the ones that were null. */
  known = 0;
  unknown = 0;

  constructor(readonly pool: ThinPool) {}

  /** Every block's state by `lookup` (the reference), keyed "id:vblock". */
  async states(ids: readonly number[]): Promise<Map<string, State>> {
    const out = new Map<string, State>();
    for (const id of ids) {
      for (let v = 0; v < BLOCKS; v++) {
        const m = await this.pool.lookup(id, v).then(show, () => 'gone');
        out.set(`${id}:${v}`, m);
      }
    }
    return out;
  }

  /** Every block's `lookupNow` answer that is not null. */
  observe(ids: readonly number[], into: Array<[string, State]>): void {
    for (const id of ids) {
      for (let v = 0; v < BLOCKS; v++) {
        const m = this.pool.lookupNow(id, v);
        if (m === null) {
          this.unknown++;
          continue;
        }
        this.known++;
        into.push([`${id}:${v}`, show(m)]);
      }
    }
  }

  start(op: Op): Promise<unknown> {
    const id = this.ids[('pick' in op ? op.pick : 0) % this.ids.length] as number;
    const dev = this.pool.device(id, SIZE);
    switch (op.kind) {
      case 'write': {
        const at = op.vblock * B + (op.partial ? 512 : 0);
        const length = Math.min(op.count * KiB, SIZE - at);
        return dev.write(Buffer.alloc(length, op.count & 0xff), at);
      }
      case 'zero':
        return dev.writeZeroes(op.vblock * B, Math.min(op.count * KiB, SIZE - op.vblock * B));
      case 'discard':
        return dev.discard(op.vblock * B, Math.min(op.count * KiB, SIZE - op.vblock * B));
      case 'snapshot': {
        const snap = this.nextId++;
        return this.pool.createSnapshot(snap, id).then(() => this.ids.push(snap));
      }
      case 'remove':
        if (this.ids.length < 2) return Promise.resolve();
        return this.pool.deleteDevice(id).then(() => {
          this.ids = this.ids.filter((x) => x !== id);
        });
      case 'commit':
        return this.pool.commit();
    }
  }

  /** Runs `op`, looking up every block at once after each microtask and macrotask. */
  async apply(op: Op): Promise<void> {
    const ids = [...this.ids];
    const before = await this.states(ids);
    const seen: Array<[string, State]> = [];
    let settled = false;
    const work = this.start(op).finally(() => {
      settled = true;
    });
    while (!settled) {
      this.observe(ids, seen);
      await Promise.resolve();
      this.observe(ids, seen);
      await new Promise((resolve) => setImmediate(resolve));
    }
    await work;
    const after = await this.states(ids);
    for (const [key, state] of seen) {
      const allowed = [before.get(key), after.get(key)];
      assert.ok(
        allowed.includes(state),
        `during ${JSON.stringify(op)}: ${key} read as ${state}, not ${allowed.join(' or ')}`,
      );
    }
    const now: Array<[string, State]> = [];
    this.observe(this.ids, now);
    const reference = await this.states(this.ids);
    for (const [key, state] of now) {
      assert.equal(state, reference.get(key), `after ${JSON.stringify(op)}: ${key}`);
    }
  }
}

describe('lookupNow against lookup', () => {
  it('answers null or the mapping before or after each change, and after it exactly', async () => {
    let known = 0;
    let unknown = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(arbOp, { minLength: 10, maxLength: 60 }), async (ops) => {
        const pool = await ThinPool.create(new MemoryDevice(512 * B), new MemoryDevice(8 << 20), {
          blockSize: B,
          commitIntervalMs: 0,
          cacheBlocks: 16,
        });
        const runner = new Runner(pool);
        await pool.createThin(0);
        for (const op of ops) await runner.apply(op);
        await pool.close();
        known += runner.known;
        unknown += runner.unknown;
      }),
      { numRuns: 25, seed: 1201 },
    );
    assert.ok(known > 0, 'no lookup was answered at once');
    assert.ok(unknown > 0, 'no lookup had to wait');
  });

  it('follows a snapshot, a copy-on-write, a discard and a removal at once', async () => {
    const pool = await ThinPool.create(new MemoryDevice(64 * B), new MemoryDevice(8 << 20), {
      blockSize: B,
      commitIntervalMs: 0,
    });
    await pool.createThin(1);
    const origin = pool.device(1, SIZE);
    await origin.write(Buffer.alloc(B, 1), 0);
    const first = pool.lookupNow(1, 0);
    assert.ok(first !== null && first !== undefined && !first.shared);
    await pool.createSnapshot(2, 1);
    assert.deepEqual(pool.lookupNow(1, 0), { ...first, shared: true });
    assert.deepEqual(pool.lookupNow(2, 0), { ...first, shared: true });
    await origin.write(Buffer.alloc(4096, 2), 0);
    const copied = pool.lookupNow(1, 0);
    assert.ok(copied !== null && copied !== undefined);
    assert.notEqual(copied.dataBlock, first.dataBlock);
    assert.equal(copied.shared, false);
    await origin.discard(0, B);
    assert.equal(pool.lookupNow(1, 0), undefined);
    await pool.deleteDevice(2);
    assert.equal(pool.lookupNow(2, 0), null, 'a removed device has no answer at once');
    await assert.rejects(pool.lookup(2, 0), /does not exist/);
    await pool.close();
  });
});
