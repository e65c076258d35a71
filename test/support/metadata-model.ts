/**
 * A plain in-memory model of a pool's mappings, and the driver that applies random
 * operations to both the model and a real PoolMetadata, checking each step.
 */

import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { PoolMetadata } from '../../src/thin/index.js';

export type Mappings = Map<number, number>;

export class MetadataModel {
  devices = new Map<number, Mappings>();

  clone(): MetadataModel {
    const m = new MetadataModel();
    for (const [id, maps] of this.devices) m.devices.set(id, new Map(maps));
    return m;
  }

  /** Every data block some device maps. */
  referencedBlocks(): Set<number> {
    const blocks = new Set<number>();
    for (const maps of this.devices.values()) for (const b of maps.values()) blocks.add(b);
    return blocks;
  }

  ids(): number[] {
    return [...this.devices.keys()].sort((a, b) => a - b);
  }
}

/** One random step; numbers are resolved against the model's state when applied. */
export type Op =
  | { kind: 'create'; id: number }
  | { kind: 'snapshot'; id: number; pick: number }
  | { kind: 'delete'; pick: number }
  | { kind: 'write'; pick: number; vblock: number; count: number }
  | { kind: 'remove'; pick: number; vblock: number }
  | { kind: 'removeRange'; pick: number; vblock: number; length: number }
  | { kind: 'commit' }
  | { kind: 'abort' };

export interface OpOptions {
  /** Virtual blocks are drawn from [0, vblocks). */
  vblocks: number;
}

export function arbOp(options: OpOptions): fc.Arbitrary<Op> {
  const id = fc.oneof(
    { weight: 9, arbitrary: fc.integer({ min: 0, max: 40 }) },
    { weight: 1, arbitrary: fc.constantFrom(2 ** 24 - 1, 1000, 65_536) },
  );
  const pick = fc.nat();
  const vblock = fc.oneof(
    { weight: 9, arbitrary: fc.integer({ min: 0, max: options.vblocks - 1 }) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 2 ** 40 }) },
  );
  return fc.oneof(
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('create' as const), id }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('snapshot' as const), id, pick }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), pick }) },
    {
      weight: 12,
      arbitrary: fc.record({
        kind: fc.constant('write' as const),
        pick,
        vblock,
        count: fc.integer({ min: 1, max: 40 }),
      }),
    },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('remove' as const), pick, vblock }) },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('removeRange' as const),
        pick,
        vblock,
        length: fc.integer({ min: 1, max: 300 }),
      }),
    },
    { weight: 2, arbitrary: fc.constant({ kind: 'commit' as const }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'abort' as const }) },
  );
}

/** Applies operations to the model and the metadata, asserting agreement as it goes. */
export class ModelDriver {
  model = new MetadataModel();
  committed = new MetadataModel();
  private committedBlocks = new Set<number>();
  commits = 0;

  constructor(readonly md: PoolMetadata) {}

  async apply(op: Op): Promise<void> {
    const ids = this.model.ids();
    const picked = (pick: number) => ids[pick % Math.max(ids.length, 1)];
    switch (op.kind) {
      case 'create':
        if (this.model.devices.has(op.id)) return;
        await this.md.createThin(op.id);
        this.model.devices.set(op.id, new Map());
        return;
      case 'snapshot': {
        const origin = picked(op.pick);
        if (origin === undefined || this.model.devices.has(op.id)) return;
        await this.md.createSnapshot(op.id, origin);
        this.model.devices.set(op.id, new Map(this.model.devices.get(origin)));
        return;
      }
      case 'delete': {
        const id = picked(op.pick);
        if (id === undefined) return;
        await this.md.deleteDevice(id);
        this.model.devices.delete(id);
        return;
      }
      case 'write': {
        const id = picked(op.pick);
        if (id === undefined) return;
        const inUse = this.model.referencedBlocks();
        for (let i = 0; i < op.count; i++) await this.write(id, op.vblock + i, inUse);
        return;
      }
      case 'remove': {
        const id = picked(op.pick);
        if (id === undefined) return;
        const maps = this.model.devices.get(id) as Mappings;
        assert.equal(await this.md.removeMapping(id, op.vblock), maps.delete(op.vblock));
        return;
      }
      case 'removeRange': {
        const id = picked(op.pick);
        if (id === undefined) return;
        const maps = this.model.devices.get(id) as Mappings;
        let expected = 0;
        for (const v of [...maps.keys()]) {
          if (v >= op.vblock && v < op.vblock + op.length) {
            maps.delete(v);
            expected++;
          }
        }
        assert.equal(await this.md.removeRange(id, op.vblock, op.vblock + op.length), expected);
        return;
      }
      case 'commit':
        await this.commit();
        return;
      case 'abort':
        await this.md.abort();
        this.model = this.committed.clone();
        await this.verify();
        return;
    }
  }

  /** A write as the pool does it: provision when unmapped, copy when shared. */
  private async write(id: number, vblock: number, inUse: Set<number>): Promise<void> {
    const maps = this.model.devices.get(id) as Mappings;
    const mapping = await this.md.lookup(id, vblock);
    assert.equal(mapping?.dataBlock, maps.get(vblock), `lookup of ${id}:${vblock}`);
    if (mapping !== undefined && !mapping.shared) return;
    const block = await this.md.allocDataBlock();
    assert.ok(
      !inUse.has(block) && !this.committedBlocks.has(block),
      `data block ${block} was handed out while still referenced`,
    );
    await this.md.insertMapping(id, vblock, block);
    maps.set(vblock, block);
    inUse.add(block);
  }

  async commit(): Promise<void> {
    await this.md.commit();
    this.committed = this.model.clone();
    this.committedBlocks = this.committed.referencedBlocks();
    this.commits++;
    await this.verify();
  }

  /** The metadata says exactly what the model says. */
  verify(): Promise<void> {
    return assertMatches(this.md, this.model);
  }
}

/** `md` holds exactly the devices and mappings of `model`. */
export async function assertMatches(md: PoolMetadata, model: MetadataModel): Promise<void> {
  assert.deepEqual(await md.deviceIds(), model.ids());
  for (const [id, maps] of model.devices) {
    const seen: Array<[number, number]> = [];
    await md.walkMappings(id, (vblock, dataBlock) => {
      seen.push([vblock, dataBlock]);
    });
    const want = [...maps.entries()].sort((a, b) => a[0] - b[0]);
    assert.deepEqual(seen, want, `mappings of device ${id}`);
    assert.equal(await md.mappedBlocks(id), maps.size, `mapped_blocks of ${id}`);
  }
  assert.equal(
    md.dataUsage.usedBlocks,
    model.referencedBlocks().size,
    'data blocks in use = distinct blocks the model maps',
  );
}
