import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { FileDevice } from '../../../src/block/index.js';
import { type Config, loadConfig } from '../../../src/config/index.js';
import { DeviceSet } from '../../../src/driver/index.js';
import { ThinPool } from '../../../src/pool/index.js';
import {
  BadInputError,
  BusyError,
  ExistsError,
  NoSpaceError,
  NotFoundError,
  type ThinpError,
} from '../../../src/util/index.js';
import { requirePeer, thinCheck } from '../../support/peers.js';
import { tempDir } from '../../support/temp.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const B = 64 * KiB;
const dir = await tempDir('thinp-device-set-');
let roots = 0;

/** A fresh root with a small loop-mode pool's options. */
function config(...opts: string[]): Promise<Config> {
  return loadConfig({
    root: path.join(dir, `root-${++roots}`),
    storageOpts: ['dm.loopdatasize=64M', 'dm.loopmetadatasize=8M', ...opts],
    env: { PATH: '' },
  });
}

async function freshSet(...opts: string[]): Promise<DeviceSet> {
  const c = await config(...opts);
  await mkdir(c.root, { recursive: true });
  return DeviceSet.create(c);
}

function pattern(length: number, seed: number): Buffer {
  const buf = Buffer.alloc(length);
  for (let i = 0; i < length; i++) buf[i] = (i * 13 + seed * 101) & 0xff;
  return buf;
}

async function readJson(file: string): Promise<unknown> {
  return JSON.parse(await readFile(file, 'utf8'));
}

async function assertCheckClean(c: Config): Promise<void> {
  await requirePeer('thin_check');
  const result = await thinCheck(c.layout.metadataLoopFile);
  assert.equal(result.status, 0, result.stderr);
}

function describes(pattern: RegExp) {
  return (err: unknown) => {
    assert.match((err as ThinpError).describe(), pattern);
    return true;
  };
}

describe('DeviceSet: making and opening a pool', () => {
  it('makes the sparse files, thinp.json and deviceset-metadata', async () => {
    const set = await freshSet('dm.blocksize=128K');
    const c = set.config;
    await set.close();
    const data = await FileDevice.open(c.layout.dataLoopFile, { readOnly: true });
    assert.equal(data.size, 64 * MiB);
    assert.ok((await data.allocatedBytes()) < MiB, 'the data file is sparse');
    await data.close();
    const pool = (await readJson(c.layout.poolConfigFile)) as Record<string, unknown>;
    assert.equal(pool.mode, 'loop');
    assert.equal(pool.blockSize, 128 * KiB);
    assert.equal(typeof pool.created, 'string');
    assert.deepEqual(await readJson(path.join(c.layout.metadataDir, 'deviceset-metadata')), {
      next_device_id: 1,
      BaseDeviceUUID: '',
      BaseDeviceFilesystem: '',
    });
    const again = await DeviceSet.open(c);
    assert.equal(again.pool.blockSize, 128 * KiB);
    assert.equal(again.recovered, undefined);
    await again.close();
    await assertCheckClean(c);
  });

  it('sends large writes around the page cache, as dm.uncached_write_min says', async () => {
    const set = await freshSet();
    assert.equal(set.pool.writesUncached(256 * KiB), true, 'the default: 256K');
    assert.equal(set.pool.writesUncached(256 * KiB - 4096), false);
    await set.close();
    const lower = await freshSet('dm.uncached_write_min=64K');
    assert.equal(lower.pool.writesUncached(64 * KiB), true);
    await lower.close();
    const none = await freshSet('dm.uncached_write_min=0');
    assert.equal(none.pool.writesUncached(MiB), false, '0: every write cached');
    await none.close();
  });

  it('never overwrites an existing pool', async () => {
    const set = await freshSet();
    await set.close();
    await assert.rejects(DeviceSet.create(set.config), ExistsError);
    await rm(set.config.layout.poolConfigFile);
    await assert.rejects(
      DeviceSet.create(set.config),
      describes(/already holds a data and a metadata file .*never overwritten; use it/),
    );
  });

  it('reports a half-made pool with the fix', async () => {
    const c = await config();
    await mkdir(path.dirname(c.layout.dataLoopFile), { recursive: true });
    await writeFile(c.layout.dataLoopFile, '');
    const halfMade = describes(
      /a half-made pool is at .*: .*data exists but .*metadata does not; if it holds nothing you need, remove .*devicemapper and .*thinp\.json, then run 'thinp pool create' again/,
    );
    await assert.rejects(DeviceSet.create(c), halfMade);
    await assert.rejects(DeviceSet.open(c), describes(/half-made pool .*metadata is missing/));
    await writeFile(c.layout.metadataLoopFile, Buffer.alloc(MiB));
    await assert.rejects(DeviceSet.open(c), describes(/metadata is blank/));
    await assert.rejects(DeviceSet.create(c), describes(/metadata is blank/));
  });

  it('makes a pool in direct mode on the given devices (files here)', async () => {
    const dataDev = path.join(dir, 'direct-data');
    const metaDev = path.join(dir, 'direct-meta');
    await writeFile(dataDev, Buffer.alloc(0));
    await writeFile(metaDev, Buffer.alloc(0));
    const { truncate } = await import('node:fs/promises');
    await truncate(dataDev, 32 * MiB);
    await truncate(metaDev, 4 * MiB);
    const c = await loadConfig({
      root: path.join(dir, 'direct-root'),
      storageOpts: [`dm.datadev=${dataDev}`, `dm.metadatadev=${metaDev}`],
      env: { PATH: '' },
    });
    await mkdir(c.root, { recursive: true });
    const set = await DeviceSet.create(c);
    assert.deepEqual(set.files, { mode: 'devices', dataFile: dataDev, metadataFile: metaDev });
    assert.equal(set.status().data.totalBlocks, 512);
    await set.createDevice('d', MiB);
    await set.close();
    const again = await DeviceSet.open(c);
    assert.equal(again.get('d').id, 1);
    await again.close();
    await rm(c.layout.poolConfigFile);
    await assert.rejects(DeviceSet.create(c), describes(/metadata holds device files \(d\)/));
    await rm(c.layout.metadataDir, { recursive: true });
    await assert.rejects(DeviceSet.create(c), describes(/already holds metadata/));
    const loop = await loadConfig({ root: c.root, env: { PATH: '' } });
    await writeFile(
      loop.layout.poolConfigFile,
      JSON.stringify({ mode: 'devices', blockSize: B, dataFile: dataDev, metadataFile: metaDev }),
    );
    await assert.rejects(
      DeviceSet.open(loop),
      describes(/was created in direct mode on .*direct-data, but the options give loop mode/),
    );
  });

  it('says there is no pool, and how to make one', async () => {
    const c = await config();
    await assert.rejects(DeviceSet.open(c), (err: unknown) => {
      assert.ok(err instanceof NotFoundError);
      assert.match(err.describe(), /there is no pool at .*; create one with 'thinp pool create'/);
      return true;
    });
  });
});

describe('DeviceSet: devices', () => {
  it('creates, snapshots, lists and removes named devices', async () => {
    const set = await freshSet();
    const a = await set.createDevice('a', 16 * MiB);
    assert.deepEqual(
      { name: a.name, id: a.id, size: a.size, origin: a.origin },
      { name: 'a', id: 1, size: 16 * MiB, origin: undefined },
    );
    const data = pattern(3 * B, 1);
    await set.open('a').write(data, 0);
    await set.release('a');
    const snap = await set.createSnapshot('a-snap', 'a');
    assert.equal(snap.size, 16 * MiB);
    assert.equal(snap.id, 2);
    const list = await set.list();
    assert.deepEqual(
      list.map((d) => [d.name, d.id, d.mappedBytes, d.origin]),
      [
        ['a', 1, 3 * B, null],
        ['a-snap', 2, 3 * B, 'a'],
      ],
    );
    assert.equal(await set.removeDevice('a'), 'removed');
    assert.throws(() => set.get('a'), NotFoundError);
    const buf = Buffer.alloc(3 * B);
    await set.open('a-snap').read(buf, 0);
    await set.release('a-snap');
    assert.deepEqual(buf, data, 'the snapshot outlives its origin');
    assert.deepEqual(
      (await set.list()).map((d) => [d.name, d.exclusiveBytes, d.origin]),
      [['a-snap', 3 * B, null]],
    );
    await set.close();
    await assertCheckClean(set.config);
  });

  it('writes the device files in Docker fields, and reopens them', async () => {
    const set = await freshSet();
    await set.createDevice('disk', 8 * MiB);
    await set.createSnapshot('copy', 'disk');
    const file = path.join(set.config.layout.metadataDir, 'copy');
    assert.deepEqual(await readJson(file), {
      device_id: 2,
      size: 8 * MiB,
      transaction_id: 2,
      initialized: true,
      deleted: false,
      origin: 'disk',
    });
    assert.equal(set.status().transactionId, 2);
    await set.close();
    const again = await DeviceSet.open(set.config);
    assert.deepEqual(again.get('copy'), {
      name: 'copy',
      id: 2,
      size: 8 * MiB,
      origin: 'disk',
      transactionId: 2,
      initialized: true,
      parent: undefined,
    });
    await again.close();
  });

  it('records layers, setup state, growth and the base filesystem, and reopens them', async () => {
    const set = await freshSet();
    await set.createDevice('base', 8 * MiB, { initialized: false });
    assert.equal(set.get('base').initialized, false);
    await set.markInitialized('base');
    await set.growDevice('base', 16 * MiB);
    await assert.rejects(set.growDevice('base', 8 * MiB), /cannot shrink/);
    await set.createSnapshot('l1', 'base', { parent: '' });
    await set.createSnapshot('l2', 'l1', { parent: 'l1', size: 32 * MiB });
    await assert.rejects(
      set.createSnapshot('l3', 'l2', { size: 16 * MiB }),
      /cannot be smaller than it \(33554432 bytes\)/,
    );
    await set.setBaseFilesystem({ uuid: 'abc-123', filesystem: 'xfs' });
    const dir = set.config.layout.metadataDir;
    assert.deepEqual(await readJson(path.join(dir, 'deviceset-metadata')), {
      next_device_id: 4,
      BaseDeviceUUID: 'abc-123',
      BaseDeviceFilesystem: 'xfs',
    });
    assert.equal(((await readJson(path.join(dir, 'l2'))) as { parent: string }).parent, 'l1');
    await set.close();
    const again = await DeviceSet.open(set.config);
    assert.deepEqual(again.baseFilesystem, { uuid: 'abc-123', filesystem: 'xfs' });
    assert.equal(again.get('base').size, 16 * MiB);
    assert.equal(again.get('base').initialized, true);
    assert.equal(again.get('l1').parent, '');
    assert.equal(again.get('l2').size, 32 * MiB);
    assert.deepEqual(
      again.held().map((d) => [d.name, d.parent, d.deleted]),
      [
        ['base', undefined, false],
        ['l1', '', false],
        ['l2', 'l1', false],
      ],
    );
    await again.close();
  });

  it('takes ids from next_device_id, skipping ids the pool already has', async () => {
    const set = await freshSet();
    await set.createDevice('one', MiB);
    await set.pool.createThin(2);
    await set.pool.createThin(3);
    const next = await set.createDevice('two', MiB);
    assert.equal(next.id, 4);
    await set.removeDevice('one');
    assert.equal((await set.createDevice('three', MiB)).id, 5, 'ids are not reused at once');
    await set.close();
    const file = path.join(set.config.layout.metadataDir, 'deviceset-metadata');
    assert.equal(((await readJson(file)) as { next_device_id: number }).next_device_id, 6);
    const again = await DeviceSet.open(set.config);
    assert.equal((await again.createDevice('four', MiB)).id, 6);
    await again.close();
  });

  it('refuses names that are not file names, naming the rule', async () => {
    const set = await freshSet();
    const cases: [string, RegExp][] = [
      ['', /is empty/],
      ['a/b', /contains '\/'/],
      ['.', /is a folder name/],
      ['..', /is a folder name/],
      ['x'.repeat(256), /is 256 bytes long, more than 255/],
      ['é'.repeat(128), /is 256 bytes long/],
      ['tab\there', /contains a control character/],
      ['.hidden', /starts with '\.'/],
      ['transaction-metadata', /is one of thinp's own files/],
    ];
    for (const [name, rule] of cases) {
      await assert.rejects(set.createDevice(name, MiB), (err: unknown) => {
        assert.ok(err instanceof BadInputError, name);
        assert.match(err.message, rule);
        assert.match(err.describe(), /a name is 1 to 255 bytes, printable/);
        return true;
      });
    }
    await set.createDevice('x'.repeat(255), MiB);
    await set.createDevice('sha256:0a1b-layer_2', MiB);
    await assert.rejects(set.createDevice('sha256:0a1b-layer_2', MiB), ExistsError);
    await assert.rejects(set.createSnapshot('s', 'nope'), NotFoundError);
    await assert.rejects(set.createDevice('odd', 1000), /1000 bytes cannot be made/);
    await set.close();
  });

  it('refuses new devices below dm.min_free_space, until the pool grows', async () => {
    const set = await freshSet('dm.loopdatasize=4M');
    await set.createDevice('fill', 8 * MiB);
    await set.open('fill').write(pattern(62 * B, 2), 0);
    await set.release('fill');
    await assert.rejects(set.createDevice('more', MiB), (err: unknown) => {
      assert.ok(err instanceof NoSpaceError);
      assert.equal(err.space, 'data');
      assert.equal(
        err.describe(),
        "pool is 97% full (dm.min_free_space=10%): refusing to create device; grow it with 'thinp pool resize'",
      );
      return true;
    });
    await assert.rejects(set.createSnapshot('snap', 'fill'), /refusing to create snapshot/);
    await set.resizeData(8 * MiB);
    assert.equal(set.status().data.totalBlocks, 128);
    await set.createSnapshot('snap', 'fill');
    await assert.rejects(set.resizeData(4 * MiB), /cannot shrink/);
    await set.close();
    await assertCheckClean(set.config);
  });

  it('counts exclusive and shared bytes as thin_ls does', async () => {
    const set = await freshSet();
    await set.createDevice('base', 16 * MiB);
    await set.open('base').write(pattern(4 * B, 3), 0);
    await set.createSnapshot('snap', 'base');
    await set.open('base').write(pattern(4 * KiB, 4), B + 100);
    await set.open('snap').write(pattern(2 * B, 5), 10 * B);
    const usage = Object.fromEntries(
      (await set.list()).map((d) => [d.name, [d.mappedBytes, d.exclusiveBytes, d.sharedBytes]]),
    );
    assert.deepEqual(usage, {
      base: [4 * B, 1 * B, 3 * B],
      snap: [6 * B, 3 * B, 3 * B],
    });
    await set.close();
  });
});

describe('DeviceSet: busy devices', () => {
  it('defers the removal of a busy device until it is released', async () => {
    const set = await freshSet();
    await set.createDevice('busy', MiB);
    const dev = set.open('busy');
    assert.equal(await set.removeDevice('busy'), 'deferred');
    const file = path.join(set.config.layout.metadataDir, 'busy');
    assert.equal(((await readJson(file)) as { deleted: boolean }).deleted, true);
    assert.equal(set.deferredDeletedCount, 1);
    assert.deepEqual(await set.list(), []);
    assert.throws(() => set.get('busy'), /is being removed/);
    await assert.rejects(set.createDevice('busy', MiB), BusyError);
    // Held, it can still be opened (a user coming back), as a dm device until its last close.
    const again = set.open('busy');
    assert.equal(set.getInUse('busy').name, 'busy');
    await dev.write(Buffer.alloc(512, 1), 0);
    await set.release('busy');
    assert.equal(set.deferredDeletedCount, 1, 'one user still holds it');
    await again.read(Buffer.alloc(512), 0);
    await set.release('busy');
    assert.equal(set.deferredDeletedCount, 0);
    assert.throws(() => set.open('busy'), /there is no device/);
    assert.equal(await set.pool.metadata.exists(1), false);
    await set.close();
    await assertCheckClean(set.config);
  });

  it('finishes a deferred removal at the next open', async () => {
    const set = await freshSet();
    await set.createDevice('held', MiB);
    set.open('held');
    await set.removeDevice('held');
    await set.close();
    const again = await DeviceSet.open(set.config);
    assert.deepEqual(again.finishedRemovals, ['held']);
    assert.equal(await again.pool.metadata.exists(1), false);
    await again.close();
  });

  it('with deferRemovals, keeps them for a user found at start, and finishes the rest', async () => {
    const set = await freshSet();
    await set.createDevice('found', MiB);
    await set.createDevice('unused', MiB);
    set.open('found');
    set.open('unused');
    await set.removeDevice('found');
    await set.removeDevice('unused');
    await set.close();
    const again = await DeviceSet.open(set.config, { deferRemovals: true });
    assert.deepEqual(again.finishedRemovals, []);
    assert.equal(again.deferredDeletedCount, 2);
    again.hold('found');
    assert.deepEqual(await again.finishDeferredRemovals(), ['unused']);
    assert.equal(again.getInUse('found').name, 'found');
    await again.release('found');
    assert.equal(again.deferredDeletedCount, 0);
    assert.equal(await again.pool.metadata.exists(1), false);
    assert.equal(await again.pool.metadata.exists(2), false);
    await again.close();
    await assertCheckClean(set.config);
  });

  it('refuses to remove a busy device without deferred removal', async () => {
    const set = await freshSet('dm.use_deferred_removal=false', 'dm.use_deferred_deletion=false');
    await set.createDevice('busy', MiB);
    set.open('busy');
    await assert.rejects(
      set.removeDevice('busy'),
      describes(/device busy is in use \(opened 1 times\); release it first/),
    );
    await set.release('busy');
    assert.equal(await set.removeDevice('busy'), 'removed');
    await set.close();
  });
});

describe('DeviceSet: transactions', () => {
  /** Does what a device-set operation does, up to the pool's commit, then "crashes". */
  async function crashMidway(
    c: Config,
    intent: { device: string; id: number },
    poolWork: (pool: ThinPool) => Promise<void>,
    files: (dir: string) => Promise<void> = async () => {},
  ): Promise<void> {
    const data = await FileDevice.open(c.layout.dataLoopFile);
    const metadata = await FileDevice.open(c.layout.metadataLoopFile);
    const pool = await ThinPool.open(data, metadata, { commitIntervalMs: 0 });
    const tid = pool.metadata.transactionId;
    await writeFile(
      path.join(c.layout.metadataDir, 'transaction-metadata'),
      JSON.stringify({
        open_transaction_id: tid + 1,
        device_hash: intent.device,
        device_id: intent.id,
      }),
    );
    await poolWork(pool);
    await files(c.layout.metadataDir);
    await pool.commit();
    // No pool.close(), no setTransactionId: the process dies here.
    await data.close();
    await metadata.close();
  }

  it('rolls back a creation cut short after the pool committed it', async () => {
    const set = await freshSet();
    await set.createDevice('keep', MiB);
    await set.close();
    const c = set.config;
    await crashMidway(
      c,
      { device: 'ghost', id: 7 },
      (pool) => pool.createThin(7),
      (metadataDir) =>
        writeFile(
          path.join(metadataDir, 'ghost'),
          JSON.stringify({ device_id: 7, size: MiB, transaction_id: 2 }),
        ),
    );
    const again = await DeviceSet.open(c);
    assert.deepEqual(again.recovered, { transactionId: 2, device: 'ghost', deviceId: 7 });
    assert.equal(await again.pool.metadata.exists(7), false);
    assert.deepEqual(
      (await again.list()).map((d) => d.name),
      ['keep'],
    );
    assert.equal(again.status().transactionId, 2);
    await again.createDevice('next', MiB);
    await again.close();
    await assertCheckClean(c);
    const reopened = await DeviceSet.open(c);
    assert.equal(reopened.recovered, undefined, 'a settled transaction stays settled');
    await reopened.close();
  });

  it('finishes a removal cut short', async () => {
    const set = await freshSet();
    await set.createDevice('gone', MiB);
    await set.createDevice('keep', MiB);
    await set.close();
    await crashMidway(set.config, { device: 'gone', id: 1 }, (pool) => pool.deleteDevice(1));
    const again = await DeviceSet.open(set.config);
    assert.equal(again.recovered?.device, 'gone');
    assert.deepEqual(
      (await again.list()).map((d) => d.name),
      ['keep'],
    );
    await again.close();
    await assertCheckClean(set.config);
  });

  it('leaves a device alone when the open transaction never reached the pool', async () => {
    const set = await freshSet();
    await set.createDevice('keep', MiB);
    await set.close();
    await crashMidway(set.config, { device: 'new', id: 2 }, async () => {});
    const again = await DeviceSet.open(set.config);
    assert.equal(again.recovered?.device, 'new');
    assert.deepEqual(
      (await again.list()).map((d) => [d.name, d.id]),
      [['keep', 1]],
    );
    await again.close();
  });
});

describe('DeviceSet: replacing a device', () => {
  /** `a` (a layer on '' holding pattern 1) and `t`, a snapshot of it that now holds pattern 2. */
  async function pair(): Promise<{ set: DeviceSet; aId: number; tId: number }> {
    const set = await freshSet();
    const a = await set.createDevice('a', 4 * MiB, { parent: '' });
    const dev = set.open('a');
    await dev.write(pattern(B, 1), 0);
    await set.release('a');
    const t = await set.createSnapshot('t', 'a');
    const tdev = set.open('t');
    await tdev.write(pattern(B, 2), 0);
    await set.release('t');
    return { set, aId: a.id, tId: t.id };
  }

  async function assertReplaced(set: DeviceSet, tId: number): Promise<void> {
    const a = set.get('a');
    assert.equal(a.id, tId);
    assert.equal(a.parent, '');
    assert.equal(set.lookup('t'), undefined);
    const buf = Buffer.alloc(B);
    await set.open('a').read(buf, 0);
    await set.release('a');
    assert.deepEqual(buf, pattern(B, 2));
    assert.deepEqual(await set.pool.metadata.deviceIds(), [tId]);
  }

  it('gives a device the replacement thin device and frees the old one', async () => {
    const { set, tId } = await pair();
    await set.replaceDevice('a', 't');
    await assertReplaced(set, tId);
    await set.close();
    await assertCheckClean(set.config);
  });

  it('refuses while either device is open', async () => {
    const { set } = await pair();
    set.open('t');
    await assert.rejects(set.replaceDevice('a', 't'), /device t is in use/);
    await set.release('t');
    await set.close();
  });

  for (const step of ['intent only', 'old removed', 'renamed']) {
    it(`finishes a replacement cut short after: ${step}`, async () => {
      const { set, aId, tId } = await pair();
      const dir = set.config.layout.metadataDir;
      const intent = {
        name: 'a',
        replacement: 't',
        old_device_id: aId,
        initialized: true,
        parent: '',
      };
      await writeFile(path.join(dir, 'replace-metadata'), JSON.stringify(intent));
      const tFile = await readJson(path.join(dir, 't'));
      if (step !== 'intent only') {
        await set.removeDevice('a');
        if (step === 'renamed') {
          await writeFile(
            path.join(dir, 'a'),
            JSON.stringify({ ...(tFile as object), parent: '' }),
          );
        }
      }
      await set.close();
      const again = await DeviceSet.open(set.config);
      assert.deepEqual(again.finishedReplacements, ['a']);
      await assertReplaced(again, tId);
      await again.close();
      await assert.rejects(readFile(path.join(dir, 'replace-metadata')), { code: 'ENOENT' });
      await assertCheckClean(set.config);
    });
  }
});
