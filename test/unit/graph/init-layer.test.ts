import assert from 'node:assert/strict';
import { mkdir, readlink, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { INIT_ENTRIES, setupInitLayer } from '../../../src/graph/init-layer.js';
import { tempDir } from '../../support/temp.js';
import { snapshotTree } from '../../support/tree-snapshot.js';

const dir = await tempDir('thinp-init-layer-');
let n = 0;
const fresh = async () => {
  const root = path.join(dir, `r${n++}`);
  await mkdir(root);
  return root;
};

describe("Docker's init layer", () => {
  it('makes every entry of an empty root, folders 0755, files 0755 and empty, mtab a link to /proc/mounts', async () => {
    const root = await fresh();
    await setupInitLayer(root, 'c');
    const tree = await snapshotTree(root, { root: false, mtime: 'none', xattrs: false });
    assert.deepEqual([...tree.keys()].sort(), [
      '/.dockerenv',
      '/dev',
      '/dev/console',
      '/dev/pts',
      '/dev/shm',
      '/etc',
      '/etc/hostname',
      '/etc/hosts',
      '/etc/mtab',
      '/etc/resolv.conf',
      '/proc',
      '/sys',
    ]);
    for (const [kind, p] of INIT_ENTRIES) {
      const entry = tree.get(`/${p}`);
      if (kind === 'link') assert.equal(entry?.target, '/proc/mounts');
      else
        assert.deepEqual([entry?.type, entry?.mode, entry?.size, entry?.uid], [kind, 0o755, 0, 0]);
    }
    assert.equal(tree.get('/dev')?.mode, 0o755);
  });

  it("leaves alone what the image has, in any form, and never writes through the image's symlinks", async () => {
    const root = await fresh();
    const outside = await fresh();
    await mkdir(path.join(root, 'etc'), { mode: 0o700 });
    await writeFile(path.join(root, 'etc', 'hosts'), '127.0.0.1 mine\n');
    await symlink('/nowhere', path.join(root, 'etc', 'hostname'));
    await symlink(outside, path.join(root, 'dev'));
    await setupInitLayer(root, 'c');
    const tree = await snapshotTree(root, { root: false, mtime: 'none', xattrs: false });
    assert.equal(tree.get('/etc')?.mode, 0o700, 'an existing folder keeps its mode');
    assert.equal(tree.get('/etc/hosts')?.size, '127.0.0.1 mine\n'.length);
    assert.equal(await readlink(path.join(root, 'etc', 'hostname')), '/nowhere');
    assert.equal(tree.get('/etc/resolv.conf')?.type, 'file');
    assert.equal(tree.get('/dev')?.type, 'symlink');
    assert.deepEqual(
      [...(await snapshotTree(outside, { root: false })).keys()],
      [],
      'nothing written through /dev',
    );
  });
});
