/**
 * The mount layer against the real tools, on a daemon in this process: nbdfuse (through
 * the reconnecting relay) + losetup + mkfs + mount. ext4 is made Docker's way and probed by
 * blkid; xfs snapshots sharing their origin's UUID mount side by side (`nouuid`); mounted
 * filesystems grow to their device; a read-only mount refuses writes; failures in the
 * middle of an attach or a mount leave nothing behind; a recorded attachment is found live
 * and, once its nbdfuse is killed, stale and cleaned. After every test: no loop device,
 * mount or nbdfuse/relay process is left under the test's directory.
 */

import assert from 'node:assert/strict';
import { access, mkdir, open, readdir, readFile, statfs, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import {
  type Attacher,
  chooseAttacher,
  cleanupStale,
  findMounts,
  growFilesystem,
  MountError,
  makeFilesystem,
  mountDevice,
  probeFilesystem,
} from '../../src/mount/index.js';
import { relayCommand } from '../../src/nbd/index.js';
import { BusyError } from '../../src/util/index.js';
import {
  type InProcessDaemon,
  requireTool,
  runTool,
  runToolOk,
  startInProcess,
} from '../support/daemon.js';
import { assertNoLeaks } from '../support/mount-leaks.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
const dir = await tempDir('thinp-mount-basic-');
const stateDir = path.join(dir, 'root', 'run', 'mounts');
let daemon: InProcessDaemon;
let attacher: Attacher;

before(async () => {
  for (const [tool, pkg] of [
    ['nbdfuse', 'libnbd-bin'],
    ['fusermount3', 'fuse3'],
    ['losetup', 'mount'],
    ['blkid', 'util-linux'],
    ['mkfs.ext4', 'e2fsprogs'],
    ['tune2fs', 'e2fsprogs'],
    ['resize2fs', 'e2fsprogs'],
    ['e2fsck', 'e2fsprogs'],
    ['mkfs.xfs', 'xfsprogs'],
    ['xfs_growfs', 'xfsprogs'],
  ] as const) {
    await requireTool(tool, pkg);
  }
  daemon = await startInProcess(path.join(dir, 'root'));
  attacher = await chooseAttacher({
    nbdSocket: path.join(dir, 'root', 'nbd.sock'),
    stateDir,
    relay: relayCommand,
    prefer: 'nbdfuse',
  });
});

afterEach(() => assertNoLeaks(dir));
after(() => daemon?.stop());

async function stateFiles(): Promise<string[]> {
  return (await readdir(stateDir).catch(() => [] as string[])).sort();
}

async function e2fsckClean(exportName: string): Promise<void> {
  const a = await attacher.attach(exportName, { readOnly: true });
  try {
    const check = await runTool(await requireTool('e2fsck', 'e2fsprogs'), ['-fn', a.devicePath]);
    assert.equal(check.status, 0, `e2fsck -fn: ${check.stdout}${check.stderr}`);
  } finally {
    await a.detach();
  }
}

describe('attach, mkfs and mount', () => {
  test('ext4 is made the way Docker makes it and blkid names it', async () => {
    await daemon.handle.deviceSet.createDevice('e4', 64 * MiB);
    const a = await attacher.attach('e4');
    try {
      assert.match(a.devicePath, /^\/dev\/loop\d+$/);
      assert.equal(await probeFilesystem(a.devicePath), undefined, 'a fresh device holds nothing');
      await makeFilesystem(a.devicePath, 'ext4', ['-L', 'thinp-test']);
      const probed = await probeFilesystem(a.devicePath);
      assert.equal(probed?.type, 'ext4');
      assert.match(probed?.uuid ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-/);
      const tune = await runToolOk(await requireTool('tune2fs', 'e2fsprogs'), ['-l', a.devicePath]);
      assert.match(tune, /^Filesystem volume name:\s+thinp-test$/m);
      assert.match(tune, /^Maximum mount count:\s+-1$/m);
      assert.match(tune, /^Check interval:\s+0 /m);
    } finally {
      await a.detach();
    }
    assert.deepEqual(await stateFiles(), [], 'detach removes the record');

    const target = path.join(dir, 'mnt', 'e4');
    const m = await mountDevice(attacher, 'e4', target, { type: 'ext4', options: ['noatime'] });
    try {
      assert.deepEqual(await stateFiles(), ['e4.fuse', 'e4.json', 'e4.log']);
      await writeFile(path.join(target, 'hello.txt'), 'hello from a thin device\n');
      await mkdir(path.join(target, 'dir'));
      await writeFile(path.join(target, 'dir', 'big.bin'), Buffer.alloc(3 * MiB, 0xa5));
    } finally {
      await m.unmount();
    }
    assert.deepEqual(await stateFiles(), []);
    await e2fsckClean('e4');
    const again = await mountDevice(attacher, 'e4', target, {
      type: 'ext4',
      options: [],
      readOnly: true,
    });
    try {
      assert.equal(
        await readFile(path.join(target, 'hello.txt'), 'utf8'),
        'hello from a thin device\n',
      );
      assert.ok(
        (await readFile(path.join(target, 'dir', 'big.bin'))).equals(Buffer.alloc(3 * MiB, 0xa5)),
      );
      await assert.rejects(writeFile(path.join(target, 'nope'), 'x'), { code: 'EROFS' });
    } finally {
      await again.unmount();
    }
  });

  test('xfs snapshots with their origin’s UUID mount side by side (nouuid)', async () => {
    const set = daemon.handle.deviceSet;
    await set.createDevice('x', 320 * MiB);
    const a = await attacher.attach('x');
    try {
      await makeFilesystem(a.devicePath, 'xfs', ['-m', 'crc=1']);
      assert.equal((await probeFilesystem(a.devicePath))?.type, 'xfs');
    } finally {
      await a.detach();
    }
    await set.createSnapshot('x-snap', 'x');
    const origin = await mountDevice(attacher, 'x', path.join(dir, 'mnt', 'x'), {
      type: 'xfs',
      options: [],
    });
    try {
      const snap = await mountDevice(attacher, 'x-snap', path.join(dir, 'mnt', 'x-snap'), {
        type: 'xfs',
        options: [],
      });
      try {
        const uuids = await Promise.all(
          [origin, snap].map(async (m) => (await probeFilesystem(m.attachment.devicePath))?.uuid),
        );
        assert.equal(uuids[0], uuids[1], 'the snapshot shares the UUID');
        await writeFile(path.join(snap.target, 'only-in-snap'), 'snap');
        await assert.rejects(access(path.join(origin.target, 'only-in-snap')));
      } finally {
        await snap.unmount();
      }
    } finally {
      await origin.unmount();
    }
  });

  test('a mounted filesystem grows to its device (ext4 and xfs)', async () => {
    const set = daemon.handle.deviceSet;
    await set.createDevice('g4', 128 * MiB);
    await set.createDevice('gx', 512 * MiB);
    const e4 = await attacher.attach('g4');
    try {
      await makeFilesystem(e4.devicePath, 'ext4', []);
      await runToolOk(await requireTool('resize2fs', 'e2fsprogs'), [e4.devicePath, '32M']);
    } finally {
      await e4.detach();
    }
    const xfs = await attacher.attach('gx');
    try {
      await makeFilesystem(xfs.devicePath, 'xfs', ['-d', 'size=300m']);
    } finally {
      await xfs.detach();
    }
    for (const [name, type, before, device] of [
      ['g4', 'ext4', 32 * MiB, 128 * MiB],
      ['gx', 'xfs', 300 * MiB, 512 * MiB],
    ] as const) {
      const m = await mountDevice(attacher, name, path.join(dir, 'mnt', name), {
        type,
        options: [],
      });
      try {
        const size = async () => {
          const s = await statfs(m.target);
          return s.blocks * s.bsize;
        };
        const was = await size();
        assert.ok(was <= before, `${type} starts at most ${before} bytes, not ${was}`);
        await growFilesystem(m, type);
        const now = await size();
        assert.ok(now > before && now <= device, `${type} grew from ${was} to ${now}`);
      } finally {
        await m.unmount();
      }
    }
  });
});

describe('failures leave nothing behind', () => {
  test('a mount that fails after the attach tears the attachment down', async () => {
    await daemon.handle.deviceSet.createDevice('blank', 32 * MiB);
    const target = path.join(dir, 'mnt', 'blank');
    await assert.rejects(
      mountDevice(attacher, 'blank', target, { type: 'ext4', options: [] }),
      (err) => err instanceof MountError && /mount/.test(err.message) && err.hint !== undefined,
    );
    assert.deepEqual(await stateFiles(), []);
    await assertNoLeaks(dir);
    // A valid filesystem with a bad option fails in mount(8) too, with the same cleanup.
    const a = await attacher.attach('blank');
    await makeFilesystem(a.devicePath, 'ext4', []).finally(() => a.detach());
    await assert.rejects(
      mountDevice(attacher, 'blank', target, { type: 'ext4', options: ['no_such_option'] }),
      MountError,
    );
    assert.deepEqual(await stateFiles(), []);
  });

  test('an export the daemon does not have fails the attach, cleanly', async () => {
    await assert.rejects(attacher.attach('missing'), (err) => {
      assert.ok(err instanceof MountError, String(err));
      assert.match(err.message, /nbdfuse/);
      return true;
    });
    assert.deepEqual(await stateFiles(), []);
  });

  test('attaching an export twice is refused while the first is there', async () => {
    await daemon.handle.deviceSet.createDevice('twice', 16 * MiB);
    const a = await attacher.attach('twice');
    try {
      await assert.rejects(attacher.attach('twice'), BusyError);
    } finally {
      await a.detach();
    }
  });

  test('a busy filesystem refuses to unmount, keeps everything, and unmounts once released', async () => {
    await daemon.handle.deviceSet.createDevice('held', 32 * MiB);
    const a = await attacher.attach('held');
    await makeFilesystem(a.devicePath, 'ext4', []).finally(() => a.detach());
    const target = path.join(dir, 'mnt', 'held');
    const m = await mountDevice(attacher, 'held', target, { type: 'ext4', options: [] });
    const holder = await open(path.join(target, 'open.txt'), 'w');
    try {
      await assert.rejects(m.unmount(), (err) => {
        assert.ok(err instanceof BusyError, String(err));
        assert.match(err.describe(), /busy.*fuser -vm/);
        return true;
      });
      const [found] = await findMounts(stateDir);
      assert.equal(found?.state, 'live', 'a refused unmount leaves the mount whole');
    } finally {
      await holder.close();
    }
    await m.unmount();
  });

  test('an attachment with a filesystem mounted refuses a bare detach', async () => {
    await daemon.handle.deviceSet.createDevice('busy', 32 * MiB);
    const a = await attacher.attach('busy');
    await makeFilesystem(a.devicePath, 'ext4', []).finally(() => a.detach());
    const m = await mountDevice(attacher, 'busy', path.join(dir, 'mnt', 'busy'), {
      type: 'ext4',
      options: [],
    });
    try {
      await assert.rejects(m.attachment.detach(), BusyError);
    } finally {
      await m.unmount();
    }
  });
});

describe('finding attachments again', () => {
  test('a live mount is found live; with nbdfuse killed it is stale and cleaned', async () => {
    await daemon.handle.deviceSet.createDevice('found', 32 * MiB);
    const a = await attacher.attach('found');
    await makeFilesystem(a.devicePath, 'ext4', []).finally(() => a.detach());
    const target = path.join(dir, 'mnt', 'found');
    const m = await mountDevice(attacher, 'found', target, { type: 'ext4', options: [] });
    let found = await findMounts(stateDir);
    try {
      assert.equal(found.length, 1);
      const [only] = found;
      assert.equal(only?.state, 'live', String(only?.problems));
      assert.equal(only?.mounted?.target, target);
      assert.equal(only?.attachment.devicePath, m.attachment.devicePath);
      await writeFile(path.join(target, 'x'), 'x');
      process.kill(only?.record.pid as number, 'SIGKILL');
      found = await findMounts(stateDir);
      assert.equal(found[0]?.state, 'stale');
      assert.ok(
        found[0]?.problems.some((p) => /nbdfuse .* is gone/.test(p)),
        String(found[0]?.problems),
      );
    } finally {
      for (const f of found) await cleanupStale(f);
    }
    assert.deepEqual(await stateFiles(), []);
  });

  test('an adopted mount unmounts like one made here', async () => {
    await daemon.handle.deviceSet.createDevice('adopt', 32 * MiB);
    const a = await attacher.attach('adopt');
    await makeFilesystem(a.devicePath, 'ext4', []).finally(() => a.detach());
    await mountDevice(attacher, 'adopt', path.join(dir, 'mnt', 'adopt'), {
      type: 'ext4',
      options: [],
    });
    const [found] = await findMounts(stateDir);
    assert.equal(found?.state, 'live');
    await found?.mounted?.unmount();
    assert.deepEqual(await stateFiles(), []);
  });
});
