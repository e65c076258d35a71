/**
 * A thin device as a real kernel block device: `nbdfuse` shows the device as a file in a
 * FUSE mount, `losetup` makes a loop device of that file, and ext4 is made and mounted on
 * it. Files written there survive an unmount, a snapshot of the device taken through the
 * device set, and a mount of the snapshot; `e2fsck -fn` finds both filesystems clean.
 *
 * The daemon runs in this process, so every tool runs asynchronously (a synchronous call
 * into the FUSE mount would wait on this very process). Every mount, loop device and FUSE
 * mount is undone in `finally` blocks, whatever failed: a leftover loop device or mount
 * would break later runs.
 */

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { once } from 'node:events';
import { access, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type InProcessDaemon,
  requireTool,
  runTool,
  runToolOk,
  startInProcess,
} from '../support/daemon.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
const dir = await tempDir('thinp-daemon-mount-');

const tools = {
  nbdfuse: () => requireTool('nbdfuse', 'libnbd-bin'),
  fusermount3: () => requireTool('fusermount3', 'fuse3'),
  losetup: () => requireTool('losetup', 'mount'),
  mount: () => requireTool('mount', 'mount'),
  umount: () => requireTool('umount', 'mount'),
  mkfs: () => requireTool('mkfs.ext4', 'e2fsprogs'),
  e2fsck: () => requireTool('e2fsck', 'e2fsprogs'),
  sync: () => requireTool('sync', 'coreutils'),
};

let daemon: InProcessDaemon;

before(async () => {
  for (const find of Object.values(tools)) await find();
  daemon = await startInProcess(path.join(dir, 'root'));
  await daemon.handle.deviceSet.createDevice('fs', 128 * MiB);
});

after(() => daemon?.stop());

/** Undo steps, run last first; each runs even if another fails, and the first error wins. */
class Cleanup {
  private readonly steps: Array<{ what: string; run: () => Promise<void> }> = [];

  push(what: string, run: () => Promise<void>): void {
    this.steps.push({ what, run });
  }

  async runAll(): Promise<void> {
    const errors: string[] = [];
    for (const step of this.steps.reverse()) {
      try {
        await step.run();
      } catch (err) {
        errors.push(`${step.what}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    this.steps.length = 0;
    if (errors.length > 0) throw new Error(`cleanup failed: ${errors.join('; ')}`);
  }
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}

/**
 * Device `name` as the file DIR/nbd (nbdfuse in the background), then as a loop device;
 * returns the loop device. Registers the undo steps on `cleanup` as it goes.
 */
async function attach(
  name: string,
  options: { readOnly: boolean },
  cleanup: Cleanup,
): Promise<string> {
  const fuseDir = path.join(dir, `fuse-${name}`);
  await mkdir(fuseDir, { recursive: true });
  const file = path.join(fuseDir, 'nbd');
  const args = [...(options.readOnly ? ['-r'] : []), file, daemon.uri(name)];
  const nbdfuse: ChildProcess = spawn(await tools.nbdfuse(), args, {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  nbdfuse.stderr?.setEncoding('utf8').on('data', (s: string) => {
    stderr += s;
  });
  const exited = once(nbdfuse, 'exit');
  let running = true;
  void exited.then(() => {
    running = false;
  });
  cleanup.push(`stop nbdfuse on ${fuseDir}`, async () => {
    if (!running) return;
    const unmounted = await runTool(await tools.fusermount3(), ['-u', fuseDir]);
    if (unmounted.status !== 0) nbdfuse.kill('SIGTERM');
    const timer = setTimeout(() => nbdfuse.kill('SIGKILL'), 5000);
    await exited.finally(() => clearTimeout(timer));
    if (unmounted.status !== 0) {
      await runTool(await tools.umount(), ['-l', fuseDir]);
      throw new Error(`fusermount3 -u ${fuseDir}: ${unmounted.stderr.trim()}`);
    }
  });
  for (let waited = 0; !(await exists(file)); waited += 20) {
    if (!running) throw new Error(`nbdfuse exited: ${stderr.trim()}`);
    if (waited > 10_000) throw new Error(`nbdfuse did not create ${file}: ${stderr.trim()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }

  const loopArgs = [...(options.readOnly ? ['--read-only'] : []), '--find', '--show', file];
  const loop = (await runToolOk(await tools.losetup(), loopArgs)).trim();
  assert.match(loop, /^\/dev\/loop\d+$/);
  cleanup.push(`losetup -d ${loop}`, async () => {
    await runToolOk(await tools.losetup(), ['-d', loop]);
  });
  return loop;
}

/** Mounts `device` on a fresh directory; the unmount goes on `cleanup`. */
async function mountOn(
  device: string,
  name: string,
  options: string[],
  cleanup: Cleanup,
): Promise<string> {
  const target = path.join(dir, `mnt-${name}`);
  await mkdir(target, { recursive: true });
  await runToolOk(await tools.mount(), ['-t', 'ext4', ...options, device, target]);
  let mounted = true;
  cleanup.push(`umount ${target}`, async () => {
    if (mounted) await runToolOk(await tools.umount(), [target]);
    mounted = false;
  });
  return target;
}

async function e2fsckClean(device: string): Promise<void> {
  const check = await runTool(await tools.e2fsck(), ['-fn', device]);
  assert.equal(check.status, 0, `e2fsck -fn ${device}: ${check.stdout}${check.stderr}`);
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Files of random sizes (some spanning many pool blocks) and their checksums. */
function makeFiles(): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (let i = 0; i < 24; i++) {
    const size = i % 6 === 0 ? randomInt(1, 4) * MiB + randomInt(4096) : randomInt(1, 200_000);
    files.set(`file-${String(i).padStart(2, '0')}.bin`, randomBytes(size));
  }
  return files;
}

describe('a thin device under a kernel filesystem', () => {
  const files = makeFiles();
  const manifest = [...files].map(([name, data]) => `${sha256(data)}  ${name}`).join('\n');

  test('ext4 on nbdfuse and a loop device takes files and checks clean', async () => {
    const cleanup = new Cleanup();
    try {
      const loop = await attach('fs', { readOnly: false }, cleanup);
      await runToolOk(await tools.mkfs(), ['-q', '-F', loop], { timeoutMs: 60_000 });
      const target = await mountOn(loop, 'fs', [], cleanup);
      await mkdir(path.join(target, 'data'));
      for (const [name, data] of files) await writeFile(path.join(target, 'data', name), data);
      await writeFile(path.join(target, 'MANIFEST.sha256'), `${manifest}\n`);
      await runToolOk(await tools.sync(), ['-f', target]);
      await cleanup.runAll();
      // Attached again, the filesystem is clean and unmounted.
      const again = await attach('fs', { readOnly: true }, cleanup);
      await e2fsckClean(again);
    } finally {
      await cleanup.runAll();
    }
  });

  test('a snapshot taken through the device set mounts with every file intact', async () => {
    const set = daemon.handle.deviceSet;
    const usedBefore = set.status().data.usedBlocks;
    await set.createSnapshot('fs-snap', 'fs');
    const cleanup = new Cleanup();
    try {
      const loop = await attach('fs-snap', { readOnly: true }, cleanup);
      await e2fsckClean(loop);
      const target = await mountOn(loop, 'fs-snap', ['-o', 'ro'], cleanup);
      const listed = (await readdir(path.join(target, 'data'))).sort();
      assert.deepEqual(listed, [...files.keys()].sort());
      const saved = await readFile(path.join(target, 'MANIFEST.sha256'), 'utf8');
      assert.equal(saved, `${manifest}\n`);
      for (const line of saved.trim().split('\n')) {
        const [sum, name] = line.split('  ') as [string, string];
        const data = await readFile(path.join(target, 'data', name));
        assert.equal(sha256(data), sum, `${name} changed in the snapshot`);
      }
    } finally {
      await cleanup.runAll();
    }
    assert.equal(set.status().data.usedBlocks, usedBefore, 'the snapshot shares every block');
  });
});
