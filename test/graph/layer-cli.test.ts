/**
 * `thinp layer …` as a user runs it: the built CLI against a daemon process, and with no
 * daemon running (what works locally, and what says to start the daemon). Mounts outlive a
 * daemon restart (adopted with their reference) and a local command refuses to change a
 * layer such a mount holds. Removing every layer gives the pool's blocks back, down to the
 * base device's, and punches the holes in the data file. No loop device, mount or nbdfuse
 * is left, and thin_check is clean at the end.
 *
 * The daemon is a child process here, so this process may read mounted trees directly.
 */

import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { extract } from 'tar-stream';
import { type ProcessResult, runThinp } from '../support/cli-process.js';
import { DAEMON_POOL_OPTS, DaemonProcess } from '../support/daemon.js';
import { buildTar } from '../support/layer-tar.js';
import { assertNoLeaks } from '../support/mount-leaks.js';
import { thinCheck } from '../support/peers.js';
import { tempDir } from '../support/temp.js';

const dir = await tempDir('thinp-layer-cli-');
const root = path.join(dir, 'root');
const OPTS = [...DAEMON_POOL_OPTS, 'dm.basesize=512M'];
const SEARCH_PATH = [process.env.PATH ?? '', '/usr/sbin', '/sbin'].join(':');
let daemon: DaemonProcess | undefined;

/** Unmounts whatever a failed test left mounted, then stops the daemon. */
after(async () => {
  if (daemon === undefined) return;
  const listed = await thinp(['layer', 'list', '--json']);
  for (const l of listed.status === 0 ? (JSON.parse(listed.stdout) as Listed[]) : []) {
    for (let i = 0; i < l.mounts; i++) await thinp(['layer', 'unmount', l.id]);
  }
  await daemon.stop();
});

function thinp(args: string[], input?: Buffer): Promise<ProcessResult> {
  const globalArgs = ['--root', root, ...OPTS.flatMap((o) => ['--storage-opt', o])];
  return runThinp(args, {
    cwd: dir,
    globalArgs,
    env: { PATH: SEARCH_PATH },
    ...(input === undefined ? {} : { input }),
  });
}

async function ok(args: string[], input?: Buffer): Promise<ProcessResult> {
  const r = await thinp(args, input);
  assert.equal(r.status, 0, `thinp ${args.join(' ')}: ${r.stderr}`);
  return r;
}

async function tarNames(bytes: Buffer): Promise<string[]> {
  const names: string[] = [];
  const unpack = extract();
  unpack.on('entry', (header, body, next) => {
    names.push(`${header.type} ${header.name}`);
    body.resume();
    body.on('end', next);
  });
  const done = new Promise<void>((resolve, reject) => {
    unpack.on('finish', () => resolve());
    unpack.on('error', reject);
  });
  unpack.end(bytes);
  await done;
  return names;
}

interface Listed {
  id: string;
  parent: string | null;
  mounts: number;
  mappedBytes: number;
}

describe('thinp layer', () => {
  it('without a daemon: lists, and says that making the base device needs the daemon', async () => {
    await ok(['pool', 'create']);
    assert.deepEqual(JSON.parse((await ok(['layer', 'list', '--json'])).stdout), []);
    const r = await thinp(['layer', 'create', 'l1']);
    assert.equal(r.status, 1);
    assert.match(
      r.stderr,
      /^thinp: making the base device needs the thinp daemon, which serves the devices; start it with 'thinp daemon'/,
    );
  });

  it('creates, applies, diffs, mounts and removes layers through the daemon', async () => {
    daemon = await DaemonProcess.start(root, OPTS);
    const usedBefore = JSON.parse((await ok(['pool', 'status', '--json'])).stdout).data.usedBlocks;
    await ok(['layer', 'create', 'l1']);
    const tar1 = await buildTar([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/hostname', content: 'thin\n' },
      { name: 'old', content: 'x'.repeat(200_000) },
    ]);
    assert.equal((await ok(['layer', 'apply', 'l1'], tar1)).stdout, '200005\n');
    await ok(['layer', 'create', 'l2', '--parent', 'l1']);
    const tar2 = await buildTar([{ name: '.wh.old' }, { name: 'etc/motd', content: 'hi\n' }]);
    await ok(['layer', 'apply', 'l2'], tar2);
    assert.equal((await ok(['layer', 'changes', 'l2'])).stdout, 'C /etc\nA /etc/motd\nD /old\n');
    const diff = await ok(['layer', 'diff', 'l2']);
    assert.deepEqual(await tarNames(diff.bytes), [
      'directory etc/',
      'file etc/motd',
      'file .wh.old',
    ]);

    const mounted = (await ok(['layer', 'mount', 'l2'])).stdout.trim();
    assert.equal(mounted, path.join(root, 'mnt', 'l2', 'rootfs'));
    assert.equal(await readFile(path.join(mounted, 'etc', 'motd'), 'utf8'), 'hi\n');
    await assert.rejects(stat(path.join(mounted, 'old')), { code: 'ENOENT' });
    const listed = JSON.parse((await ok(['layer', 'list', '--json'])).stdout) as Listed[];
    assert.deepEqual(
      listed.map((l) => [l.id, l.parent, l.mounts]),
      [
        ['l1', null, 0],
        ['l2', 'l1', 1],
      ],
    );
    const table = (await ok(['layer', 'list'])).stdout;
    assert.match(table, /^ID +PARENT +DEVICE +SIZE +MAPPED +EXCLUSIVE +MOUNTS\n/);
    assert.match(table, /^l2 +l1 +\d+ +536\.9MB .* 1\n/m);
    const metadata = JSON.parse((await ok(['layer', 'metadata', 'l2'])).stdout);
    assert.equal(metadata.DeviceSize, String(512 * 1024 * 1024));

    const busy = await thinp(['layer', 'apply', 'l2'], tar2);
    assert.equal(busy.status, 1);
    assert.match(busy.stderr, /^thinp: layer l2 is mounted \(1 references\); unmount it/);

    // The mount outlives a restart of the daemon and is adopted with its reference.
    await daemon.stop();
    daemon = undefined;
    // (No reads from the mount now: they would wait for the daemon to come back.)
    const local = await thinp(['layer', 'remove', 'l2']);
    assert.equal(local.status, 1);
    assert.match(local.stderr, /layer l2 is mounted by a thinp daemon that is not running/);
    const mountLocally = await thinp(['layer', 'mount', 'l1']);
    assert.match(mountLocally.stderr, /^thinp: mounting layer l1 needs the thinp daemon/);
    daemon = await DaemonProcess.start(root, OPTS);
    const adopted = JSON.parse((await ok(['layer', 'list', '--json'])).stdout) as Listed[];
    assert.equal(adopted.find((l) => l.id === 'l2')?.mounts, 1);
    assert.equal(await readFile(path.join(mounted, 'etc', 'motd'), 'utf8'), 'hi\n');
    await ok(['layer', 'unmount', 'l2']);
    await assert.rejects(stat(path.join(mounted, 'etc')), { code: 'ENOENT' });

    // Space: every layer's blocks go back to the pool, and out of the data file.
    const dataFile = path.join(root, 'devicemapper', 'data');
    const allocatedBefore = (await stat(dataFile)).blocks;
    await ok(['layer', 'remove', 'l2']);
    await ok(['layer', 'remove', 'l1']);
    const usedAfter = JSON.parse((await ok(['pool', 'status', '--json'])).stdout).data.usedBlocks;
    const baseMapped = JSON.parse((await ok(['device', 'list', '--json'])).stdout).find(
      (d: { name: string }) => d.name === 'base',
    ).mappedBytes;
    assert.equal(usedAfter * 65536, baseMapped, 'only the base device holds blocks');
    assert.ok(usedBefore <= usedAfter);
    const allocatedAfter = (await stat(dataFile)).blocks;
    assert.ok(
      allocatedAfter < allocatedBefore - 300,
      `holes punched: ${allocatedBefore} → ${allocatedAfter} sectors`,
    );
    await daemon.stop();
    daemon = undefined;
    const check = await thinCheck(path.join(root, 'devicemapper', 'metadata'));
    assert.equal(check.status, 0, check.stderr);
    await assertNoLeaks(dir);
  });
});
