/**
 * The layer store on a real daemon in this process: the base device is a real xfs (or
 * ext4) filesystem made through NBD, layers are snapshots mounted at ROOT/mnt/<id> through
 * nbdfuse + losetup, with Docker's rootfs/ and id file; counts, deferred deletion, sizes,
 * the UUID check at start, base growth, and no leftovers (loop devices, mounts, nbdfuse)
 * after each test; thin_check is clean on the metadata after each daemon.
 *
 * This process serves the devices, so everything done inside a mounted tree runs in a child
 * process (`sh`), never as an fs call of this process.
 */

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, afterEach, describe, it } from 'node:test';
import { extract } from 'tar-stream';
import { UnsafeEntryError } from '../../src/archive/index.js';
import { BaseDeviceMismatchError } from '../../src/graph/index.js';
import {
  DAEMON_POOL_OPTS,
  type InProcessDaemon,
  requireTool,
  runToolOk,
  startInProcess,
} from '../support/daemon.js';
import { buildTar, streamOf } from '../support/layer-tar.js';
import { assertNoLeaks } from '../support/mount-leaks.js';
import { thinCheck } from '../support/peers.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
const dir = await tempDir('thinp-graph-');
let counter = 0;
const running = new Set<InProcessDaemon>();

async function daemonOn(root: string, opts: readonly string[] = []): Promise<InProcessDaemon> {
  const d = await startInProcess(root, [...DAEMON_POOL_OPTS, 'dm.basesize=512M', ...opts]);
  running.add(d);
  return d;
}

/** Unmounts everything, stops the daemon, and checks the metadata with thin_check. */
async function finish(d: InProcessDaemon): Promise<void> {
  running.delete(d);
  try {
    await d.handle.layers.cleanup();
  } finally {
    await d.stop();
  }
  const check = await thinCheck(d.handle.config.layout.metadataLoopFile);
  assert.equal(check.status, 0, `thin_check: ${check.stderr}`);
}

afterEach(async () => {
  for (const d of [...running]) await finish(d).catch(() => undefined);
  await assertNoLeaks(dir);
});
after(async () => {
  for (const d of running) await d.stop().catch(() => undefined);
});

function freshRoot(): string {
  counter++;
  return path.join(dir, `root${counter}`);
}

/** Runs a shell script in a child process (never touch a mounted tree from here). */
async function sh(script: string, ...args: string[]): Promise<string> {
  return runToolOk(await requireTool('sh', 'dash'), ['-c', script, 'sh', ...args]);
}

describe('layer store', () => {
  it('makes a real xfs base device on first need, and layers mounted at ROOT/mnt/ID/rootfs', async () => {
    const d = await daemonOn(freshRoot());
    const { layers, deviceSet } = d.handle;
    await layers.create('l1', undefined);
    const base = deviceSet.get('base');
    assert.equal(base.size, 512 * MiB);
    assert.equal(deviceSet.baseFilesystem.filesystem, 'xfs');
    assert.match(deviceSet.baseFilesystem.uuid, /^[0-9a-f-]{36}$/);
    const metadata = JSON.parse(
      await readFile(path.join(d.root, 'metadata', 'deviceset-metadata'), 'utf8'),
    );
    assert.equal(metadata.BaseDeviceFilesystem, 'xfs');
    assert.equal(metadata.BaseDeviceUUID, deviceSet.baseFilesystem.uuid);
    const status = Object.fromEntries(await layers.status());
    assert.equal(status['Backing Filesystem'], 'xfs');
    assert.equal(status['Base Device Size'], '536.9MB');

    const rootfs = await layers.get('l1');
    assert.equal(rootfs, path.join(d.root, 'mnt', 'l1', 'rootfs'));
    const seen = await sh(
      'stat -c "%a %u %g" "$1/rootfs"; cat "$1/id"; echo; stat -c %a "$1/id"; ' +
        'findmnt -n -o FSTYPE,OPTIONS "$1"; ls -A "$1/rootfs" | wc -l',
      path.dirname(rootfs),
    );
    const [mode, id, idMode, mountLine, entries] = seen.trim().split('\n');
    assert.equal(mode, '755 0 0');
    assert.equal(id, 'l1');
    assert.equal(idMode, '600');
    assert.match(mountLine ?? '', /^xfs\s+\S*nouuid/);
    assert.equal(entries, '0', 'a fresh layer is an empty directory');
    assert.equal(await layers.get('l1'), rootfs, 'a second get counts');
    assert.equal(layers.references('l1'), 2);
    await layers.put('l1');
    assert.equal(layers.references('l1'), 1);
    await sh('echo one > "$1/a"', rootfs);
    await layers.put('l1');
    assert.equal(layers.references('l1'), 0);
    assert.equal(await sh('findmnt -n "$1" || true', path.dirname(rootfs)), '');

    await layers.create('l2', 'l1');
    const root2 = await layers.get('l2');
    assert.equal(await sh('cat "$1/a"; cat "$1/../id"', root2), 'one\nl1');
    await sh('echo two > "$1/a"', root2);
    await layers.put('l2');
    const again = await layers.get('l1');
    assert.equal(await sh('cat "$1/a"', again), 'one\n', 'a child does not change its parent');
    await layers.put('l1');
    assert.deepEqual(
      (await layers.list()).map((l) => [l.id, l.parent]),
      [
        ['l1', null],
        ['l2', 'l1'],
      ],
    );
    const meta = layers.metadata('l2');
    assert.equal(meta.DeviceSize, String(512 * MiB));
    assert.match(meta.DeviceName, /^thinp-\d+:\d+-\d+-l2$/);
    await assert.rejects(layers.create('l2', 'l1'), /device l2 already exists\. Deleted=false/);
    await assert.rejects(layers.create('l3', 'nope'), /there is no layer nope/);
    await assert.rejects(layers.put('l2'), /layer l2 is not mounted/);
    assert.equal(await layers.remove('l2'), 'removed');
    assert.equal(await layers.remove('l2'), 'absent');
    assert.equal(await layers.remove('l1'), 'removed');
    await finish(d);
  });

  it('defers the removal of a mounted layer until its last put', async () => {
    const d = await daemonOn(freshRoot());
    const { layers, deviceSet } = d.handle;
    await layers.create('busy', undefined);
    await layers.get('busy');
    assert.equal(await layers.remove('busy'), 'deferred');
    assert.equal(deviceSet.deferredDeletedCount, 1);
    const status = Object.fromEntries(await layers.status());
    assert.equal(status['Deferred Deleted Device Count'], '1');
    await assert.rejects(layers.get('other'), /there is no layer other/);
    await assert.rejects(layers.create('child', 'busy'), /marked for deferred deletion/);
    await layers.put('busy');
    assert.equal(deviceSet.lookup('busy'), undefined);
    assert.equal(deviceSet.deferredDeletedCount, 0);
    await finish(d);
  });

  it('refuses to remove a mounted layer without deferred deletion', async () => {
    const d = await daemonOn(freshRoot(), ['dm.use_deferred_deletion=false']);
    const { layers } = d.handle;
    await layers.create('held', undefined);
    await layers.get('held');
    await assert.rejects(layers.remove('held'), /layer held is mounted \(1 references\)/);
    await layers.put('held');
    assert.equal(await layers.remove('held'), 'removed');
    await finish(d);
  });

  it('gives a read-write layer a larger size and grows its filesystem', async () => {
    const d = await daemonOn(freshRoot());
    const { layers } = d.handle;
    await layers.create('small', undefined);
    await assert.rejects(
      layers.createReadWrite('tiny', 'small', { size: 256 * MiB }),
      /Container size cannot be smaller than 536\.9MB/,
    );
    await layers.createReadWrite('big', 'small', { size: 1024 * MiB });
    const root = await layers.get('big');
    const bytes = Number(await sh('df -B1 --output=size "$1" | tail -1', root));
    assert.ok(bytes > 900 * MiB, `the filesystem has ${bytes} bytes`);
    await layers.put('big');
    assert.equal(layers.metadata('big').DeviceSize, String(1024 * MiB));
    await finish(d);
  });

  it('checks the base UUID at start, and grows the base when dm.basesize grows', async () => {
    const root = freshRoot();
    let d = await daemonOn(root);
    await d.handle.layers.create('first', undefined);
    const uuid = d.handle.deviceSet.baseFilesystem.uuid;
    await finish(d);

    d = await daemonOn(root, ['dm.basesize=768M']);
    assert.equal(d.handle.deviceSet.get('base').size, 768 * MiB);
    await d.handle.layers.create('second', undefined);
    const r = await d.handle.layers.get('second');
    const bytes = Number(await sh('df -B1 --output=size "$1" | tail -1', r));
    assert.ok(bytes > 700 * MiB, `the base filesystem grew to ${bytes} bytes`);
    await d.handle.layers.put('second');
    assert.equal(d.handle.layers.metadata('first').DeviceSize, String(512 * MiB));
    await finish(d);

    await assert.rejects(
      daemonOn(root, ['dm.basesize=512M']),
      /Base device size cannot be smaller than 805\.3MB/,
    );

    const file = path.join(root, 'metadata', 'deviceset-metadata');
    const record = JSON.parse(await readFile(file, 'utf8'));
    await sh(
      `printf '%s' "$1" > "$2"`,
      JSON.stringify({ ...record, BaseDeviceUUID: 'not-this-one' }),
      file,
    );
    await assert.rejects(daemonOn(root), (err: unknown) => {
      assert.ok(err instanceof BaseDeviceMismatchError);
      assert.match(
        err.message,
        new RegExp(
          `^Base Device UUID and Filesystem verification failed: Current Base Device UUID:${uuid} ` +
            'does not match with stored UUID:not-this-one\\. Possibly using a different thin pool',
        ),
      );
      return true;
    });
  });

  it('applies tars into a scratch snapshot, keeping the layer as it was when one fails', async () => {
    const d = await daemonOn(freshRoot());
    const { layers, deviceSet } = d.handle;
    await layers.create('p', undefined);
    const tar1 = await buildTar([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/passwd', content: 'root:x:0:0\n' },
      { name: 'bin/', type: 'directory' },
      { name: 'bin/sh', content: 'shell', mode: 0o755 },
      { name: 'gone', content: 'soon' },
    ]);
    assert.equal(await layers.applyDiff('p', undefined, streamOf(tar1)), 11 + 5 + 4);
    await layers.create('c', 'p');
    const before = deviceSet.get('c').id;
    const evil = await buildTar([
      { name: 'ok', content: 'fine' },
      { name: '../escape', content: 'out' },
    ]);
    await assert.rejects(layers.applyDiff('c', 'p', streamOf(evil)), UnsafeEntryError);
    assert.equal(deviceSet.get('c').id, before, 'the layer keeps its device');
    assert.equal(deviceSet.lookup('c~apply'), undefined, 'the scratch snapshot is gone');
    const tar2 = await buildTar([
      { name: '.wh.gone' },
      { name: 'etc/passwd', content: 'root:x:0:0\nuser:x:1000:1000\n' },
      { name: 'new', content: 'added' },
    ]);
    await layers.applyDiff('c', 'p', streamOf(tar2));
    const root = await layers.get('c');
    assert.equal(
      await sh('cd "$1" && ls -A | sort | tr "\\n" " "; cat etc/passwd', root),
      'bin etc new root:x:0:0\nuser:x:1000:1000\n',
    );
    await layers.put('c');
    const changes = await layers.changes('c', 'p');
    assert.deepEqual(
      changes.map((c) => `${c.kind} ${c.path}`),
      ['0 /etc', '0 /etc/passwd', '2 /gone', '1 /new'],
    );
    const names: string[] = [];
    const unpack = extract();
    unpack.on('entry', (header, body, next) => {
      names.push(header.name);
      body.resume();
      body.on('end', next);
    });
    const done = new Promise((resolve, reject) => {
      unpack.on('finish', () => resolve(undefined));
      unpack.on('error', reject);
    });
    (await layers.diff('c', 'p')).pipe(unpack);
    await done;
    assert.deepEqual(names, ['etc/', 'etc/passwd', '.wh.gone', 'new']);
    assert.equal(await layers.diffSize('c', 'p'), 'root:x:0:0\nuser:x:1000:1000\n'.length + 5);
    for (let i = 0; i < 50 && layers.references('c') > 0; i++)
      await new Promise((r) => setTimeout(r, 20));
    assert.equal(layers.references('c'), 0, 'the diff stream put its layers back');
    assert.equal(layers.references('p'), 0);
    await finish(d);
  });

  it('makes ext4 with dm.fs=ext4', async () => {
    const d = await daemonOn(freshRoot(), ['dm.fs=ext4', 'dm.basesize=64M']);
    const { layers, deviceSet } = d.handle;
    await layers.create('e', undefined);
    assert.equal(deviceSet.baseFilesystem.filesystem, 'ext4');
    const root = await layers.get('e');
    assert.match(await sh('findmnt -n -o FSTYPE "$1/.."', root), /^ext4/);
    assert.equal(await sh('ls -A "$1/.."| sort | tr "\\n" " "', root), 'id lost+found rootfs ');
    await layers.put('e');
    await finish(d);
  });
});
