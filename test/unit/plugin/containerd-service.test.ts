/**
 * The snapshot service's crash consistency: a change is written to the catalog as an intent
 * (`creating`, `removing`) before its device changes, and `SnapshotService.open` settles
 * every intent a crash left: the device goes, the record goes, and the key can be used
 * again (containerd's devmapper snapshotter answered "already exists" after such a crash).
 * Devices here are directories (test/support/directory-snapshot-devices.ts).
 */

import assert from 'node:assert/strict';
import { access, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { SnapshotCatalog, SnapshotService } from '../../../src/plugin/index.js';
import { DirectorySnapshotDevices } from '../../support/directory-snapshot-devices.js';
import { tempDir } from '../../support/temp.js';

const dir = await tempDir('thinp-snapshot-service-');
const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );
const at = { seconds: 1, nanos: 0 };

test('intents a crash left are settled at open; the keys work again', async () => {
  const catalogDir = path.join(dir, 'catalog');
  const devicesDir = path.join(dir, 'devices');
  const crashed = await SnapshotCatalog.open(catalogDir);
  const committed = crashed.allocateDevice();
  const creating = crashed.allocateDevice();
  const removing = crashed.allocateDevice();
  const record = (name: string, device: string, state: 'ready' | 'creating' | 'removing') => ({
    name,
    parent: '',
    kind: 'committed' as const,
    device,
    created: at,
    updated: at,
    labels: {},
    state,
  });
  await crashed.change([
    record('base', committed, 'ready'),
    { ...record('half-made', creating, 'creating'), kind: 'active' as const, parent: 'base' },
    record('half-gone', removing, 'removing'),
  ]);
  for (const d of [committed, creating, removing])
    await mkdir(path.join(devicesDir, d), { recursive: true });

  const devices = new DirectorySnapshotDevices(devicesDir);
  const service = await SnapshotService.open(await SnapshotCatalog.open(catalogDir), devices);
  assert.deepEqual(
    service.list([]).map((i) => i.name),
    ['base'],
  );
  assert.equal(
    await exists(path.join(devicesDir, creating)),
    false,
    'the half-made device is gone',
  );
  assert.equal(
    await exists(path.join(devicesDir, removing)),
    false,
    'the half-removed device is gone',
  );
  assert.equal(await exists(path.join(devicesDir, committed)), true);
  const mounts = await service.prepare('half-made', 'base', {});
  assert.equal(mounts.length, 1);
  await service.commit('half-gone', 'half-made', {});
  assert.deepEqual(
    service
      .list([])
      .map((i) => `${i.name}:${i.kind}`)
      .sort(),
    ['base:committed', 'half-gone:committed'],
  );
});

test('a device that fails to be made leaves no record behind', async () => {
  const catalog = await SnapshotCatalog.open(path.join(dir, 'failing'));
  const devices = new DirectorySnapshotDevices(path.join(dir, 'failing-devices'));
  devices.create = async () => {
    throw new Error('no space');
  };
  const service = await SnapshotService.open(catalog, devices);
  await assert.rejects(service.prepare('k', '', {}), /no space/);
  assert.deepEqual(service.list([]), []);
  assert.deepEqual(catalog.unsettled(), []);
});
