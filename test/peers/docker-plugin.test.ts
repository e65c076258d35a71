/**
 * A real dockerd (Debian's docker.io, 20.10) on thinp through the graphdriver plugin: thinp's
 * daemon runs as a process with `--docker-plugin` on a socket of its own under
 * /run/docker/plugins (the plugin's name is the socket's, unique per run), and a private
 * dockerd (own data root, exec root, socket; no networking) uses it as its storage driver.
 * Images are built here from busybox-static as `docker save` tarballs, with whiteouts and an
 * opaque directory; no registry.
 *
 * Checked: load, run, diff, commit, save (and the saved image loaded by a second dockerd on
 * vfs gives the same file tree), rm and rmi give the pool's space back; `docker info` shows
 * thinp's fields; a per-container size; restarts of dockerd and of thinp under running
 * containers; eight containers at once; bad requests to the plugin socket. After all of it:
 * no mounts, loop devices, nbdfuse or relay processes left, and the metadata passes
 * `thin_check` and `thinp check`.
 */

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runThinp } from '../support/cli-process.js';
import { DaemonProcess, requireTool, runToolOk } from '../support/daemon.js';
import { PrivateDockerd } from '../support/dockerd.js';
import { busyboxLayers, dockerSaveTar, tarOf } from '../support/image-builder.js';
import { assertNoLeaks } from '../support/mount-leaks.js';
import { thinCheck } from '../support/peers.js';

// Not tempDir(): its removal would run before this file's own `after`, with dockerd's
// mounts still in place; the `after` below removes the folder last.
const dir = await mkdtemp(path.join(os.tmpdir(), 'thinp-docker-plugin-'));
const root = path.join(dir, 'root');
const pluginName = `thinp-test-${process.pid}`;
const pluginSocket = `/run/docker/plugins/${pluginName}.sock`;
const POOL_OPTS = [
  'dm.loopdatasize=24G',
  'dm.loopmetadatasize=256M',
  'dm.basesize=1G',
  'dm.min_free_space=0%',
];
const IMAGE = 'thinp-test/busybox:layers';
const TOOLS = ['df', 'dd', 'wc', 'sleep'];

/** busyboxLayers plus a layer with the applets these tests run. */
async function imageTarball(file: string): Promise<string> {
  const tools = await tarOf([
    { name: 'bin/', type: 'directory' },
    ...TOOLS.map((a) => ({ name: `bin/${a}`, type: 'symlink' as const, linkname: 'busybox' })),
  ]);
  await writeFile(
    file,
    await dockerSaveTar([...(await busyboxLayers()), tools], { tags: [IMAGE] }),
  );
  return file;
}

let thinp: DaemonProcess;
let docker: PrivateDockerd;

async function startThinp(): Promise<void> {
  thinp = await DaemonProcess.start(root, POOL_OPTS, ['--docker-plugin', pluginSocket]);
}

async function poolUsedBlocks(): Promise<number> {
  const r = await runThinp(['pool', 'status', '--json'], {
    cwd: dir,
    globalArgs: ['--root', root],
  });
  assert.equal(r.status, 0, r.stderr);
  return (JSON.parse(r.stdout) as { data: { usedBlocks: number } }).data.usedBlocks;
}

/** `docker export` of a fresh container of `image`, as a map of path → type, mode, hash. */
async function exportedTree(d: PrivateDockerd, image: string): Promise<Map<string, string>> {
  const id = (await d.dockerOk(['create', '--network', 'none', image, 'true'])).trim();
  const tarFile = path.join(dir, `export-${id}.tar`);
  await d.dockerOk(['export', '-o', tarFile, id]);
  await d.dockerOk(['rm', id]);
  const tar = await requireTool('tar', 'tar');
  const listing = await runToolOk(tar, ['--numeric-owner', '-tvf', tarFile]);
  const tree = new Map<string, string>();
  for (const line of listing.split('\n').filter((l) => l !== '')) {
    const fields = line.split(/\s+/);
    const name = fields.slice(5).join(' ');
    // mode, owner, size and name; mtimes differ between runs of the same image.
    tree.set(name, `${fields[0]} ${fields[1]} ${fields[2]}`);
  }
  const hashes = await runToolOk(tar, ['-xOf', tarFile, 'bin/busybox']);
  tree.set('busybox-sha256', createHash('sha256').update(hashes).digest('hex'));
  return tree;
}

before(async () => {
  await requireTool('dockerd', 'docker.io');
  await startThinp();
  docker = new PrivateDockerd(path.join(dir, 'docker'), {
    storageDriver: pluginName,
    experimental: true,
    storageOpts: ['dm.basesize=1G'],
  });
  await docker.start();
});

after(async () => {
  await docker?.destroy();
  await thinp?.stop();
  await assertNoLeaks(dir);
  const check = await thinCheck(path.join(root, 'devicemapper', 'metadata'));
  assert.equal(check.status, 0, check.stderr);
  const own = await runThinp(['check'], { cwd: dir, globalArgs: ['--root', root] });
  assert.equal(own.status, 0, own.stdout + own.stderr);
  await rm(dir, { recursive: true, force: true });
});

describe('dockerd on thinp', () => {
  test('docker info shows thinp as the storage driver with live devicemapper fields', async () => {
    const info = JSON.parse(await docker.dockerOk(['info', '--format', '{{json .}}'])) as {
      Driver: string;
      DriverStatus: Array<[string, string]>;
    };
    assert.equal(info.Driver, pluginName);
    const status = new Map(info.DriverStatus);
    assert.equal(status.get('Base Device Size'), '1.074GB');
    assert.match(status.get('Backing Filesystem') ?? '', /^(xfs|ext4)$/);
    assert.equal(status.get('Data Space Total'), '25.77GB');
    assert.equal(status.get('Deferred Removal Enabled'), 'true');
    assert.equal(status.get('Data loop file'), path.join(root, 'devicemapper', 'data'));
    const keys = info.DriverStatus.map(([k]) => k);
    assert.deepEqual(keys.slice(0, 4), [
      'Pool Name',
      'Pool Blocksize',
      'Base Device Size',
      'Backing Filesystem',
    ]);
  });

  test('load, run, diff, commit, save: the saved image equals itself loaded on vfs', async () => {
    const before = await poolUsedBlocks();
    await docker.dockerOk(['load', '-i', await imageTarball(path.join(dir, 'image.tar'))]);

    const out = await docker.dockerOk([
      'run',
      '--network',
      'none',
      '--name',
      'writer',
      IMAGE,
      'sh',
      '-c',
      'ls /opt; test ! -e /etc/motd && echo motd-gone; echo hello > /data.txt; rm /opt/c; mkdir /new; cat /data.txt',
    ]);
    assert.deepEqual(out.trim().split('\n'), ['c', 'c-link', 'motd-gone', 'hello']);

    const diff = (await docker.dockerOk(['diff', 'writer'])).trim().split('\n').sort();
    assert.deepEqual(diff, ['A /data.txt', 'A /new', 'C /opt', 'D /opt/c']);

    await docker.dockerOk(['commit', 'writer', 'thinp-test/committed:1']);
    const saved = path.join(dir, 'saved.tar');
    await docker.dockerOk(['save', '-o', saved, 'thinp-test/committed:1']);

    const vfs = new PrivateDockerd(path.join(dir, 'vfs'), { storageDriver: 'vfs' });
    try {
      await vfs.start();
      await vfs.dockerOk(['load', '-i', saved]);
      const onVfs = await exportedTree(vfs, 'thinp-test/committed:1');
      const onThinp = await exportedTree(docker, 'thinp-test/committed:1');
      assert.deepEqual([...onThinp.entries()].sort(), [...onVfs.entries()].sort());
      assert.ok(onThinp.has('data.txt') && !onThinp.has('opt/c') && !onThinp.has('etc/motd'));
    } finally {
      await vfs.destroy();
    }

    await docker.dockerOk(['rm', 'writer']);
    await docker.dockerOk(['rmi', 'thinp-test/committed:1', IMAGE]);
    assert.equal(await poolUsedBlocks(), before, 'rm and rmi give back every block');
  });

  test('docker run --storage-opt size gives a root filesystem of that size', async () => {
    await docker.dockerOk(['load', '-i', await imageTarball(path.join(dir, 'image-size.tar'))]);
    const out = await docker.dockerOk([
      'run',
      '--rm',
      '--network',
      'none',
      '--storage-opt',
      'size=3G',
      IMAGE,
      'df',
      '-k',
      '/',
    ]);
    const blocks = Number(out.trim().split('\n').at(-1)?.split(/\s+/)[1]);
    assert.ok(blocks > 2.8 * 1024 * 1024 && blocks <= 3 * 1024 * 1024, `df says ${blocks} KiB`);
    const small = await docker.docker(['run', '--rm', '--storage-opt', 'size=100M', IMAGE, 'true']);
    assert.notEqual(small.status, 0);
    assert.match(small.stderr, /Container size cannot be smaller than/);
  });

  test('a dockerd restart and a thinp restart keep a running container usable', async () => {
    await docker.dockerOk([
      'run',
      '-d',
      '--network',
      'none',
      '--name',
      'long',
      IMAGE,
      'sh',
      '-c',
      'echo before > /state; sleep 600',
    ]);
    await docker.stop();
    await docker.start();
    await docker.dockerOk(['start', 'long']);
    assert.equal((await docker.dockerOk(['exec', 'long', 'cat', '/state'])).trim(), 'before');

    await thinp.stop();
    await startThinp();
    await docker.dockerOk(['exec', 'long', 'sh', '-c', 'echo after >> /state; sync -f /state']);
    assert.deepEqual(
      (await docker.dockerOk(['exec', 'long', 'cat', '/state'])).trim().split('\n'),
      ['before', 'after'],
    );
    const sizes = await docker.dockerOk(['ps', '-s', '--format', '{{.Names}} {{.Size}}']);
    assert.match(sizes, /^long \d/m);
    await docker.dockerOk(['system', 'df']);
    await docker.dockerOk(['rm', '-f', 'long']);
  });

  test('eight containers at once, each writing 50 MB, then all removed', async () => {
    const names = Array.from({ length: 8 }, (_, i) => `w${i}`);
    await Promise.all(
      names.map((n) =>
        docker.dockerOk(
          [
            'run',
            '--network',
            'none',
            '--name',
            n,
            IMAGE,
            'sh',
            '-c',
            'dd if=/dev/urandom of=/blob bs=1M count=50 2>/dev/null && sync -f /blob && wc -c < /blob',
          ],
          300_000,
        ),
      ),
    );
    for (const n of names) {
      const logs = await docker.dockerOk(['logs', n]);
      assert.equal(logs.trim(), String(50 * 1024 * 1024));
    }
    await docker.dockerOk(['rm', ...names]);
  });

  test('bad requests to the plugin socket get {"Err"} and change nothing', async () => {
    const call = (target: string, body: string | Buffer) =>
      new Promise<{ status: number; json: { Err?: string } }>((resolve, reject) => {
        const req = http.request(
          { socketPath: pluginSocket, path: target, method: 'POST' },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              resolve({
                status: res.statusCode ?? 0,
                json: JSON.parse(Buffer.concat(chunks).toString() || '{}') as { Err?: string },
              }),
            );
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    const unknown = await call('/GraphDriver.Explode', '{}');
    assert.equal(unknown.status, 404);
    assert.match(unknown.json.Err ?? '', /no plugin endpoint/);
    assert.match((await call('/GraphDriver.Get', '{"ID":')).json.Err ?? '', /not JSON/);
    assert.match(
      (await call('/GraphDriver.Get', JSON.stringify({ ID: 'no-such-layer' }))).json.Err ?? '',
      /no-such-layer/,
    );
    assert.equal(
      (await call('/GraphDriver.Put', JSON.stringify({ ID: 'no-such-layer' }))).status,
      500,
    );

    const id = 'thinp-test-malicious';
    assert.equal((await call('/GraphDriver.Create', JSON.stringify({ ID: id }))).status, 200);
    const lonelyPut = await call('/GraphDriver.Put', JSON.stringify({ ID: id }));
    assert.equal(lonelyPut.status, 500, 'a Put without a Get');
    assert.match(lonelyPut.json.Err ?? '', /not mounted/);
    const evil = await tarOf([
      { name: 'ok.txt', content: 'fine\n' },
      { name: '../escape.txt', content: 'outside\n' },
    ]);
    const applied = await call(`/GraphDriver.ApplyDiff?id=${id}&parent=`, evil);
    assert.equal(applied.status, 500);
    assert.match(applied.json.Err ?? '', /escape\.txt/);
    const changes = await call('/GraphDriver.Changes', JSON.stringify({ ID: id }));
    assert.equal(changes.status, 200);
    assert.deepEqual((changes.json as { Changes?: unknown[] }).Changes ?? [], []);
    assert.equal((await call('/GraphDriver.DiffSize', JSON.stringify({ ID: id }))).status, 200);
    assert.equal((await call('/GraphDriver.Remove', JSON.stringify({ ID: id }))).status, 200);
  });
});
