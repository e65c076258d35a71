import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FileDevice, MemoryDevice } from '../../src/block/index.js';
import { type ThinDevice, ThinPool } from '../../src/pool/index.js';
import { checkMetadata } from '../../src/tools/index.js';
import { requirePeer, thinCheck } from '../support/peers.js';
import { tempDir } from '../support/temp.js';

const KiB = 1024;
const B = 64 * KiB;
const DEVICE_SIZE = 48 * B;
const dir = tempDir('thinp-pool-model-');

/** A block's contents, shared by reference between a snapshot and its origin until written. */
interface BlockRef {
  data: Buffer;
}

/** The pool as plain maps: device → virtual block → contents. */
class PoolModel {
  devices = new Map<number, Map<number, BlockRef>>();

  distinctBlocks(): number {
    const refs = new Set<BlockRef>();
    for (const blocks of this.devices.values()) for (const r of blocks.values()) refs.add(r);
    return refs.size;
  }

  private users(ref: BlockRef): number {
    let n = 0;
    for (const blocks of this.devices.values()) for (const r of blocks.values()) if (r === ref) n++;
    return n;
  }

  write(id: number, offset: number, data: Buffer): void {
    const blocks = this.devices.get(id) as Map<number, BlockRef>;
    for (let at = 0; at < data.length; ) {
      const vblock = Math.floor((offset + at) / B);
      const inner = offset + at - vblock * B;
      const n = Math.min(B - inner, data.length - at);
      let ref = blocks.get(vblock);
      if (ref === undefined) {
        ref = { data: Buffer.alloc(B) };
        blocks.set(vblock, ref);
      } else if (this.users(ref) > 1) {
        ref = { data: Buffer.from(ref.data) };
        blocks.set(vblock, ref);
      }
      data.copy(ref.data, inner, at, at + n);
      at += n;
    }
  }

  /** Whole blocks of the range are unmapped; partial edges are left alone (advisory). */
  discard(id: number, offset: number, length: number): void {
    const blocks = this.devices.get(id) as Map<number, BlockRef>;
    for (let v = Math.ceil(offset / B); (v + 1) * B <= offset + length; v++) blocks.delete(v);
  }

  /** Whole blocks unmapped, mapped partial edges zeroed. */
  writeZeroes(id: number, offset: number, length: number): void {
    const blocks = this.devices.get(id) as Map<number, BlockRef>;
    this.discard(id, offset, length);
    const edges: Array<[number, number]> = [];
    const first = Math.ceil(offset / B);
    const end = Math.floor((offset + length) / B);
    if (first > end) edges.push([offset, length]);
    else {
      if (offset < first * B) edges.push([offset, first * B - offset]);
      if (offset + length > end * B && end >= first)
        edges.push([end * B, offset + length - end * B]);
    }
    for (const [at, n] of edges) {
      if (blocks.has(Math.floor(at / B))) this.write(id, at, Buffer.alloc(n));
    }
  }

  read(id: number, offset: number, length: number): Buffer {
    const blocks = this.devices.get(id) as Map<number, BlockRef>;
    const out = Buffer.alloc(length);
    for (let at = 0; at < length; ) {
      const vblock = Math.floor((offset + at) / B);
      const inner = offset + at - vblock * B;
      const n = Math.min(B - inner, length - at);
      blocks.get(vblock)?.data.copy(out, at, inner, inner + n);
      at += n;
    }
    return out;
  }
}

type Op =
  | { kind: 'write'; pick: number; offset: number; length: number; seed: number }
  | { kind: 'writeAtOnce'; pick: number; offset: number; length: number; seed: number }
  | { kind: 'read'; pick: number; offset: number; length: number }
  | { kind: 'discard'; pick: number; offset: number; length: number }
  | { kind: 'zero'; pick: number; offset: number; length: number }
  | { kind: 'snapshot'; pick: number }
  | { kind: 'remove'; pick: number }
  | { kind: 'commit' };

const range = fc
  .tuple(fc.nat(DEVICE_SIZE - 1), fc.integer({ min: 1, max: 5 * B }))
  .map(([offset, length]) => ({ offset, length: Math.min(length, DEVICE_SIZE - offset) }));

/**
 * A range within one block, as the NBD layer's writes done at once are; half of them whole
 * pages, as a filesystem's are (a file's data device writes at once only those).
 */
const PAGE = 4 * KiB;
const inBlock = fc
  .tuple(fc.nat(DEVICE_SIZE - 1), fc.integer({ min: 1, max: B }), fc.boolean())
  .map(([at, n, pages]) => {
    const offset = pages ? at - (at % PAGE) : at;
    const length = pages ? Math.ceil(n / PAGE) * PAGE : n;
    return { offset, length: Math.min(length, B - (offset % B)) };
  });

const arbOp: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .record({ kind: fc.constant('writeAtOnce' as const), pick: fc.nat(), seed: fc.nat() })
      .chain((o) => inBlock.map((r) => ({ ...o, ...r }))),
  },
  {
    weight: 10,
    arbitrary: fc
      .record({ kind: fc.constant('write' as const), pick: fc.nat(), seed: fc.nat() })
      .chain((o) => range.map((r) => ({ ...o, ...r }))),
  },
  {
    weight: 4,
    arbitrary: fc
      .record({ kind: fc.constant('read' as const), pick: fc.nat() })
      .chain((o) => range.map((r) => ({ ...o, ...r }))),
  },
  {
    weight: 2,
    arbitrary: fc
      .record({ kind: fc.constant('discard' as const), pick: fc.nat() })
      .chain((o) => range.map((r) => ({ ...o, ...r }))),
  },
  {
    weight: 2,
    arbitrary: fc
      .record({ kind: fc.constant('zero' as const), pick: fc.nat() })
      .chain((o) => range.map((r) => ({ ...o, ...r }))),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('snapshot' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'commit' as const }) },
);

function bytes(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  let x = seed | 1;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    b[i] = x >>> 16;
  }
  return b;
}

class Runner {
  model = new PoolModel();
  nextId = 1;
  ids: number[] = [];
  maxDepth = 0;
  depth = new Map<number, number>();
  /** Writes done at once, and those of them that provisioned their block. */
  writesAtOnce = 0;
  provisionsAtOnce = 0;

  constructor(readonly pool: ThinPool) {}

  dev(id: number): ThinDevice {
    return this.pool.device(id, DEVICE_SIZE);
  }

  async start(): Promise<void> {
    await this.pool.createThin(0);
    this.model.devices.set(0, new Map());
    this.ids.push(0);
    this.depth.set(0, 0);
  }

  async apply(op: Op): Promise<void> {
    const id = this.ids[('pick' in op ? op.pick : 0) % this.ids.length] as number;
    switch (op.kind) {
      case 'write': {
        const data = bytes(op.length, op.seed);
        await this.dev(id).write(data, op.offset);
        this.model.write(id, op.offset, data);
        break;
      }
      case 'writeAtOnce': {
        // As the NBD layer writes: at once when the device can, else the usual way.
        const data = bytes(op.length, op.seed);
        const provisions = this.pool.counters.provisions;
        if (this.dev(id).writeAtOnce(data, op.offset)) {
          this.writesAtOnce++;
          if (this.pool.counters.provisions > provisions) this.provisionsAtOnce++;
        } else {
          await this.dev(id).write(data, op.offset);
        }
        this.model.write(id, op.offset, data);
        break;
      }
      case 'read': {
        const buf = Buffer.alloc(op.length);
        await this.dev(id).read(buf, op.offset);
        assert.ok(
          buf.equals(this.model.read(id, op.offset, op.length)),
          `read of ${id} at ${op.offset}`,
        );
        break;
      }
      case 'discard':
        await this.dev(id).discard(op.offset, op.length);
        this.model.discard(id, op.offset, op.length);
        break;
      case 'zero':
        await this.dev(id).writeZeroes(op.offset, op.length);
        this.model.writeZeroes(id, op.offset, op.length);
        break;
      case 'snapshot': {
        // Mostly snapshot the newest device, so chains grow deep.
        const origin = op.pick % 4 === 0 ? id : (this.ids[this.ids.length - 1] as number);
        const snap = this.nextId++;
        await this.pool.createSnapshot(snap, origin);
        this.model.devices.set(snap, new Map(this.model.devices.get(origin)));
        this.ids.push(snap);
        const d = (this.depth.get(origin) ?? 0) + 1;
        this.depth.set(snap, d);
        this.maxDepth = Math.max(this.maxDepth, d);
        break;
      }
      case 'remove':
        if (this.ids.length < 3) break;
        await this.pool.deleteDevice(id);
        this.model.devices.delete(id);
        this.ids = this.ids.filter((x) => x !== id);
        break;
      case 'commit':
        await this.pool.commit();
        break;
    }
    assert.equal(
      this.pool.status().data.usedBlocks,
      this.model.distinctBlocks(),
      `after ${op.kind}`,
    );
  }

  async verifyAll(): Promise<void> {
    for (const id of this.ids) {
      const buf = Buffer.alloc(DEVICE_SIZE);
      await this.dev(id).read(buf, 0);
      assert.ok(buf.equals(this.model.read(id, 0, DEVICE_SIZE)), `contents of device ${id}`);
    }
  }
}

describe('the pool against a byte-level model', () => {
  it('agrees on every byte and every block over random I/O and snapshot trees', async () => {
    let writesAtOnce = 0;
    let provisionsAtOnce = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(arbOp, { minLength: 30, maxLength: 250 }), async (ops) => {
        const meta = new MemoryDevice(8 << 20);
        const pool = await ThinPool.create(new MemoryDevice(4096 * B), meta, {
          blockSize: B,
          commitIntervalMs: 0,
        });
        const runner = new Runner(pool);
        await runner.start();
        for (const op of ops) await runner.apply(op);
        await runner.verifyAll();
        await pool.commit();
        await pool.close();
        assert.deepEqual((await checkMetadata(meta)).problems, []);
        writesAtOnce += runner.writesAtOnce;
        provisionsAtOnce += runner.provisionsAtOnce;
      }),
      { numRuns: 40, seed: 4242 },
    );
    // Writes done at once took both ways: over a mapped block and into a new one.
    assert.ok(provisionsAtOnce > 0, 'no write provisioned its block at once');
    assert.ok(writesAtOnce > provisionsAtOnce, 'no write at once overwrote in place');
  });

  it('keeps a chain of 25 snapshots exact, then passes thin_check', async () => {
    await requirePeer('thin_check');
    const metaFile = path.join(await dir, 'chain.meta');
    const meta = await FileDevice.open(metaFile, { create: { size: 16 << 20 } });
    const data = await FileDevice.open(path.join(await dir, 'chain.data'), {
      create: { size: 4096 * B },
    });
    try {
      const pool = await ThinPool.create(data, meta, { blockSize: B, commitIntervalMs: 0 });
      const runner = new Runner(pool);
      await runner.start();
      const [ops] = fc.sample(fc.array(arbOp, { minLength: 600, maxLength: 600 }), {
        numRuns: 1,
        seed: 77,
      }) as [Op[]];
      let level = 0;
      for (const op of ops) {
        await runner.apply(op);
        if (op.kind === 'write' && level < 25 && op.seed % 3 === 0) {
          await runner.apply({ kind: 'snapshot', pick: 1 });
          level++;
        }
      }
      assert.ok(runner.maxDepth >= 20, `snapshot depth ${runner.maxDepth}`);
      assert.ok(runner.provisionsAtOnce > 0, 'no write provisioned its block at once');
      await runner.verifyAll();
      await pool.close();
    } finally {
      await data.close();
      await meta.close();
    }
    const check = await thinCheck(metaFile);
    assert.equal(check.status, 0, check.stdout + check.stderr);
  });
});
