/**
 * Images and containers end to end, on a real daemon in this process (real xfs layers
 * mounted through nbdfuse + losetup), driven through the `thinp` CLI as a user would:
 * `image load` of a docker save tarball of busybox layers (whiteouts, an opaque folder, a
 * hard link, a fifo), `container create`, `container mount`, a program run in it with
 * `chroot`, files changed, `container commit`, `image save`; then the saved image, unpacked
 * layer by layer on plain directories, must equal the reference: the same tars and the same
 * changes on plain directories. Removing everything gives the pool back to the base device.
 *
 * This process serves the layers, so everything done inside a mounted tree runs in a child
 * process (chroot, sh); trees are only read here once unpacked on plain directories.
 */

import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, afterEach, describe, it } from 'node:test';
import { BadImageArchiveError } from '../../src/graph/index.js';
import { thinp } from '../support/cli.js';
import {
  DAEMON_POOL_OPTS,
  type InProcessDaemon,
  requireTool,
  runToolOk,
  startInProcess,
} from '../support/daemon.js';
import { busyboxLayers, dockerSaveTar, ociLayoutTar, tarOf } from '../support/image-builder.js';
import { bufferLayer, readArchive, unpackLayers } from '../support/image-reference.js';
import { assertNoLeaks } from '../support/mount-leaks.js';
import { thinCheck } from '../support/peers.js';
import { tempDir } from '../support/temp.js';
import { assertSameTree } from '../support/tree-snapshot.js';

const dir = await tempDir('thinp-images-');
const layers = await busyboxLayers();
const running = new Set<InProcessDaemon>();
let counter = 0;

async function daemonOn(root: string): Promise<InProcessDaemon> {
  const d = await startInProcess(root, [...DAEMON_POOL_OPTS, 'dm.basesize=512M']);
  running.add(d);
  return d;
}

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

function fresh(name: string): string {
  counter++;
  return path.join(dir, `${name}${counter}`);
}

/** `thinp --root root args`, which must succeed; its stdout. */
async function cli(root: string, ...args: string[]): Promise<string> {
  const r = await thinp(['--root', root, ...args], { cwd: dir, env: { PATH: process.env.PATH } });
  assert.equal(r.status, 0, `thinp ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** The changes a user makes in the container, and in the reference directory. */
const CHANGES = [
  'set -e',
  'echo hello > /etc/greeting',
  'rm /etc/group',
  'mkdir -p /srv/new',
  'echo data > /srv/new/file',
  'chmod 0640 /srv/new/file',
  'rm /opt/c-link',
  'ln -s /etc/passwd /srv/pw',
  'echo more >> /etc/passwd',
  'rm /srv/pipe',
].join('\n');

async function chroot(root: string, script: string): Promise<string> {
  return runToolOk(await requireTool('chroot', 'coreutils'), [root, '/bin/sh', '-c', script]);
}

/** Bytes of data the pool uses, and the bytes the base device maps. */
async function poolUse(d: InProcessDaemon): Promise<{ used: number; base: number }> {
  const set = d.handle.deviceSet;
  const data = set.status().data;
  const base = (await set.list()).find((x) => x.name === 'base');
  return { used: data.usedBlocks * data.blockSize, base: base?.mappedBytes ?? -1 };
}

describe('images and containers', () => {
  it('loads a docker save tarball, runs busybox in a container, commits and saves an image equal to the reference', async () => {
    const root = fresh('root');
    const archive = path.join(dir, 'busybox.tar');
    await writeFile(archive, await dockerSaveTar(layers, { tags: ['busybox-test:1'] }));
    const d = await daemonOn(root);

    assert.equal(await cli(root, 'image', 'load', '-i', archive), 'Loaded image: busybox-test:1\n');
    const listed = JSON.parse(await cli(root, 'image', 'list', '--json'));
    assert.equal(listed.length, 1);
    assert.equal(listed[0].layers.length, 3);
    assert.deepEqual(listed[0].tags, ['busybox-test:1']);

    const id = (
      await cli(root, 'container', 'create', '--image', 'busybox-test:1', '--name', 'c1')
    ).trim();
    assert.match(id, /^[0-9a-f]{64}$/);
    const mounted = (await cli(root, 'container', 'mount', 'c1')).trim();
    assert.equal(mounted, path.join(root, 'mnt', id, 'rootfs'));
    assert.equal(
      await chroot(mounted, 'echo ran in $(busybox uname -s); cat /etc/hostname; ls -a /etc'),
      'ran in Linux\n.\n..\ngroup\nhostname\nhosts\nmtab\npasswd\nresolv.conf\n',
    );
    await chroot(mounted, CHANGES);
    await cli(root, 'container', 'unmount', 'c1');

    const diff = await cli(root, 'container', 'diff', 'c1');
    assert.deepEqual(diff.trim().split('\n').sort(), [
      'A /etc/greeting',
      'A /srv/new',
      'A /srv/new/file',
      'A /srv/pw',
      'C /etc',
      'C /etc/passwd',
      'C /opt',
      'C /srv',
      'D /etc/group',
      'D /opt/c-link',
      'D /srv/pipe',
    ]);

    const committed = (await cli(root, 'container', 'commit', 'c1', 'mine:v1')).trim();
    assert.match(committed, /^sha256:[0-9a-f]{64}$/);
    const saved = path.join(dir, 'saved.tar');
    assert.match(
      await cli(root, 'image', 'save', 'mine:v1', '-o', saved),
      /^Saved: mine:v1 to \/.*saved\.tar \([0-9.]+ ?[kMG]?i?B\)\n$/,
    );

    // The reference: the same tars and the same changes, on plain directories.
    const reference = await unpackLayers(fresh('reference'), layers.map(bufferLayer), {
      root: false,
      mtime: 'none',
    });
    const referenceDir = path.join(dir, `reference${counter}`);
    await chroot(referenceDir, CHANGES);
    const { snapshotTree } = await import('../support/tree-snapshot.js');
    reference.push(await snapshotTree(referenceDir, { root: false, mtime: 'none' }));

    await readArchive(saved, dir, async (images, open) => {
      assert.equal(images.length, 1);
      const [image] = images;
      assert.deepEqual(image?.tags, ['mine:v1']);
      assert.equal(image?.config.digest, committed, 'written byte for byte: the same image id');
      assert.equal(image?.layers.length, 4);
      const got = await unpackLayers(fresh('saved'), open(image as never), {
        root: false,
        mtime: 'none',
      });
      for (const [i, tree] of got.entries()) {
        assertSameTree(tree, reference[i] as never, `layer ${i + 1} of the saved image`);
      }
    });

    const busy = await thinp(['--root', root, 'image', 'remove', 'busybox-test:1'], { cwd: dir });
    assert.equal(busy.status, 1);
    assert.match(
      busy.stderr,
      /^thinp: image [0-9a-f]{12} is used by container c1; remove the container first/,
    );
    await d.handle.images.containers.create('mine:v1', {
      name: 'big',
      size: 768 * 1024 * 1024,
    });
    const bigRoot = await d.handle.images.containers.mount('big');
    const df = await runToolOk(await requireTool('stat', 'coreutils'), [
      '-f',
      '-c',
      '%b %S',
      bigRoot,
    ]);
    const [blocks, blockSize] = df.trim().split(' ').map(Number);
    assert.ok((blocks ?? 0) * (blockSize ?? 0) > 700 * 1024 * 1024, `a 768 MiB filesystem: ${df}`);
    await d.handle.images.containers.unmount('big');
    await d.handle.images.containers.remove('big');
    assert.equal((await cli(root, 'container', 'remove', 'c1')).trim(), 'c1');
    const removedMine = await cli(root, 'image', 'remove', 'mine:v1');
    assert.match(removedMine, /^Untagged: mine:v1\nDeleted: sha256:[0-9a-f]{64} \(1 layers\)\n$/);
    const removedBase = await cli(root, 'image', 'remove', 'busybox-test:1');
    assert.match(removedBase, /\(3 layers\)/);
    assert.deepEqual(JSON.parse(await cli(root, 'image', 'list', '--json')), []);
    assert.deepEqual(
      (await d.handle.deviceSet.list()).map((x) => x.name),
      ['base'],
      'only the base device is left',
    );
    const use = await poolUse(d);
    assert.equal(use.used, use.base, 'the pool uses what the base device maps, no more');
    await finish(d);
  });
});

describe('shared layers', () => {
  it('an OCI layout and a docker save tarball with the same bottom layers share them, and removal keeps what the other uses', async () => {
    const root = fresh('root');
    const oci = path.join(dir, 'oci.tar');
    await writeFile(
      oci,
      await ociLayoutTar(layers.slice(0, 2), { gzipLayers: true, tag: 'oci:1' }),
    );
    const docker = path.join(dir, 'docker.tar');
    await writeFile(docker, await dockerSaveTar(layers, { tags: ['full:1'] }));
    const d = await daemonOn(root);
    const { images } = d.handle.images;
    const [small] = await images.load(createReadStream(oci));
    assert.deepEqual(small?.tags, ['oci:1']);
    assert.equal(small?.created, 2);
    const [full] = await images.load(createReadStream(docker));
    assert.equal(full?.created, 1, 'only the third layer is new');
    const names = async () => (await d.handle.deviceSet.list()).map((x) => x.name).sort();
    assert.equal((await names()).length, 4, 'base and three layers');

    const listing = await images.list();
    const fullListing = listing.find((i) => i.tags.includes('full:1'));
    assert.equal(fullListing?.parent, small?.id, 'the OCI image is the parent of the other');
    const tree = await cli(root, 'image', 'list');
    assert.match(tree, /\n[0-9a-f]{12} +oci:1 +2 .*\n└─ [0-9a-f]{12} +full:1 +3 /);

    const removed = await images.remove('full:1');
    assert.equal(removed.removedLayers.length, 1);
    assert.equal((await names()).length, 3);
    await images.remove('oci:1');
    assert.deepEqual(await names(), ['base']);
    await finish(d);
  });
});

describe('loads that fail', () => {
  it('a layer that escapes its root fails the load, which removes only the layers it made', async () => {
    const root = fresh('root');
    const good = path.join(dir, 'good.tar');
    await writeFile(good, await dockerSaveTar(layers.slice(0, 2), { tags: ['two:1'] }));
    const evil = await tarOf([{ name: 'x/../../escape', content: 'out' }]);
    const bad = path.join(dir, 'bad.tar');
    await writeFile(
      bad,
      await dockerSaveTar([layers[0] as Buffer, layers[2] as Buffer, evil], { tags: ['bad:1'] }),
    );
    const d = await daemonOn(root);
    await cli(root, 'image', 'load', '-i', good);
    const before = (await d.handle.deviceSet.list()).map((x) => x.name).sort();

    const r = await thinp(['--root', root, 'image', 'load', '-i', bad], { cwd: dir });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^thinp: .*escape/);
    assert.deepEqual(
      (await d.handle.deviceSet.list()).map((x) => x.name).sort(),
      before,
      'the layer shared with two:1 stays; the others are gone',
    );
    assert.equal(JSON.parse(await cli(root, 'image', 'list', '--json')).length, 1);
    await finish(d);
  });

  it('a damaged archive is refused before any layer is made', async () => {
    const root = fresh('root');
    const tamper = (name: string, data: Buffer) =>
      name.endsWith('layer.tar') && data.length < 10000
        ? Buffer.concat([data.subarray(0, 100), Buffer.from('x'), data.subarray(101)])
        : data;
    const damaged = path.join(dir, 'damaged.tar');
    await writeFile(damaged, await dockerSaveTar(layers, { tamper }));
    const d = await daemonOn(root);
    const before = (await d.handle.deviceSet.list()).map((x) => x.name);
    await assert.rejects(
      d.handle.images.images.load((await import('node:fs')).createReadStream(damaged)),
      BadImageArchiveError,
    );
    const r = await thinp(['--root', root, 'image', 'load', '-i', damaged], { cwd: dir });
    assert.equal(r.status, 1);
    assert.match(
      r.stderr,
      /layer\.tar in the image archive: the sha256 of the uncompressed layer is sha256:[0-9a-f]{64}, but the archive says/,
    );
    assert.deepEqual(
      (await d.handle.deviceSet.list()).map((x) => x.name),
      before,
    );
    await finish(d);
  });

  it('a layer an interrupted operation left is removed when the daemon starts again', async () => {
    const root = fresh('root');
    const archive = path.join(dir, 'one.tar');
    await writeFile(archive, await dockerSaveTar(layers.slice(0, 1), { tags: ['one:1'] }));
    let d = await daemonOn(root);
    await cli(root, 'image', 'load', '-i', archive);
    // What a crash in the middle of a load leaves: an intent, and the layer it names.
    const { GraphRecords } = await import('../../src/graph/image-records.js');
    const records = await GraphRecords.open(root);
    const [one] = await records.images();
    await records.beginIntent('image load', ['f'.repeat(64)]);
    await d.handle.layers.create('f'.repeat(64), one?.layers[0]?.layer);
    await finish(d);

    d = await daemonOn(root);
    assert.ok(
      d.logs.some((l) => l.includes('images-settled')),
      'the daemon says what it settled',
    );
    assert.deepEqual(
      (await d.handle.deviceSet.list()).map((x) => x.name).sort(),
      ['base', one?.layers[0]?.layer].sort(),
    );
    assert.equal((await records.intents()).length, 0);
    await finish(d);
  });
});
