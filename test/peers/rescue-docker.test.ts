/**
 * `thinp rescue docker` on a legacy Docker devicemapper root built here with the real tools
 * (mkfs.ext4 -d, mkfs.xfs -p, thin_restore; see test/support/legacy-docker-root.ts): a
 * three-layer busybox image and a container on it (ext4, snapshots sharing their origin's
 * blocks), and a one-layer image on xfs. `list` gives the names and the mapped sizes;
 * `export` gives exactly the trees put in; `save` gives a tarball a private dockerd loads
 * and runs; nothing of the source changes; a root with one damaged metadata block is read
 * through a repair that reports the loss; bad input fails with thinp's message.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { cp, mkdir, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { applyLayer } from '../../src/archive/index.js';
import { thinp } from '../support/cli.js';
import { requireTool, runToolOk, startInProcess } from '../support/daemon.js';
import { PrivateDockerd } from '../support/dockerd.js';
import { APPLETS, busyboxLayers, imageConfigOf } from '../support/image-builder.js';
import {
  BLOCK,
  type BuiltDevice,
  chainIdsOf,
  type DeviceSpec,
  sha256,
  writeContainers,
  writeDeviceRecords,
  writeImageStore,
  writeLegacyPool,
} from '../support/legacy-docker-root.js';
import { pathedDevices } from '../support/metadata-paths.js';
import { assertNoLeaks, findLeaks } from '../support/mount-leaks.js';
import { tempDir } from '../support/temp.js';
import { assertSameTree, snapshotTree } from '../support/tree-snapshot.js';

const dir = await tempDir('thinp-rescue-docker-');
const root = path.join(dir, 'docker');
const trees = path.join(dir, 'trees');
const work = path.join(dir, 'work');
const MiB = 1024 * 1024;
const hash = (name: string) => sha256(name).slice('sha256:'.length);
const H = {
  l1: hash('layer 1'),
  l2: hash('layer 2'),
  l3: hash('layer 3'),
  init: `${hash('container')}-init`,
  rw: hash('container'),
  xf: hash('xfs layer'),
};
const CONTAINER = hash('the container id');
let built: Map<string, BuiltDevice>;
let bbId: string;
let xfId: string;

/** `thinp rescue docker ARGS` on `dockerRoot`, in this process. */
function rescue(args: readonly string[], dockerRoot = root) {
  return thinp(['rescue', 'docker', '--work-dir', work, '--docker-root', dockerRoot, ...args], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '' },
  });
}

const treeOf = (name: string) => path.join(trees, name);

/** A device tree: a copy of `from`'s (or an empty rootfs/), with Docker's `id` file. */
async function makeTree(name: string, from: string | undefined, id: string): Promise<string> {
  const t = treeOf(name);
  if (from === undefined) await mkdir(path.join(t, 'rootfs'), { recursive: true });
  else await runToolOk(await requireTool('cp', 'coreutils'), ['-a', treeOf(from), t]);
  await writeFile(path.join(t, 'id'), id, { mode: 0o600 });
  return t;
}

async function buildRoot(): Promise<void> {
  await mkdir(work, { recursive: true });
  await mkdir(path.join(trees, 'base'), { recursive: true });
  const layers = await busyboxLayers();
  const diffIds = layers.map((l) => sha256(l));
  const ext = ['l1', 'l2', 'l3'] as const;
  for (const [i, name] of ext.entries()) {
    const t = await makeTree(name, ext[i - 1], H[name]);
    await applyLayer(path.join(t, 'rootfs'), Readable.from([layers[i] as Buffer]));
  }
  // The init layer (Docker's init files) and the container's own changes.
  const init = path.join(await makeTree('init', 'l3', H.init), 'rootfs');
  for (const d of ['dev', 'proc', 'sys']) await mkdir(path.join(init, d), { recursive: true });
  await writeFile(path.join(init, '.dockerenv'), '');
  await writeFile(path.join(init, 'etc', 'hostname'), '');
  await symlink('/proc/mounts', path.join(init, 'etc', 'mtab'));
  const rw = path.join(await makeTree('rw', 'init', H.rw), 'rootfs');
  await mkdir(path.join(rw, 'data'));
  await writeFile(path.join(rw, 'data', 'note.txt'), 'written in the container\n'.repeat(5000));
  await rm(path.join(rw, 'etc', 'group'));
  // The xfs image: plain files, links and owners (what mkfs.xfs's protofile can hold).
  const xf = path.join(await makeTree('xf', undefined, H.xf), 'rootfs');
  await mkdir(path.join(xf, 'bin'));
  await cp('/bin/busybox', path.join(xf, 'bin', 'busybox'));
  for (const a of APPLETS) await symlink('busybox', path.join(xf, 'bin', a));
  await mkdir(path.join(xf, 'srv', 'owned'), { recursive: true });
  await writeFile(path.join(xf, 'srv', 'owned', 'secret'), 'on xfs\n', { mode: 0o600 });
  await runToolOk('/bin/chown', ['-R', '1000:1000', path.join(xf, 'srv', 'owned')]);

  const dev = (hash: string, tree: string, origin?: string): DeviceSpec => ({
    hash,
    tree: treeOf(tree),
    fs: 'ext4',
    size: 64 * MiB,
    origin,
  });
  const devices: DeviceSpec[] = [
    dev('', 'base'),
    dev(H.l1, 'l1', ''),
    dev(H.l2, 'l2', H.l1),
    dev(H.l3, 'l3', H.l2),
    dev(H.init, 'init', H.l3),
    dev(H.rw, 'rw', H.init),
    { hash: H.xf, tree: treeOf('xf'), fs: 'xfs', size: 320 * MiB },
  ];
  built = await writeLegacyPool(root, work, devices);
  await writeDeviceRecords(root, devices, built, 'ext4');
  const xfsLayer = Buffer.from('xfs layer tar');
  const bbConfig = imageConfigOf(layers);
  const xfConfig = imageConfigOf([xfsLayer], {
    config: { Cmd: ['/bin/cat', '/srv/owned/secret'] },
  });
  [bbId, xfId] = (await writeImageStore(root, [
    {
      config: bbConfig,
      tags: ['bb:1', 'bb:latest'],
      layers: ext.map((name, i) => ({
        diffId: diffIds[i] as string,
        cacheId: H[name],
        size: 1000,
        tar: layers[i],
      })),
    },
    {
      config: xfConfig,
      tags: ['xf:1'],
      layers: [{ diffId: sha256(xfsLayer), cacheId: H.xf, size: 7 }],
    },
  ])) as [string, string];
  await writeContainers(root, [
    {
      id: CONTAINER,
      name: 'web',
      image: bbId,
      parent: chainIdsOf(diffIds).at(-1) as string,
      mountId: H.rw,
    },
  ]);
}

async function digestOf(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

/** The tree of a tar, unpacked by GNU tar as root (owners kept). */
async function unpacked(tarFile: string, name: string, mtime: 'seconds' | 'none' = 'seconds') {
  const out = path.join(dir, 'unpacked', name);
  await mkdir(out, { recursive: true });
  await runToolOk(await requireTool('tar', 'tar'), ['-xpf', tarFile, '-C', out]);
  return snapshotTree(out, { mtime, dirMtimes: false, root: false, xattrs: false });
}

/** mkfs.xfs's protofile gives every file the time of the mkfs: the xfs tree has no mtimes. */
const reference = (name: string, mtime: 'seconds' | 'none' = 'seconds') =>
  snapshotTree(path.join(treeOf(name), 'rootfs'), {
    mtime,
    dirMtimes: false,
    root: false,
    xattrs: false,
  });

describe('thinp rescue docker', { timeout: 240_000 }, () => {
  let sourceDigest: string;
  let dataMtime: number;
  before(async () => {
    await buildRoot();
    sourceDigest = await digestOf(path.join(root, 'devicemapper', 'devicemapper', 'metadata'));
    dataMtime = (await stat(path.join(root, 'devicemapper', 'devicemapper', 'data'))).mtimeMs;
  });
  after(async () => {
    await assertNoLeaks(dir);
  });

  it('lists images with tags and layer chains, containers with names, and mapped sizes', async () => {
    const r = await rescue(['list', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const listing = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(listing), ['images', 'containers']);
    const bb = listing.images.find((i: { id: string }) => i.id === bbId);
    const xf = listing.images.find((i: { id: string }) => i.id === xfId);
    assert.deepEqual(bb.tags, ['bb:1', 'bb:latest']);
    assert.equal(bb.layers.length, 3);
    assert.deepEqual(bb.layers, chainIdsOf((await busyboxLayers()).map((l) => sha256(l))));
    assert.equal(bb.size, (built.get(H.l3) as BuiltDevice).mappedBlocks * BLOCK);
    assert.deepEqual(xf.tags, ['xf:1']);
    assert.equal(xf.size, (built.get(H.xf) as BuiltDevice).mappedBlocks * BLOCK);
    assert.deepEqual(listing.containers, [
      {
        id: CONTAINER,
        name: 'web',
        image: bbId,
        size: (built.get(H.rw) as BuiltDevice).mappedBlocks * BLOCK,
      },
    ]);
    // The snapshots do share blocks with their origins: the sizes count them.
    assert.ok((built.get(H.rw) as BuiltDevice).sharedBlocks > 0);
    const text = await rescue(['list']);
    assert.match(text.stdout, /bb:1,bb:latest/);
    assert.match(text.stdout, /web/);
  });

  it("exports a container's and an xfs image's filesystem exactly as they were put in", async () => {
    const ctr = path.join(dir, 'web.tar');
    const r = await rescue(['export', 'web', '-o', ctr]);
    assert.equal(r.status, 0, r.stderr);
    assertSameTree(await unpacked(ctr, 'web'), await reference('rw'), 'container web');
    const img = path.join(dir, 'xf.tar');
    const x = await rescue(['export', xfId.slice(7, 19), '-o', img]);
    assert.equal(x.status, 0, x.stderr);
    assertSameTree(
      await unpacked(img, 'xf', 'none'),
      await reference('xf', 'none'),
      'image xf:1 (xfs)',
    );
    const byTag = path.join(dir, 'bb.tar');
    assert.equal((await rescue(['export', 'bb:1', '-o', byTag])).status, 0);
    assertSameTree(await unpacked(byTag, 'bb'), await reference('l3'), 'image bb:1');
    await assertNoLeaks(dir);
  });

  it('saves images that a current Docker loads and runs, keeping the id where tar-split allows', async () => {
    const saved = path.join(dir, 'bb-saved.tar');
    const r = await rescue(['save', 'bb:1', '-o', saved]);
    assert.equal(r.status, 0, r.stderr);
    // Every layer replayed from its tar-split record: the same diffIDs, the same image id.
    assert.match(r.stdout, new RegExp(`as ${bbId} `));
    // No tar-split record: the layer is the diff of its tree, so the id is a new one.
    const xfSaved = path.join(dir, 'xf-saved.tar');
    const x = await rescue(['save', 'xf:1', '-o', xfSaved]);
    assert.equal(x.status, 0, x.stderr);
    assert.doesNotMatch(x.stdout, new RegExp(xfId));
    const dockerd = await PrivateDockerd.start(path.join(dir, 'dockerd'));
    try {
      assert.match(await dockerd.run('load', '-i', saved), /Loaded image: bb:1/);
      assert.equal((await dockerd.run('image', 'inspect', '-f', '{{.Id}}', 'bb:1')).trim(), bbId);
      assert.match(await dockerd.run('load', '-i', xfSaved), /Loaded image: xf:1/);
      assert.equal(await dockerd.run('run', '--rm', '--network', 'none', 'xf:1'), 'on xfs\n');
      const out = await dockerd.run(
        'run',
        '--rm',
        '--network',
        'none',
        'bb:1',
        '/bin/cat',
        '/etc/passwd',
      );
      assert.match(out, /^user:x:1000:1000::\/home\/user:\/bin\/sh$/m);
      const ls = await dockerd.run('run', '--rm', '--network', 'none', 'bb:1', '/bin/ls', '/opt');
      assert.deepEqual(ls.trim().split(/\s+/).sort(), ['c', 'c-link']);
    } finally {
      await dockerd.stop();
    }
  });

  it('never writes the source', async () => {
    const meta = path.join(root, 'devicemapper', 'devicemapper', 'metadata');
    assert.equal(await digestOf(meta), sourceDigest);
    const data = path.join(root, 'devicemapper', 'devicemapper', 'data');
    assert.equal((await stat(data)).mtimeMs, dataMtime);
  });

  it('reads a root with a damaged metadata block through a repair, and reports the loss', async () => {
    const damaged = path.join(dir, 'damaged');
    await mkdir(path.join(damaged, 'devicemapper', 'devicemapper'), { recursive: true });
    await cp(
      path.join(root, 'devicemapper', 'metadata'),
      path.join(damaged, 'devicemapper', 'metadata'),
      { recursive: true },
    );
    await cp(path.join(root, 'image'), path.join(damaged, 'image'), { recursive: true });
    await cp(path.join(root, 'containers'), path.join(damaged, 'containers'), { recursive: true });
    await symlink(
      path.join(root, 'devicemapper', 'devicemapper', 'data'),
      path.join(damaged, 'devicemapper', 'devicemapper', 'data'),
    );
    const meta = path.join(damaged, 'devicemapper', 'devicemapper', 'metadata');
    await cp(path.join(root, 'devicemapper', 'devicemapper', 'metadata'), meta);
    // Zero the leaf that holds the xfs device's mappings.
    const xfsDevice = (built.get(H.xf) as BuiltDevice).deviceId;
    const pathed = (await pathedDevices(meta)).find((d) => d.id === xfsDevice);
    const leaf = pathed?.mappings[0]?.path.at(-1) as number;
    const fh = await import('node:fs/promises').then((fs) => fs.open(meta, 'r+'));
    await fh.write(Buffer.alloc(4096), 0, 4096, leaf * 4096);
    await fh.close();
    const before = await digestOf(meta);

    const r = await rescue(['list', '--json'], damaged);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /is damaged/);
    assert.match(r.stderr, new RegExp(`lost: .*device ${H.xf}.*xf:1`));
    const ctr = path.join(dir, 'web-damaged.tar');
    const e = await rescue(['export', 'web', '-o', ctr], damaged);
    assert.equal(e.status, 0, e.stderr);
    assertSameTree(
      await unpacked(ctr, 'web-damaged'),
      await reference('rw'),
      'web from the repaired root',
    );
    assert.equal(await digestOf(meta), before, 'the damaged source was not written');
    // Import takes the repaired metadata, and leaves out an image whose device has no record.
    await rm(path.join(damaged, 'devicemapper', 'metadata', H.xf));
    const target = path.join(dir, 'thinp-from-damaged');
    const imp = await rescue(['import', '--root', target, '--json'], damaged);
    assert.equal(imp.status, 0, imp.stderr);
    const summary = JSON.parse(imp.stdout);
    assert.deepEqual(summary.images, [bbId]);
    assert.deepEqual(summary.containers, [CONTAINER]);
    assert.equal(summary.skipped.length, 1);
    assert.match(
      summary.skipped[0],
      new RegExp(`^image ${xfId}: layer .*: device ${H.xf} has no record$`),
    );
    const check = await thinp(['--root', target, 'check'], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '' },
    });
    assert.equal(check.status, 0, check.stdout + check.stderr);
    await rm(target, { recursive: true });
    // A device whose creation Docker had not committed to the pool is passed over.
    await writeFile(
      path.join(damaged, 'devicemapper', 'metadata', 'transaction-metadata'),
      JSON.stringify({ open_transaction_id: 8, device_hash: H.rw, device_id: 6 }),
    );
    const half = await rescue(['export', 'web', '-o', path.join(dir, 'half.tar')], damaged);
    assert.equal(half.status, 1);
    assert.match(
      half.stderr,
      new RegExp(`device ${H.rw} \\(thin id 6\\) was being made when Docker stopped`),
    );
    assert.match(half.stderr, new RegExp(`the devicemapper driver has no device ${H.rw}`));
    await assertNoLeaks(dir);
  });

  it('reads a direct-lvm root from its data and metadata devices, given by path', async () => {
    const losetup = await requireTool('losetup', 'mount');
    const lvm = path.join(dir, 'lvm');
    await mkdir(path.join(lvm, 'devicemapper'), { recursive: true });
    await cp(
      path.join(root, 'devicemapper', 'metadata'),
      path.join(lvm, 'devicemapper', 'metadata'),
      {
        recursive: true,
      },
    );
    await cp(path.join(root, 'image'), path.join(lvm, 'image'), { recursive: true });
    await cp(path.join(root, 'containers'), path.join(lvm, 'containers'), { recursive: true });
    const loops: string[] = [];
    try {
      for (const f of ['data', 'metadata']) {
        const file = path.join(root, 'devicemapper', 'devicemapper', f);
        loops.push((await runToolOk(losetup, ['-r', '-f', '--show', file])).trim());
      }
      const [data, metadata] = loops as [string, string];
      const devices = ['--data', data, '--metadata', metadata];
      const listed = await rescue(['list', '--json', ...devices], lvm);
      assert.equal(listed.status, 0, listed.stderr);
      const web = JSON.parse(listed.stdout).containers[0];
      assert.equal(web.size, (built.get(H.rw) as BuiltDevice).mappedBlocks * BLOCK);
      const tarFile = path.join(dir, 'web-lvm.tar');
      const e = await rescue(['export', 'web', '-o', tarFile, ...devices], lvm);
      assert.equal(e.status, 0, e.stderr);
      assertSameTree(await unpacked(tarFile, 'web-lvm'), await reference('rw'), 'web from devices');
      const missing = await rescue(
        ['list', '--data', path.join(dir, 'nodev'), '--metadata', metadata],
        lvm,
      );
      assert.equal(missing.status, 1);
      assert.match(missing.stderr, /nodev does not exist; give the pool data device with --data/);
    } finally {
      for (const loop of loops) await runToolOk(losetup, ['-d', loop]);
    }
  });

  it('imports the root into a thinp root whose images, containers and layers thinp uses', async () => {
    const target = path.join(dir, 'thinp-root');
    const r = await rescue(['import', '--root', target, '--json']);
    assert.equal(r.status, 0, r.stderr);
    const summary = JSON.parse(r.stdout);
    assert.deepEqual([...summary.images].sort(), [bbId, xfId].sort());
    assert.deepEqual(summary.skipped, []);
    assert.deepEqual(summary.containers, [CONTAINER]);
    assert.equal(summary.devices[H.rw], CONTAINER);
    assert.equal(summary.tarSplits.length, 3);
    for (const chain of summary.tarSplits) {
      await stat(path.join(target, 'graph', 'tar-split', `${chain.slice(7)}.split.gz`));
    }
    assert.equal(summary.devices[H.init], `${CONTAINER}-init`);
    const at = (args: string[]) =>
      thinp(['--root', target, ...args], { cwd: dir, env: { PATH: process.env.PATH ?? '' } });
    const check = await at(['check']);
    assert.equal(check.status, 0, check.stdout + check.stderr);
    const images = await at(['image', 'list', '--json']);
    assert.equal(images.status, 0, images.stderr);
    const bb = JSON.parse(images.stdout).find((i: { id: string }) => i.id === bbId);
    assert.deepEqual([...bb.tags].sort(), ['bb:1', 'bb:latest']);
    const daemon = await startInProcess(target, ['dm.min_free_space=0%']);
    try {
      const mounted = await at(['layer', 'mount', CONTAINER]);
      assert.equal(mounted.status, 0, mounted.stderr);
      const rootfs = mounted.stdout.trim();
      const got = await snapshotTree(rootfs, {
        mtime: 'seconds',
        dirMtimes: false,
        root: false,
        xattrs: false,
      });
      assertSameTree(got, await reference('rw'), 'the imported container layer');
      assert.equal((await at(['layer', 'unmount', CONTAINER])).status, 0);
    } finally {
      // Layers stay mounted across a stop of the daemon (as Docker's do): unmount them first.
      await daemon.handle.layers.cleanup();
      await daemon.stop();
    }
    assert.equal(
      await digestOf(path.join(root, 'devicemapper', 'devicemapper', 'metadata')),
      sourceDigest,
    );
    const sharing = path.join(dir, 'thinp-shared');
    const shared = await rescue(['import', '--root', sharing, '--share']);
    assert.equal(shared.status, 0, shared.stderr);
    assert.match(
      shared.stdout,
      /Imported 2 images, 1 containers and 7 devices .*\(data file shared\)/,
    );
    const source = await stat(path.join(root, 'devicemapper', 'devicemapper', 'data'));
    assert.equal((await stat(path.join(sharing, 'devicemapper', 'data'))).ino, source.ino);
    await rm(sharing, { recursive: true });
    const again = await rescue(['import', '--root', target]);
    assert.equal(again.status, 1);
    assert.match(
      again.stderr,
      /already holds a thinp root .*; import into a new or empty --root directory/,
    );
  });

  it('cleans what a killed rescue left mounted at the next rescue', async () => {
    const script = path.join(dir, 'killed-rescue.mts');
    const src = path.resolve('src/rescue/index.ts');
    await writeFile(
      script,
      `import { locateRoot, RescueSession } from ${JSON.stringify(src)};
const session = await RescueSession.open(await locateRoot(${JSON.stringify(root)}), ${JSON.stringify(work)});
await session.mount(${JSON.stringify(H.rw)});
process.stdout.write('mounted\\n');
setInterval(() => {}, 1000);
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const [first] = (await once(child.stdout, 'data')) as [Buffer];
      assert.equal(first.toString(), 'mounted\n');
    } finally {
      child.kill('SIGKILL');
      await once(child, 'close').catch(() => undefined);
    }
    assert.ok((await findLeaks(dir)).mounts.length > 0, 'the killed rescue left its mount');
    const loops = await recordedLoops(work);
    assert.ok(loops.length > 0, 'the killed rescue recorded its loop device');
    const r = await rescue(['list']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      r.stderr,
      /removed the mounts and work directory .* of a rescue that was cut short/,
    );
    await assertNoLeaks(dir);
    // The loop device too, whose backing file shows as /nbd once its FUSE mount is detached
    // (no leak check can tell whose such a loop device is).
    for (const { devicePath, fuseFile } of loops) {
      const backing = await readFile(
        `/sys/block/${path.basename(devicePath)}/loop/backing_file`,
        'utf8',
      ).then(
        (t) => t.trim(),
        () => undefined,
      );
      assert.ok(
        backing !== fuseFile && backing !== `/${path.basename(fuseFile)}`,
        `${devicePath} is still attached (${backing})`,
      );
    }
  });

  it('names the problem and the fix for bad input', async () => {
    const notRoot = await rescue(['list'], dir);
    assert.equal(notRoot.status, 1);
    assert.match(
      notRoot.stderr,
      new RegExp(
        `thinp: ${dir} is not a Docker devicemapper root \\(no devicemapper/metadata\\); pass --docker-root DIR`,
      ),
    );
    const unknown = await rescue(['export', 'nosuch', '-o', path.join(dir, 'x.tar')]);
    assert.equal(unknown.status, 1);
    assert.match(
      unknown.stderr,
      /no image or container .* is named nosuch; see 'thinp rescue docker list'/,
    );
    const ctrSave = await rescue(['save', 'web', '-o', path.join(dir, 'x.tar')]);
    assert.equal(ctrSave.status, 1);
    assert.match(ctrSave.stderr, /web is a container, and save writes images/);
    await assert.rejects(stat(path.join(dir, 'x.tar')));
  });
});

/** The loop devices recorded by the rescues' work directories under `parent`. */
async function recordedLoops(parent: string): Promise<{ devicePath: string; fuseFile: string }[]> {
  const found: { devicePath: string; fuseFile: string }[] = [];
  for (const name of await readdir(parent)) {
    const mounts = path.join(parent, name, 'mounts');
    for (const file of await readdir(mounts).catch(() => [] as string[])) {
      if (!file.endsWith('.json')) continue;
      const record = JSON.parse(await readFile(path.join(mounts, file), 'utf8')) as {
        devicePath?: string;
        fuseFile?: string;
      };
      if (record.devicePath && record.fuseFile) {
        found.push({ devicePath: record.devicePath, fuseFile: record.fuseFile });
      }
    }
  }
  return found;
}
