/**
 * Power loss of a whole pool: data and metadata on two CrashDevices that lose power together
 * and drop all, or a random subset, of their unflushed writes and discards. One seeded
 * workload of writes (some FUA; every other plain one tried at once, as the NBD layer
 * writes: in place, or into a block provisioned at once), FLUSHes, trims, write-zeroes,
 * snapshots and removals on several thin devices runs again and again, cut at hundreds of
 * points spread over the ops
 * of both devices; after each cut the pool is reopened from what survived, and:
 * - every device that existed at the last acknowledged FLUSH (or FUA write) still exists,
 *   unless a removal was issued since;
 * - every word that no operation since that FLUSH touched reads as it did then: acknowledged
 *   data reads back, and where the model says zeros nothing unflushed shows up;
 * - a word that an operation since then touched reads as before, as one of those writes
 *   left it, or as zeros if a trim or write-zeroes since then covers it;
 * - devices made since then hold only zeros and bytes written to them or their origins;
 * - `thinp check` (checkMetadata) and the real `thin_check` pass.
 */

import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { MemoryDevice } from '../../src/block/index.js';
import { ThinPool, wholeBlocks } from '../../src/pool/index.js';
import { checkMetadata } from '../../src/tools/index.js';
import { CrashDevice, type CrashMode } from '../support/crash-device.js';
import { requirePeer, thinCheck } from '../support/peers.js';
import { tempDir } from '../support/temp.js';

const B = 64 * 1024;
const BLOCKS = 6;
const SIZE = BLOCKS * B;
const DATA_BLOCKS = 96;
const META_BYTES = 2 << 20;
const CUTS_PER_DEVICE = 150;
const dir = tempDir('thinp-power-loss-');

type Op =
  | { kind: 'write'; id: number; offset: number; length: number; tag: number; fua: boolean }
  | { kind: 'trim' | 'zero'; id: number; offset: number; length: number }
  | { kind: 'flush'; id: number }
  | { kind: 'snapshot'; id: number; snap: number }
  | { kind: 'remove'; id: number };

function lcg(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

/** A write's bytes: every 4-byte word holds a marker, its tag and its device. */
function tagged(length: number, tag: number, id: number): Buffer {
  const buf = Buffer.alloc(length);
  for (let i = 0; i + 4 <= length; i += 4) buf.writeUInt32LE(word(tag, id), i);
  return buf;
}

function word(tag: number, id: number): number {
  return (0xa5 | ((tag & 0xffff) << 8) | (id << 24)) >>> 0;
}

/**
 * The workload: the same for every cut. `pages`: the writes are whole pages within one
 * block, and FLUSHes and FUA writes rarer, as a filesystem over NBD writes, so that many
 * writes are done at once.
 */
function workload(seed: number, count: number, pages = false): Op[] {
  const rnd = lcg(seed);
  const int = (n: number) => Math.floor(rnd() * n);
  const live = [0, 1];
  let nextId = 2;
  let tag = 1;
  const ops: Op[] = [];
  const flushShare = pages ? 0.05 : 0.15;
  while (ops.length < count) {
    const id = live[int(live.length)] as number;
    let offset = int(SIZE / 512) * 512;
    let length = Math.min(SIZE - offset, (1 + int((2 * B) / 512)) * 512);
    if (pages) {
      offset = int(SIZE / 4096) * 4096;
      length = Math.min(B - (offset % B), (1 + int(4)) * 4096);
    }
    const r = rnd();
    if (r < 0.45) {
      ops.push({
        kind: 'write',
        id,
        offset,
        length,
        tag: tag++,
        fua: rnd() < (pages ? 0.05 : 0.2),
      });
    } else if (r < 0.45 + flushShare) ops.push({ kind: 'flush', id });
    else if (r < 0.7) ops.push({ kind: 'trim', id, offset, length });
    else if (r < 0.8) ops.push({ kind: 'zero', id, offset, length });
    else if (r < 0.9 && live.length < 5) {
      ops.push({ kind: 'snapshot', id, snap: nextId });
      live.push(nextId++);
    } else if (live.length > 2) {
      ops.push({ kind: 'remove', id });
      live.splice(live.indexOf(id), 1);
    }
  }
  return ops;
}

const WORKLOAD = workload(2026, 90);
const PAGE_WORKLOAD = workload(2027, 200, true);

/** What the workload did: the devices' contents, and what changed since the last FLUSH. */
class Model {
  current = new Map<number, Buffer>();
  durable = new Map<number, Buffer>();
  parent = new Map<number, number>();
  tagOwner = new Map<number, number>();
  /** The operations issued since the last acknowledged FLUSH (the one that failed too). */
  since: Op[] = [];

  constructor() {
    for (const id of [0, 1]) this.current.set(id, Buffer.alloc(SIZE));
    this.acknowledge();
  }

  issue(op: Op): void {
    this.since.push(op);
    if (op.kind === 'write') this.tagOwner.set(op.tag, op.id);
  }

  /** `op` completed. */
  done(op: Op): void {
    const buf = this.current.get(op.id) as Buffer;
    switch (op.kind) {
      case 'write':
        tagged(op.length, op.tag, op.id).copy(buf, op.offset);
        if (op.fua) this.acknowledge();
        break;
      case 'trim': {
        const { first, end } = wholeBlocks(op.offset, op.length, B);
        buf.fill(0, first * B, end * B);
        break;
      }
      case 'zero':
        buf.fill(0, op.offset, op.offset + op.length);
        break;
      case 'flush':
        this.acknowledge();
        break;
      case 'snapshot':
        this.current.set(op.snap, Buffer.from(buf));
        this.parent.set(op.snap, op.id);
        break;
      case 'remove':
        this.current.delete(op.id);
        break;
    }
  }

  private acknowledge(): void {
    this.durable = new Map([...this.current].map(([id, b]) => [id, Buffer.from(b)]));
    this.since = [];
  }

  lineage(id: number): Set<number> {
    const out = new Set<number>();
    for (let d: number | undefined = id; d !== undefined; d = this.parent.get(d)) out.add(d);
    return out;
  }

  /** Whether `w` may be at byte `p` of device `id`, which existed at the last FLUSH. */
  allowed(id: number, p: number, w: number): boolean {
    if (w === (this.durable.get(id) as Buffer).readUInt32LE(p)) return true;
    for (const op of this.since) {
      if (op.id !== id || !('offset' in op)) continue;
      const inRange = p >= op.offset && p < op.offset + op.length;
      if (op.kind === 'write' && inRange && w === word(op.tag, id)) return true;
      if (op.kind === 'zero' && inRange && w === 0) return true;
      if (op.kind === 'trim' && w === 0) {
        const { first, end } = wholeBlocks(op.offset, op.length, B);
        if (p >= first * B && p < end * B) return true;
      }
    }
    return false;
  }

  /** Whether `w` on new device `id` is zero or written to it or an origin. */
  isolated(id: number, w: number): boolean {
    if (w === 0) return true;
    const owner = this.tagOwner.get((w >>> 8) & 0xffff);
    return (w & 0xff) === 0xa5 && owner === w >>> 24 && this.lineage(id).has(owner);
  }
}

/** Writes done at once by `apply`, and those of them that provisioned a block. */
const atOnce = { writes: 0, provisions: 0 };

async function apply(pool: ThinPool, op: Op): Promise<void> {
  const dev = pool.device(op.id, SIZE);
  switch (op.kind) {
    case 'write': {
      const bytes = tagged(op.length, op.tag, op.id);
      // Every other plain write as the NBD layer writes: at once when the pool can.
      const provisions = pool.counters.provisions;
      if (!op.fua && op.tag % 2 === 0 && dev.writeAtOnce(bytes, op.offset)) {
        atOnce.writes++;
        if (pool.counters.provisions > provisions) atOnce.provisions++;
        return;
      }
      return dev.write(bytes, op.offset, { fua: op.fua });
    }
    case 'trim':
      return dev.discard(op.offset, op.length);
    case 'zero':
      return dev.writeZeroes(op.offset, op.length);
    case 'flush':
      return dev.flush();
    case 'snapshot':
      return pool.createSnapshot(op.snap, op.id);
    case 'remove':
      return pool.deleteDevice(op.id);
  }
}

interface Cut {
  device: 'data' | 'metadata';
  at: number;
  mode: CrashMode;
  seed: number;
}

/** Makes a pool, runs `ops` with `cut` armed, and returns what survived. */
async function runUntilCut(ops: readonly Op[], cut: Cut | undefined) {
  const dataInner = new MemoryDevice(DATA_BLOCKS * B, 'data');
  const metaInner = new MemoryDevice(META_BYTES, 'metadata');
  const data = new CrashDevice(dataInner);
  const meta = new CrashDevice(metaInner);
  data.crashesWith(meta);
  const pool = await ThinPool.create(data, meta, { blockSize: B, commitIntervalMs: 0 });
  await pool.createThin(0);
  await pool.createThin(1);
  await pool.commit();
  const start = { data: data.opCount, metadata: meta.opCount };
  if (cut !== undefined) {
    const device = cut.device === 'data' ? data : meta;
    device.crashAfter(start[cut.device] + cut.at, cut.mode, lcg(cut.seed));
  }
  const model = new Model();
  let crashed = false;
  for (const op of ops) {
    model.issue(op);
    try {
      await apply(pool, op);
    } catch (err) {
      if (!data.crashed) throw err;
      crashed = true;
      break;
    }
    model.done(op);
  }
  const count = { data: data.opCount - start.data, metadata: meta.opCount - start.metadata };
  return { dataInner, metaInner, model, crashed, ops: count };
}

async function checkSurvivors(
  dataInner: MemoryDevice,
  metaInner: MemoryDevice,
  model: Model,
  what: string,
): Promise<void> {
  const pool = await ThinPool.open(dataInner, metaInner, { commitIntervalMs: 0 });
  const removed = new Set(model.since.filter((o) => o.kind === 'remove').map((o) => o.id));
  for (const id of model.durable.keys()) {
    const exists = await pool.metadata.exists(id);
    assert.ok(exists || removed.has(id), `${what}: device ${id} is gone`);
  }
  for (const id of await pool.metadata.deviceIds()) {
    const buf = Buffer.alloc(SIZE);
    await pool.device(id, SIZE).read(buf, 0);
    const known = model.durable.has(id);
    for (let p = 0; p < SIZE; p += 4) {
      const w = buf.readUInt32LE(p);
      const ok = known ? model.allowed(id, p, w) : model.isolated(id, w);
      if (!ok) {
        assert.fail(`${what}: device ${id} reads 0x${w.toString(16)} at byte ${p}`);
      }
    }
  }
  await writeAfterReopen(pool, what);
  await pool.close();
  assert.deepEqual((await checkMetadata(metaInner)).problems, [], `${what}: thinp check`);
}

/**
 * The reopened pool takes partial writes into every block of every device, and the rest of
 * each newly provisioned block reads as zeros, whatever the crash left in freed blocks.
 */
async function writeAfterReopen(pool: ThinPool, what: string): Promise<void> {
  for (const id of await pool.metadata.deviceIds()) {
    const dev = pool.device(id, SIZE);
    const expected = Buffer.alloc(SIZE);
    await dev.read(expected, 0);
    for (let v = 0; v < BLOCKS; v++) {
      const bytes = tagged(4096, 0xfffe, id);
      await dev.write(bytes, v * B + 8192);
      bytes.copy(expected, v * B + 8192);
    }
    await dev.flush();
    const got = Buffer.alloc(SIZE);
    await dev.read(got, 0);
    assert.ok(got.equals(expected), `${what}: device ${id} after partial writes on reopen`);
  }
}

/** Runs `ops` cut at `perDevice` points of each device's ops; checks what survives each cut. */
async function cutEverywhere(ops: readonly Op[], perDevice: number): Promise<void> {
  const image = path.join(await dir, 'cut.meta');
  const dry = await runUntilCut(ops, undefined);
  assert.equal(dry.crashed, false);
  assert.ok(dry.ops.data > 50 && dry.ops.metadata > 50, JSON.stringify(dry.ops));
  let cuts = 0;
  let crashes = 0;
  for (const device of ['data', 'metadata'] as const) {
    const span = dry.ops[device];
    for (let i = 0; i < perDevice; i++) {
      const cut: Cut = {
        device,
        at: Math.floor(((i + 0.5) * span) / perDevice),
        mode: i % 2 === 0 ? 'drop-all' : 'random-subset',
        seed: 1000 + i,
      };
      const what = `cut at ${device} op ${cut.at} (${cut.mode})`;
      const run = await runUntilCut(ops, cut);
      if (run.crashed) crashes++;
      await checkSurvivors(run.dataInner, run.metaInner, run.model, what);
      // The real thin_check on a quarter of the cuts: it costs a process each.
      if (i % 4 === 0) {
        const bytes = Buffer.alloc(META_BYTES);
        await run.metaInner.read(bytes, 0);
        await writeFile(image, bytes);
        const check = await thinCheck(image);
        assert.equal(check.status, 0, `${what}: thin_check\n${check.stdout}${check.stderr}`);
      }
      cuts++;
    }
  }
  assert.equal(cuts, 2 * perDevice);
  assert.ok(crashes >= cuts * 0.9, `${crashes} of ${cuts} cuts crashed the workload`);
}

describe('the pool across power loss', () => {
  it('keeps every flushed write and shows nothing unflushed as garbage, at hundreds of cuts', async () => {
    await requirePeer('thin_check');
    await cutEverywhere(WORKLOAD, CUTS_PER_DEVICE);
  });

  it('keeps the same guarantees when most writes are done at once, new blocks included', async () => {
    await requirePeer('thin_check');
    atOnce.writes = 0;
    atOnce.provisions = 0;
    await runUntilCut(PAGE_WORKLOAD, undefined);
    assert.ok(atOnce.provisions > 0, `writes at once: ${JSON.stringify(atOnce)}`);
    assert.ok(atOnce.writes > atOnce.provisions, `writes at once: ${JSON.stringify(atOnce)}`);
    await cutEverywhere(PAGE_WORKLOAD, CUTS_PER_DEVICE / 2);
  });
});
