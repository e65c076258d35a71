/**
 * The pool under concurrency, against a sequential model. fast-check's `scheduler()` starts
 * the operations of each wave in a random order and decides when every read, write,
 * discard and flush of the data device lands (test/support/scheduled-device.ts), so
 * completions are delayed and reordered, and a failing interleaving replays from its seed.
 *
 * A run is a few waves of concurrent writes, reads, trims, write-zeroes (with and without
 * NO_HOLE), snapshots, removals and commits on several thin devices. Within a wave:
 * - operations on one device may overlap, except on a device being snapshotted; each block
 *   must then end as the operations touching it leave it in some order (each block's work
 *   is atomic under its cell), and the model adopts the order the pool took;
 * - a snapshot is read as soon as it exists; that content must be its origin before the
 *   wave with some subset of the wave's origin operations applied (whole operations: the
 *   origin is quiesced), and it must not change afterwards;
 * - a removed device has no other operation in its wave.
 * Reads take the pool's three paths: done at once (`lookupNow` and the device's `readNow`,
 * when no metadata operation is under way), waiting, or planned as the native reply sender
 * reads (`planRead` at once, the plan's pieces read from the data device later, as the
 * scheduler lets them land, then `release`); all are counted and must all occur. Writes
 * that draw `noHole`, and every other one, first try `writeAtOnce` (an overwrite in place
 * through the device's `writeNow`, or a new block provisioned at once), as the NBD layer
 * does; some must be done each way. The devices start partly written and uncommitted, so
 * that the first wave finds unmapped blocks and metadata its transaction owns.
 * After every wave, every device reads exactly what the model says; every word any read
 * returned is zero or was written to that device or an ancestor (writes carry their tag and
 * device in every 4-byte word), so no device ever reads another's bytes; the pool's used
 * blocks equal the model's distinct blocks; the data device saw no discard or read racing
 * a write. After every run, `thinp check` (checkMetadata) and the real `thin_check` are clean.
 *
 * Mutation check (done by hand when this test was written, with the seed below): with the
 * unmap's cells and the in-flight set disabled in pool/thin-pool.ts (`unmapRange` calling
 * `removeRange` without `cells.runAll`, `inFlight` running `fn` directly), the 4th run fails:
 * a freed block is discarded while an in-place write to it is in flight ("discard [...]
 * during a write"). With the quiesce in `createSnapshot` disabled (the metadata step alone),
 * the 2nd run fails: a snapshot's contents differ from what was read when it was taken
 * ("contents of device N"). Both fixes in place, all runs pass.
 */

import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MemoryDevice } from '../../src/block/index.js';
import { splitIntoBlocks, type ThinDevice, ThinPool, wholeBlocks } from '../../src/pool/index.js';
import { checkMetadata } from '../../src/tools/index.js';
import { ReadPlan } from '../../src/util/index.js';
import { requirePeer, thinCheck } from '../support/peers.js';
import { type DeviceOp, ScheduledDevice } from '../support/scheduled-device.js';
import { tempDir } from '../support/temp.js';

const B = 64 * 1024;
const BLOCKS = 4;
const SIZE = BLOCKS * B;
const SECTOR = 512;
const MAX_LIVE = 7;
const META_BYTES = 4 << 20;
const dir = tempDir('thinp-pool-concurrency-');
/** The data device's stand-in for a file descriptor: planned pieces name it. */
const PSEUDO_FD = 1000;

type Kind = 'write' | 'read' | 'trim' | 'zero' | 'snapshot' | 'remove' | 'commit';

interface RawOp {
  kind: Kind;
  pick: number;
  sector: number;
  sectors: number;
  /** For write-zeroes: NO_HOLE. For a read: try the planned path first. */
  noHole: boolean;
}

/** An operation planned against the devices live at the start of its wave. */
interface Op extends RawOp {
  id: number;
  offset: number;
  length: number;
  /** Blocks whose contents it may change (empty for read, snapshot, remove, commit). */
  changes: Set<number>;
  tag: number;
  snapId: number;
}

/** One block of the model: undefined is unmapped; `fresh` means it got a new data block. */
interface BlockState {
  data: Buffer | undefined;
  fresh: boolean;
}

/** Contents shared by reference between snapshots until written, as data blocks are. */
interface BlockRef {
  data: Buffer;
}

type DeviceModel = Map<number, BlockRef>;

const arbRawOp: fc.Arbitrary<RawOp> = fc.record({
  kind: fc.constantFrom<Kind>(
    ...(['write', 'write', 'write', 'write', 'trim', 'trim', 'zero', 'zero'] as const),
    ...(['commit', 'commit', 'read', 'snapshot', 'remove'] as const),
  ),
  pick: fc.nat(50),
  sector: fc.nat(SIZE / SECTOR - 1),
  sectors: fc.integer({ min: 1, max: (2 * B) / SECTOR }),
  noHole: fc.boolean(),
});

const arbWaves = fc.array(fc.array(arbRawOp, { minLength: 3, maxLength: 8 }), {
  minLength: 3,
  maxLength: 7,
});

/** A write's bytes: every 4-byte word holds a marker, its tag and its device. */
function tagged(length: number, tag: number, id: number): Buffer {
  const buf = Buffer.alloc(length);
  for (let i = 0; i + 4 <= length; i += 4) {
    buf[i] = 0xa5;
    buf[i + 1] = tag & 0xff;
    buf[i + 2] = tag >>> 8;
    buf[i + 3] = id;
  }
  return buf;
}

/** The blocks `op` may change. */
function changedBlocks(kind: Kind, offset: number, length: number): Set<number> {
  const out = new Set<number>();
  if (kind === 'write' || kind === 'zero') {
    for (const p of splitIntoBlocks(offset, length, B)) out.add(p.vblock);
  } else if (kind === 'trim') {
    const { first, end } = wholeBlocks(offset, length, B);
    for (let v = first; v < end; v++) out.add(v);
  }
  return out;
}

/** What `op` does to block `v` in state `s`. */
function applyToBlock(op: Op, v: number, s: BlockState): BlockState {
  if (!op.changes.has(v)) return s;
  const { first, end } = wholeBlocks(op.offset, op.length, B);
  const whole = v >= first && v < end;
  if (op.kind === 'trim' || (op.kind === 'zero' && !op.noHole && whole)) {
    return { data: undefined, fresh: false };
  }
  const piece = splitIntoBlocks(op.offset, op.length, B).find((p) => p.vblock === v);
  if (piece === undefined) return s;
  if (op.kind === 'zero' && !op.noHole && s.data === undefined) return s;
  const data = s.data === undefined ? Buffer.alloc(B) : Buffer.from(s.data);
  if (op.kind === 'write') {
    tagged(op.length, op.tag, op.id).copy(data, piece.inner, piece.at, piece.at + piece.length);
  } else {
    data.fill(0, piece.inner, piece.inner + piece.length);
  }
  return { data, fresh: true };
}

function permutations<T>(items: readonly T[]): T[][] {
  if (items.length <= 1) return [[...items]];
  return items.flatMap((x, i) =>
    permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [x, ...rest]),
  );
}

function subsets<T>(items: readonly T[]): T[][] {
  return items.reduce<T[][]>((acc, x) => acc.concat(acc.map((s) => [...s, x])), [[]]);
}

class Run {
  readonly models = new Map<number, DeviceModel>();
  readonly parent = new Map<number, number>();
  readonly tagOwner = new Map<number, number>();
  nextId = 0;
  nextTag = 1;
  /** Set when an adopted block matched outcomes with different data block counts. */
  ambiguous = false;
  /** Reads that took the planned path. */
  readsPlanned = 0;
  /** Writes done at once (`writeAtOnce`). */
  writesAtOnce = 0;
  /** Of those, writes that provisioned their block at once. */
  provisionsAtOnce = 0;

  constructor(
    readonly pool: ThinPool,
    readonly data: ScheduledDevice,
  ) {}

  dev(id: number): ThinDevice {
    return this.pool.device(id, SIZE);
  }

  async start(): Promise<void> {
    // Device i starts with its first BLOCKS - i blocks written: the others are for writes
    // that provision, at once or not.
    for (let i = 0; i < 3; i++) {
      const id = this.nextId++;
      await this.pool.createThin(id);
      const tag = this.nextTag++;
      this.tagOwner.set(tag, id);
      const bytes = tagged((BLOCKS - i) * B, tag, id);
      await this.dev(id).write(bytes, 0);
      const m: DeviceModel = new Map();
      for (let v = 0; v < BLOCKS - i; v++) m.set(v, { data: bytes.subarray(v * B, (v + 1) * B) });
      this.models.set(id, m);
    }
    // Not committed: the first wave finds the metadata this transaction's own, so that
    // writes can provision at once before a commit hands the paths back.
  }

  /** Turns a wave's raw operations into ones the model can follow (see the file head). */
  plan(raws: readonly RawOp[]): Op[] {
    const live = [...this.models.keys()];
    const ops: Op[] = [];
    const removed = new Set<number>();
    const snapshotted = new Set<number>();
    let liveCount = live.length;
    const changesOf = (id: number) => ops.filter((o) => o.id === id && o.changes.size > 0);
    const overlaps = (a: Set<number>, b: Set<number>) => [...a].some((v) => b.has(v));
    for (const raw of raws) {
      // Mostly the two oldest devices, so that operations meet on the same blocks.
      const id = live[raw.pick % 3 === 0 ? raw.pick % live.length : raw.pick % 2] as number;
      const offset = raw.sector * SECTOR;
      const length = Math.min(raw.sectors * SECTOR, SIZE - offset);
      const op: Op = {
        ...raw,
        id,
        offset,
        length,
        changes: changedBlocks(raw.kind, offset, length),
        tag: 0,
        snapId: -1,
      };
      if (removed.has(id) && raw.kind !== 'commit') continue;
      if (raw.kind === 'remove') {
        if (liveCount <= 2 || snapshotted.has(id) || ops.some((o) => o.id === id)) continue;
        removed.add(id);
        liveCount--;
      } else if (raw.kind === 'snapshot') {
        if (snapshotted.has(id) || liveCount >= MAX_LIVE) continue;
        const mine = changesOf(id);
        if (mine.some((a, i) => mine.slice(i + 1).some((b) => overlaps(a.changes, b.changes)))) {
          continue;
        }
        snapshotted.add(id);
        op.snapId = this.nextId++;
        liveCount++;
      } else if (op.changes.size > 0 && snapshotted.has(id)) {
        if (changesOf(id).some((o) => overlaps(o.changes, op.changes))) continue;
      }
      if (raw.kind === 'write') {
        op.tag = this.nextTag++;
        this.tagOwner.set(op.tag, id);
      }
      ops.push(op);
    }
    return ops;
  }

  /** Runs one operation; returns what a read or a snapshot saw. */
  async exec(op: Op): Promise<Buffer | undefined> {
    const dev = this.dev(op.id);
    switch (op.kind) {
      case 'write': {
        const bytes = tagged(op.length, op.tag, op.id);
        // As the NBD layer writes: at once when the device can, else the usual way.
        const provisions = this.pool.counters.provisions;
        const tryAtOnce = op.noHole || op.tag % 2 === 1;
        if (tryAtOnce && dev.writeAtOnce(bytes, op.offset)) {
          this.writesAtOnce++;
          if (this.pool.counters.provisions > provisions) this.provisionsAtOnce++;
        } else {
          await dev.write(bytes, op.offset);
        }
        return undefined;
      }
      case 'read': {
        const buf = Buffer.alloc(op.length);
        if (op.noHole && (await this.readPlanned(dev, buf, op.offset))) return buf;
        await dev.read(buf, op.offset);
        return buf;
      }
      case 'trim':
        await dev.discard(op.offset, op.length);
        return undefined;
      case 'zero':
        await dev.writeZeroes(op.offset, op.length, { noHole: op.noHole });
        return undefined;
      case 'snapshot': {
        await this.pool.createSnapshot(op.snapId, op.id);
        const buf = Buffer.alloc(SIZE);
        await this.dev(op.snapId).read(buf, 0);
        return buf;
      }
      case 'remove':
        await this.pool.deleteDevice(op.id);
        return undefined;
      case 'commit':
        await this.pool.commit();
        return undefined;
    }
  }

  /**
   * A read the way the native reply sender does it: planned at once, the pieces read later
   * (each a scheduled read of the data device, landing whenever the scheduler lets it), the
   * plan released after. False when the device could not plan it.
   */
  async readPlanned(dev: ThinDevice, buf: Buffer, offset: number): Promise<boolean> {
    const plan = new ReadPlan();
    if (!dev.planRead(offset, buf.length, plan)) return false;
    this.readsPlanned++;
    try {
      let at = 0;
      for (let i = 0; i < plan.count; i++) {
        const fd = plan.pieces[3 * i] as number;
        const from = plan.pieces[3 * i + 1] as number;
        const n = plan.pieces[3 * i + 2] as number;
        assert.ok(fd === PSEUDO_FD || fd === -1, `piece ${i} names fd ${fd}`);
        if (fd !== -1) await this.data.read(buf.subarray(at, at + n), from);
        at += n;
      }
      assert.equal(at, buf.length, 'the pieces cover the read');
    } finally {
      plan.release();
    }
    return true;
  }

  contents(id: number): Buffer {
    const out = Buffer.alloc(SIZE);
    for (const [v, ref] of this.models.get(id) as DeviceModel) ref.data.copy(out, v * B);
    return out;
  }

  /** Every 4-byte word of `buf`, read from device `id`, is zero or from `id`'s lineage. */
  checkIsolation(id: number, buf: Buffer, what: string): void {
    const lineage = new Set<number>();
    for (let d: number | undefined = id; d !== undefined; d = this.parent.get(d)) lineage.add(d);
    for (let i = 0; i + 4 <= buf.length; i += 4) {
      const word = buf.readUInt32LE(i);
      if (word === 0) continue;
      const tag = (buf[i + 1] as number) | ((buf[i + 2] as number) << 8);
      const owner = this.tagOwner.get(tag);
      assert.ok(
        buf[i] === 0xa5 && owner === buf[i + 3] && lineage.has(owner as number),
        `${what}: word 0x${word.toString(16)} at ${i} is not from device ${id} or its origins`,
      );
    }
  }

  /** Settles the model after a wave, checking each device against what it allows. */
  async settle(ops: readonly Op[], seen: Map<Op, Buffer | undefined>): Promise<void> {
    const before = new Map([...this.models].map(([id, m]) => [id, new Map(m)]));
    for (const op of ops) {
      if (op.kind === 'read') {
        const got = seen.get(op) as Buffer;
        this.checkIsolation(op.id, got, `read of ${op.id}`);
        const racing = ops.some(
          (o) =>
            o.id === op.id &&
            [...o.changes].some((v) => v * B < op.offset + op.length && op.offset < (v + 1) * B),
        );
        if (!racing) {
          const want = contentsOf(before.get(op.id) as DeviceModel).subarray(
            op.offset,
            op.offset + op.length,
          );
          assert.ok(got.equals(want), `read of ${op.id} at ${op.offset} with no change racing it`);
        }
      }
    }
    for (const op of ops) {
      if (op.kind === 'snapshot') await this.settleSnapshot(op, ops, seen, before);
    }
    const snapshotted = new Set(ops.filter((o) => o.kind === 'snapshot').map((o) => o.id));
    for (const id of new Set(ops.filter((o) => o.changes.size > 0).map((o) => o.id))) {
      if (!snapshotted.has(id)) await this.adopt(id, ops);
    }
    for (const op of ops) if (op.kind === 'remove') this.models.delete(op.id);
  }

  /**
   * The snapshot is its origin with some of the wave's origin operations applied. When
   * several subsets give the same contents (an operation that changed no byte, such as zeros
   * over zeros, or a trim of zeros), they differ in which blocks each device maps and which
   * the two still share: the pool's mapping decides, and one of them must match it.
   */
  private async settleSnapshot(
    snap: Op,
    ops: readonly Op[],
    seen: Map<Op, Buffer | undefined>,
    before: Map<number, DeviceModel>,
  ): Promise<void> {
    const atCreation = seen.get(snap) as Buffer;
    this.checkIsolation(snap.id, atCreation, `snapshot ${snap.snapId} of ${snap.id}`);
    const pre = before.get(snap.id) as DeviceModel;
    const mine = ops.filter((o) => o.id === snap.id && o.changes.size > 0);
    const candidates = subsets(mine)
      .map((taken) => {
        const origin = applyOps(pre, taken);
        const after = applyOps(
          origin,
          mine.filter((o) => !taken.includes(o)),
        );
        return { origin, after };
      })
      .filter((c) => contentsOf(c.origin).equals(atCreation));
    assert.ok(
      candidates.length > 0,
      `snapshot ${snap.snapId} of ${snap.id} is not its origin at any point between operations`,
    );
    const mapping = await this.mappingOf(snap.snapId, snap.id);
    const chosen = candidates.find((c) =>
      mapping.every((m, v) => m === mappingCode(c.origin.get(v), c.after.get(v))),
    );
    assert.ok(
      chosen !== undefined,
      `snapshot ${snap.snapId} of ${snap.id}: no order of the origin's operations leaves the ` +
        `mapping the pool has (${mapping.join(',')})`,
    );
    this.models.set(snap.snapId, new Map(chosen.origin));
    this.parent.set(snap.snapId, snap.id);
    this.models.set(snap.id, chosen.after);
  }

  /** For each block, how snapshot `snap` and its origin map it (see `mappingCode`). */
  private async mappingOf(snap: number, origin: number): Promise<string[]> {
    const codes: string[] = [];
    for (let v = 0; v < BLOCKS; v++) {
      const [x, y] = await Promise.all([this.pool.lookup(snap, v), this.pool.lookup(origin, v)]);
      codes.push(mappingCode(x?.dataBlock, y?.dataBlock));
    }
    return codes;
  }

  /** Each block changed in the wave ends as some order of its operations leaves it. */
  private async adopt(id: number, ops: readonly Op[]): Promise<void> {
    const model = this.models.get(id) as DeviceModel;
    const dev = this.dev(id);
    const got = Buffer.alloc(SIZE);
    await dev.read(got, 0);
    const mapped = new Set<number>();
    for (const e of await dev.blockStatus(0, SIZE)) {
      if (e.mapped) for (let v = e.offset / B; v < (e.offset + e.length) / B; v++) mapped.add(v);
    }
    const mine = ops.filter((o) => o.id === id && o.changes.size > 0);
    for (let v = 0; v < BLOCKS; v++) {
      const touching = mine.filter((o) => o.changes.has(v));
      if (touching.length === 0) continue;
      const ref = model.get(v);
      const observed = got.subarray(v * B, (v + 1) * B);
      const outcomes = permutations(touching)
        .map((order) =>
          order.reduce((s, o) => applyToBlock(o, v, s), { data: ref?.data, fresh: false }),
        )
        .filter(
          (s) =>
            (s.data !== undefined) === mapped.has(v) &&
            (s.data === undefined ? observed.every((b) => b === 0) : s.data.equals(observed)),
        );
      assert.ok(
        outcomes.length > 0,
        `device ${id} block ${v} is not what its ${touching.length} operations leave in any order`,
      );
      if (new Set(outcomes.map((s) => s.fresh)).size > 1) this.ambiguous = true;
      const s = outcomes[0] as BlockState;
      if (s.data === undefined) model.delete(v);
      else if (s.fresh) model.set(v, { data: Buffer.from(observed) });
    }
  }

  distinctBlocks(): number {
    const refs = new Set<BlockRef>();
    for (const m of this.models.values()) for (const r of m.values()) refs.add(r);
    return refs.size;
  }

  async verify(): Promise<void> {
    for (const id of this.models.keys()) {
      const buf = Buffer.alloc(SIZE);
      await this.dev(id).read(buf, 0);
      this.checkIsolation(id, buf, `device ${id}`);
      assert.ok(buf.equals(this.contents(id)), `contents of device ${id}`);
    }
    if (!this.ambiguous) {
      assert.equal(this.pool.status().data.usedBlocks, this.distinctBlocks(), 'used data blocks');
    }
    this.ambiguous = false;
    assert.deepEqual(this.data.violations, []);
  }
}

function contentsOf(model: DeviceModel): Buffer {
  const out = Buffer.alloc(SIZE);
  for (const [v, ref] of model) ref.data.copy(out, v * B);
  return out;
}

/**
 * How a snapshot and its origin map one block: '-' unmapped, 'm' mapped, and 's' when both
 * map it to the same block. `a` and `b` are anything compared by identity (data block
 * numbers, or the model's block references).
 */
function mappingCode(a: unknown, b: unknown): string {
  const one = (x: unknown) => (x === undefined ? '-' : 'm');
  return a !== undefined && a === b ? 's' : one(a) + one(b);
}

/** `ops` (touching disjoint blocks) applied to a copy of `model`; untouched blocks shared. */
function applyOps(model: DeviceModel, ops: readonly Op[]): DeviceModel {
  const out = new Map(model);
  for (const op of ops) {
    for (const v of op.changes) {
      const ref = out.get(v);
      const s = applyToBlock(op, v, { data: ref?.data, fresh: false });
      if (s.data === undefined) out.delete(v);
      else if (s.fresh) out.set(v, { data: s.data });
    }
  }
  return out;
}

/** Fails instead of hanging when an interleaving deadlocks. */
function deadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish in ${ms} ms`)), ms);
  });
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}

describe('the pool under concurrent, reordered I/O against a sequential model', () => {
  it('keeps devices exact and apart, snapshots points in time, and the metadata clean', async () => {
    await requirePeer('thin_check');
    const metaFile = path.join(await dir, 'run.meta');
    let runs = 0;
    let readsNow = 0;
    let readsPlanned = 0;
    let readsWaited = 0;
    let writesAtOnce = 0;
    let provisionsAtOnce = 0;
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), arbWaves, async (s, waves) => {
        let scheduled = false;
        const when = (_op: DeviceOp, label: string) =>
          scheduled ? s.schedule(Promise.resolve(), label) : Promise.resolve();
        const data = new ScheduledDevice(new MemoryDevice(512 * B), when, {
          readNow: true,
          readFd: PSEUDO_FD,
          writeNow: true,
        });
        const meta = new MemoryDevice(META_BYTES);
        const pool = await ThinPool.create(data, meta, { blockSize: B, commitIntervalMs: 0 });
        const run = new Run(pool, data);
        await run.start();
        for (const raws of waves) {
          const ops = run.plan(raws);
          const seen = new Map<Op, Buffer | undefined>();
          scheduled = true;
          const tasks = ops.map((op) =>
            s
              .schedule(Promise.resolve(), `start ${op.kind} ${op.id}`)
              .then(() => run.exec(op))
              .then((out) => void seen.set(op, out)),
          );
          await deadline(s.waitFor(Promise.all(tasks)), 10_000, 'a wave');
          scheduled = false;
          await run.settle(ops, seen);
          await run.verify();
        }
        await pool.commit();
        await pool.close();
        assert.deepEqual((await checkMetadata(meta)).problems, []);
        const image = Buffer.alloc(META_BYTES);
        await meta.read(image, 0);
        await writeFile(metaFile, image);
        const check = await thinCheck(metaFile);
        assert.equal(check.status, 0, check.stdout + check.stderr);
        readsNow += data.readsNow;
        readsPlanned += run.readsPlanned;
        writesAtOnce += run.writesAtOnce;
        provisionsAtOnce += run.provisionsAtOnce;
        readsWaited += data.issued.read;
        runs++;
      }),
      {
        numRuns: 40,
        seed: 20261201,
        includeErrorInReport: true,
        // A failure replays from its seed; shrinking an interleaving can take long.
        interruptAfterTimeLimit: 240_000,
        markInterruptAsFailure: true,
      },
    );
    assert.equal(runs, 40);
    // Reads took both paths: at once (lookupNow + readNow, between metadata operations) and
    // waiting (the lookup queued behind a metadata operation, the data read scheduled).
    assert.ok(readsNow > 0, 'no read was done at once');
    assert.ok(readsPlanned > 0, 'no read was planned');
    assert.ok(writesAtOnce > 0, 'no write was done at once');
    assert.ok(provisionsAtOnce > 0, 'no write provisioned its block at once');
    assert.ok(readsWaited > 0, 'no read went through the scheduled device');
  });
});
