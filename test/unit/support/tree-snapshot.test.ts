import assert from 'node:assert/strict';
import { chmod, link, mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fsOps } from '../../../src/archive/native.js';
import { tempDir } from '../../support/temp.js';
import {
  assertSameTree,
  compareTrees,
  showName,
  snapshotTree,
} from '../../support/tree-snapshot.js';

const base = await tempDir('thinp-tree-snapshot-');

async function tree(name: string): Promise<string> {
  const root = path.join(base, name);
  await mkdir(path.join(root, 'dir'), { recursive: true });
  await writeFile(path.join(root, 'dir/file'), 'content');
  await link(path.join(root, 'dir/file'), path.join(root, 'other'));
  await symlink('dir/file', path.join(root, 'link'));
  fsOps().mknod(Buffer.from(path.join(root, 'tty')), 0o020620, 4, 1);
  fsOps().lsetxattr(
    Buffer.from(path.join(root, 'dir/file')),
    Buffer.from('user.k'),
    Buffer.from([0, 0xff]),
  );
  for (const p of ['dir/file', 'link', 'tty', 'dir', '']) {
    fsOps().lutimes(Buffer.from(path.join(root, p)), 1_000_000_000, 7, 1_000_000_000, 7);
  }
  return root;
}

describe('tree snapshots', () => {
  it('captures type, mode, owner, content, target, device, xattrs, mtime and hard links', async () => {
    const snapshot = await snapshotTree(await tree('one'));
    assert.deepEqual([...snapshot.keys()], ['/', '/dir', '/dir/file', '/link', '/other', '/tty']);
    assert.deepEqual(snapshot.get('/dir/file'), {
      type: 'file',
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: 7,
      sha256: 'ed7002b439e9ac845f22357d822bac1444730fbdb6016d3ec9432297b9ec9f73',
      xattrs: { 'user.k': '00ff' },
      mtime: '1000000000.000000007',
      links: ['/other'],
    });
    assert.equal(snapshot.get('/link')?.target, 'dir/file');
    assert.deepEqual(snapshot.get('/tty')?.rdev, { major: 4, minor: 1 });
  });

  it('finds two trees made alike equal, and names every difference', async () => {
    const [a, b] = [await tree('a'), await tree('b')];
    assertSameTree(await snapshotTree(a), await snapshotTree(b));
    await chmod(path.join(b, 'dir'), 0o700);
    await writeFile(path.join(b, 'extra'), '');
    const problems = compareTrees(
      await snapshotTree(b, { mtime: 'none' }),
      await snapshotTree(a, { mtime: 'none' }),
    );
    assert.deepEqual(problems, ['/dir: mode 0700 ≠ expected 0755', '/extra: unexpected file']);
    assert.throws(
      () =>
        assertSameTree(
          new Map(),
          new Map([['/x', { type: 'dir', mode: 0, uid: 0, gid: 0, size: 0, xattrs: {} }]]),
        ),
      /missing/,
    );
  });

  it('shows names that are not UTF-8 without merging them', () => {
    assert.equal(showName(Buffer.from('ünï')), 'ünï');
    assert.equal(showName(Buffer.from([0x61, 0xff])), 'a\\xff');
    assert.equal(showName(Buffer.from('a\\b')), 'a\\x5cb');
  });
});
