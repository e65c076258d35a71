/**
 * containerd's Mounts racing Remove and Commit on the snapshot service, under fast-check's
 * `scheduler()`: every step of the layer store below (a mount, an unmount, a removal, a
 * snapshot) is a scheduled point, so the scheduler tries the interleavings of the calls.
 * The catalog's writes are scheduled points as well (in memory). The layer store is a model of
 * ThinLayerStore's rules (one lock per layer; a layer
 * removed while mounted is only marked, its device kept until unmounted, as with
 * dm.use_deferred_deletion), driven through the real LayerSnapshotDevices.
 *
 * The snapshots start unmounted, as after a daemon restart that could not adopt their
 * mounts, so a Mounts call has to mount. Whatever the order: once every call has settled, no
 * layer is mounted that is removed or marked for removal (a mount nothing will ever take
 * down), every snapshot still listed is whole, and a Mounts answer for a removed key is
 * containerd's NotFound.
 */

import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import type { ThinLayerStore } from '../../src/graph/index.js';
import { LayerSnapshotDevices, SnapshotCatalog, SnapshotService } from '../../src/plugin/index.js';
import { KeyedLock, NotFoundError } from '../../src/util/index.js';
import { tempDir } from '../support/temp.js';

const dir = await tempDir('thinp-snapshot-mounts-');
const DONE = Promise.resolve();

interface Layer {
  refs: number;
  deleted: boolean;
}

/** ThinLayerStore's rules for what LayerSnapshotDevices calls; each step a scheduled point. */
class LayerModel {
  readonly layers = new Map<string, Layer>();
  private readonly locks = new KeyedLock<string>();

  constructor(private readonly step: (label: string) => Promise<void>) {}

  async createReadWrite(id: string, parent: string | undefined): Promise<void> {
    await this.create(id, parent);
  }

  async create(id: string, parent: string | undefined): Promise<void> {
    await this.locks.run(id, async () => {
      await this.step(`create ${id} from ${parent ?? 'base'}`);
      if (parent !== undefined && this.live(parent) === undefined) throw new Error('no parent');
      this.layers.set(id, { refs: 0, deleted: false });
    });
  }

  references(id: string): number {
    return this.layers.get(id)?.refs ?? 0;
  }

  get(id: string): Promise<string> {
    return this.locks.run(id, async () => {
      const layer = this.live(id);
      if (layer === undefined) throw new NotFoundError(`there is no layer ${id}`);
      if (layer.refs === 0) await this.step(`mount ${id}`);
      layer.refs++;
      return path.join('/mnt', id, 'rootfs');
    });
  }

  put(id: string): Promise<void> {
    return this.locks.run(id, async () => {
      const layer = this.layers.get(id);
      if (layer === undefined || layer.refs === 0) return;
      if (layer.refs === 1) await this.step(`unmount ${id}`);
      layer.refs--;
      if (layer.refs === 0 && layer.deleted) this.layers.delete(id);
    });
  }

  remove(id: string): Promise<string> {
    return this.locks.run(id, async () => {
      const layer = this.layers.get(id);
      if (layer === undefined) return 'absent';
      await this.step(`remove ${id}`);
      if (layer.refs > 0) {
        layer.deleted = true;
        return 'deferred';
      }
      this.layers.delete(id);
      return 'removed';
    });
  }

  async list(): Promise<{ id: string; exclusiveBytes: number }[]> {
    return [...this.layers.keys()].map((id) => ({ id, exclusiveBytes: 0 }));
  }

  private live(id: string): Layer | undefined {
    const layer = this.layers.get(id);
    return layer === undefined || layer.deleted ? undefined : layer;
  }
}

type Call = { kind: 'mounts' | 'remove'; key: string } | { kind: 'commit'; key: string };

test('Mounts never mounts a snapshot again behind its removal', async () => {
  let run = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.scheduler(),
      fc.array(
        fc.record({
          kind: fc.constantFrom<Call['kind']>('mounts', 'mounts', 'remove', 'commit'),
          key: fc.constantFrom('a', 'b'),
        }),
        { minLength: 2, maxLength: 6 },
      ),
      async (s, calls) => {
        let scheduled = false;
        const model = new LayerModel((label) =>
          scheduled ? s.schedule(Promise.resolve(), label) : Promise.resolve(),
        );
        // The catalog's writes go nowhere, each a scheduled point: other calls run while one
        // is under way, as they do while the real one writes its file.
        const catalog = await SnapshotCatalog.open(path.join(dir, `run-${run++}`), {
          write: () => (scheduled ? s.schedule(Promise.resolve(), 'catalog write') : DONE),
        });
        const devices = new LayerSnapshotDevices(model as unknown as ThinLayerStore, '/mnt');
        const service = await SnapshotService.open(catalog, devices);
        await service.prepare('base-key', '', {});
        await service.commit('base', 'base-key', {});
        for (const key of ['a', 'b']) await service.prepare(key, 'base', {});
        // As after a restart that could not adopt the mounts: nothing is mounted.
        for (const layer of model.layers.values()) layer.refs = 0;

        scheduled = true;
        let commits = 0;
        const outcomes = calls.map((c) =>
          s
            .schedule(Promise.resolve(), `${c.kind} ${c.key}`)
            .then(async () => {
              if (c.kind === 'mounts') return service.mounts(c.key);
              if (c.kind === 'remove') return service.remove(c.key);
              return service.commit(`committed-${commits++}`, c.key, {});
            })
            .then(
              () => 'ok',
              (err: unknown) => (err instanceof NotFoundError ? 'not found' : err),
            ),
        );
        const settled = await s.waitFor(Promise.all(outcomes));
        scheduled = false;

        for (const [i, outcome] of settled.entries()) {
          assert.ok(outcome === 'ok' || outcome === 'not found', `${calls[i]?.kind}: ${outcome}`);
        }
        for (const [id, layer] of model.layers) {
          assert.ok(!(layer.deleted && layer.refs > 0), `${id} is removed but stays mounted`);
        }
        const listed = service.list([]).map((i) => i.name);
        for (const name of listed) {
          const record = catalog.get(name);
          assert.ok(record !== undefined && model.layers.has(record.device), `${name} is whole`);
        }
        for (const key of ['a', 'b']) {
          if (listed.includes(key)) continue;
          await assert.rejects(service.mounts(key), NotFoundError);
        }
      },
    ),
    { numRuns: 300 },
  );
});
