/**
 * A layer's filesystem that outlives the store's unmount, as containers make them: a bind
 * mount of the layer (containerd's, unmounted lazily later) or a copy of the mount in another
 * mount namespace (a container's, which no mount table of ours shows). The unmount succeeds
 * at once and hands the attachment over; the filesystem keeps working, also across a restart
 * of the daemon while the layer waits for its deferred removal; writes made in the other
 * namespace after our unmount are kept; the layer is not mounted a second time while its
 * filesystem lingers; and once the last foreign mount goes, the device is released and a
 * deferred removal finishes, giving the pool's blocks back. Nothing is left behind.
 *
 * The daemon is a child process, so this process may use the mounted trees directly.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { access, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type ProcessResult, runThinp } from '../support/cli-process.js';
import { DAEMON_POOL_OPTS, DaemonProcess, requireTool, runToolOk } from '../support/daemon.js';
import { assertNoLeaks } from '../support/mount-leaks.js';
import { thinCheck } from '../support/peers.js';

// Not tempDir(): its removal would run before this file's own `after`.
const dir = await mkdtemp(path.join(os.tmpdir(), 'thinp-layer-lingering-'));
const root = path.join(dir, 'root');
const OPTS = [...DAEMON_POOL_OPTS, 'dm.basesize=512M'];
const SEARCH_PATH = [process.env.PATH ?? '', '/usr/sbin', '/sbin'].join(':');
let daemon: DaemonProcess | undefined;
const binds: string[] = [];

interface Listed {
  id: string;
  mounts: number;
  deleted: boolean;
}

function thinp(args: string[]): Promise<ProcessResult> {
  const globalArgs = ['--root', root, ...OPTS.flatMap((o) => ['--storage-opt', o])];
  return runThinp(args, { cwd: dir, globalArgs, env: { PATH: SEARCH_PATH } });
}

async function ok(args: string[]): Promise<string> {
  const r = await thinp(args);
  assert.equal(r.status, 0, `thinp ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const layers = async () => JSON.parse(await ok(['layer', 'list', '--json'])) as Listed[];
const usedBlocks = async () =>
  (JSON.parse(await ok(['pool', 'status', '--json'])) as { data: { usedBlocks: number } }).data
    .usedBlocks;

async function until(what: string, check: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function syncFile(file: string): Promise<void> {
  await runToolOk(await requireTool('sync', 'coreutils'), ['-f', file], { timeoutMs: 60_000 });
}

before(async () => {
  await requireTool('nbdfuse', 'libnbd-bin');
  await requireTool('unshare', 'util-linux');
  daemon = await DaemonProcess.start(root, OPTS);
});

after(async () => {
  for (const b of binds) await runToolOk('umount', ['-l', b]).catch(() => undefined);
  if (daemon !== undefined) {
    for (const l of await layers().catch(() => [])) {
      for (let i = 0; i < l.mounts; i++) await thinp(['layer', 'unmount', l.id]);
    }
    await until('no filesystem lingers', async () =>
      (await layers()).every((l) => !l.deleted),
    ).catch(() => undefined);
    await daemon.stop();
  }
  await assertNoLeaks(dir);
  const check = await thinCheck(path.join(root, 'devicemapper', 'metadata'));
  assert.equal(check.status, 0, check.stderr);
  await rm(dir, { recursive: true, force: true });
});

describe('a layer filesystem that outlives its unmount', () => {
  it('a bind mount keeps working across a restart, and the deferred removal finishes after it', async () => {
    await ok(['layer', 'create', 'base-probe']);
    await ok(['layer', 'remove', 'base-probe']);
    const start = await usedBlocks();
    await ok(['layer', 'create', 'bound']);
    const rootfs = (await ok(['layer', 'mount', 'bound'])).trim();
    await writeFile(path.join(rootfs, 'before.txt'), 'before\n');
    const bind = path.join(dir, 'bind');
    await mkdir(bind);
    await runToolOk('mount', ['--bind', rootfs, bind]);
    binds.push(bind);

    await ok(['layer', 'unmount', 'bound']);
    await ok(['layer', 'remove', 'bound']);
    assert.deepEqual(
      (await layers()).map((l) => [l.id, l.deleted]),
      [['bound', true]],
      'the removal waits for the bind mount',
    );
    await writeFile(path.join(bind, 'unmounted.txt'), 'after our unmount\n');
    await syncFile(path.join(bind, 'unmounted.txt'));

    await daemon?.stop();
    daemon = await DaemonProcess.start(root, OPTS);
    assert.deepEqual(
      (await layers()).map((l) => [l.id, l.deleted]),
      [['bound', true]],
    );
    await writeFile(path.join(bind, 'restarted.txt'), 'after the restart\n');
    await syncFile(path.join(bind, 'restarted.txt'));
    assert.equal(await readFile(path.join(bind, 'before.txt'), 'utf8'), 'before\n');

    await runToolOk('umount', [bind]);
    binds.pop();
    await until('the layer is gone', async () => (await layers()).length === 0);
    assert.equal(await usedBlocks(), start, "the pool's blocks are back");
    await assertNoLeaks(dir);
  });

  it('writes made in another mount namespace after our unmount are kept; no second mount meanwhile', async () => {
    await ok(['layer', 'create', 'spaced']);
    const rootfs = (await ok(['layer', 'mount', 'spaced'])).trim();
    const ready = path.join(dir, 'ns-ready');
    const go = path.join(dir, 'ns-go');
    // The process holds the filesystem by its working directory, as a container's processes
    // do: the copy of our mount in its namespace goes when our mountpoint is removed (the
    // kernel detaches mounts on a removed directory in every namespace), the filesystem not.
    const script =
      `cd ${rootfs} && touch ${ready} && while [ ! -e ${go} ]; do sleep 0.1; done && ` +
      'echo from-the-namespace > ns.txt && sleep 1';
    const unshare = await requireTool('unshare', 'util-linux');
    const child = spawn(unshare, ['-m', '--propagation', 'private', 'sh', '-c', script], {
      stdio: 'ignore',
    });
    const exited = once(child, 'exit');
    try {
      await until('the namespace is made', () =>
        access(ready).then(
          () => true,
          () => false,
        ),
      );
      const began = Date.now();
      await ok(['layer', 'unmount', 'spaced']);
      assert.ok(Date.now() - began < 10_000, `the unmount took ${Date.now() - began} ms`);

      // Mounting again waits for the other namespace's filesystem to go.
      const again = thinp(['layer', 'mount', 'spaced']);
      await new Promise((resolve) => setTimeout(resolve, 500));
      await writeFile(go, '');
      const [code] = (await exited) as [number | null];
      assert.equal(code, 0);
      const r = await again;
      assert.equal(r.status, 0, r.stderr);
      assert.equal(await readFile(path.join(rootfs, 'ns.txt'), 'utf8'), 'from-the-namespace\n');
    } finally {
      child.kill('SIGKILL');
    }
    await ok(['layer', 'unmount', 'spaced']);
    await ok(['layer', 'remove', 'spaced']);
    assert.deepEqual(await layers(), []);
  });
});
