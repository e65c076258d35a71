/**
 * Docker's UnpackLayer semantics, entry by entry (DOCKER.md §1.6), run in this process as
 * the worker runs them (umask 0). Inputs are tars built in memory.
 */

import assert from 'node:assert/strict';
import { lstat, mkdir, readdir, readFile, readlink, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { applyTar } from '../../../src/archive/apply.js';
import { BadArchiveError } from '../../../src/archive/errors.js';
import { fsOps } from '../../../src/archive/native.js';
import { NotFoundError } from '../../../src/util/index.js';
import { buildTar, streamOf, type TarSpec } from '../../support/layer-tar.js';
import { tempDir } from '../../support/temp.js';
import { snapshotTree } from '../../support/tree-snapshot.js';

process.umask(0);
const base = await tempDir('thinp-archive-apply-');
let count = 0;

async function freshRoot(): Promise<string> {
  const root = path.join(base, String(count++));
  await mkdir(root);
  return root;
}

async function apply(root: string, specs: TarSpec[] | Buffer) {
  const bytes = Buffer.isBuffer(specs) ? specs : await buildTar(specs);
  return applyTar(root, streamOf(bytes, 700));
}

async function names(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort();
}

describe('archive: applying a layer', () => {
  it('creates every kind of entry with its metadata and returns the summed sizes', async () => {
    const root = await freshRoot();
    const result = await apply(root, [
      { name: 'dir/', type: 'directory', mode: 0o750, uid: 7, gid: 8, mtime: 1_000_000_000 },
      {
        name: 'dir/file',
        content: 'hello',
        mode: 0o4711,
        uid: 1000,
        gid: 1001,
        mtime: 1_200_000_000,
      },
      { name: 'dir/link', type: 'symlink', linkname: 'file', uid: 5, gid: 6, mtime: 1_300_000_000 },
      {
        name: 'dir/hard',
        type: 'link',
        linkname: 'dir/file',
        mode: 0o4711,
        uid: 1000,
        gid: 1001,
        mtime: 1_200_000_000,
      },
      { name: 'null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
      { name: 'sda', type: 'block-device', devmajor: 8, devminor: 1048575, mode: 0o660 },
      { name: 'pipe', type: 'fifo', mode: 0o620 },
      { name: 'big', content: Buffer.alloc(5000, 1) },
    ]);
    assert.equal(result.size, 5 + 5000);
    const tree = await snapshotTree(root, { mtime: 'seconds' });
    assert.deepEqual(tree.get('/dir'), {
      type: 'dir',
      mode: 0o750,
      uid: 7,
      gid: 8,
      size: 0,
      xattrs: {},
      mtime: '1000000000',
    });
    assert.equal(tree.get('/dir/file')?.mode, 0o4711);
    assert.equal(tree.get('/dir/file')?.uid, 1000);
    assert.deepEqual(tree.get('/dir/file')?.links, ['/dir/hard']);
    assert.equal(tree.get('/dir/link')?.target, 'file');
    assert.equal(tree.get('/dir/link')?.uid, 5);
    assert.equal(tree.get('/dir/link')?.mtime, '1300000000');
    assert.deepEqual(tree.get('/null')?.rdev, { major: 1, minor: 3 });
    assert.deepEqual(tree.get('/sda')?.rdev, { major: 8, minor: 1048575 });
    assert.equal(tree.get('/sda')?.type, 'block');
    assert.equal(tree.get('/pipe')?.type, 'fifo');
    assert.equal(tree.get('/pipe')?.mode, 0o620);
    assert.equal(await readFile(path.join(root, 'dir/hard'), 'utf8'), 'hello');
  });

  it('sets directory times at the end, after the entries created in them', async () => {
    const root = await freshRoot();
    await apply(root, [
      { name: 'd/', type: 'directory', mtime: 1_000_000_000 },
      { name: 'd/a', content: 'a', mtime: 1_500_000_000 },
      { name: 'd/e/', type: 'directory', mtime: 1_100_000_000 },
      { name: 'd/e/b', content: 'b' },
    ]);
    assert.equal((await stat(path.join(root, 'd'))).mtimeMs, 1_000_000_000_000);
    assert.equal((await stat(path.join(root, 'd/e'))).mtimeMs, 1_100_000_000_000);
  });

  it('takes nanosecond times from PAX records, and never sets atime before mtime', async () => {
    const root = await freshRoot();
    await apply(root, [
      { name: 'f', content: 'x', pax: { mtime: '1600000000.123456789', atime: '1500000000.5' } },
      { name: 'g', content: 'x', pax: { mtime: '1600000000.1', atime: '1700000000.25' } },
    ]);
    const f = await lstat(path.join(root, 'f'), { bigint: true });
    assert.equal(f.mtimeNs, 1_600_000_000_123_456_789n);
    assert.equal(f.atimeNs, f.mtimeNs);
    const g = await lstat(path.join(root, 'g'), { bigint: true });
    assert.equal(g.mtimeNs, 1_600_000_000_100_000_000n);
    assert.equal(g.atimeNs, 1_700_000_000_250_000_000n);
  });

  it('applies binary xattrs from SCHILY.xattr records byte for byte', async () => {
    const root = await freshRoot();
    const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex');
    const odd = Buffer.from([0xff, 0x00, 0x0a, 0x3d, 0x80]);
    await apply(root, [
      {
        name: 'ping',
        content: 'x',
        pax: {
          'SCHILY.xattr.security.capability': cap.toString('latin1'),
          'SCHILY.xattr.user.odd': odd.toString('latin1'),
        },
      },
    ]);
    const file = Buffer.from(path.join(root, 'ping'));
    assert.deepEqual(fsOps().lgetxattr(file, Buffer.from('security.capability')), cap);
    assert.deepEqual(fsOps().lgetxattr(file, Buffer.from('user.odd')), odd);
  });

  it('keeps names as bytes, valid UTF-8 or not, and takes long names from PAX', async () => {
    const root = await freshRoot();
    const latin1 = Buffer.from([0x65, 0xe9, 0xff]).toString('latin1');
    const long = `${'d'.repeat(200)}/${'f'.repeat(200)}`;
    await apply(root, [
      { name: latin1, content: 'raw', raw: true },
      { name: 'ünï', content: 'utf-8' },
      { name: long, content: 'long' },
    ]);
    const listed = await readdir(Buffer.from(root), { encoding: 'buffer' });
    assert.ok(listed.some((name) => name.equals(Buffer.from([0x65, 0xe9, 0xff]))));
    assert.equal(await readFile(path.join(root, 'ünï'), 'utf8'), 'utf-8');
    assert.equal(await readFile(path.join(root, long), 'utf8'), 'long');
  });

  it('creates a missing parent directory with mode 0600', async () => {
    const root = await freshRoot();
    await apply(root, [{ name: 'a/b/c', content: 'x' }]);
    assert.equal((await lstat(path.join(root, 'a'))).mode & 0o7777, 0o600);
    assert.equal((await lstat(path.join(root, 'a/b'))).mode & 0o7777, 0o600);
  });

  it("applies a '.' directory entry to the root itself", async () => {
    const root = await freshRoot();
    await apply(root, [
      { name: './', type: 'directory', mode: 0o711, uid: 3, gid: 4, mtime: 1_234_567_890 },
    ]);
    const stats = await lstat(root);
    assert.deepEqual(
      [stats.mode & 0o7777, stats.uid, stats.gid, stats.mtimeMs],
      [0o711, 3, 4, 1_234_567_890_000],
    );
  });
});

describe('archive: replacing what is there', () => {
  async function lower(): Promise<string> {
    const root = await freshRoot();
    await mkdir(path.join(root, 'dir/sub'), { recursive: true });
    await writeFile(path.join(root, 'dir/keep'), 'keep');
    await writeFile(path.join(root, 'dir/sub/deep'), 'deep');
    await writeFile(path.join(root, 'file'), 'old');
    return root;
  }

  it('merges a directory into a directory, changing only its metadata', async () => {
    const root = await lower();
    await apply(root, [{ name: 'dir/', type: 'directory', mode: 0o700 }]);
    assert.deepEqual(await names(path.join(root, 'dir')), ['keep', 'sub']);
    assert.equal((await lstat(path.join(root, 'dir'))).mode & 0o7777, 0o700);
  });

  it('replaces a directory by a file and a file by a directory or a link', async () => {
    const root = await lower();
    await apply(root, [
      { name: 'dir', content: 'now a file' },
      { name: 'file/', type: 'directory' },
      { name: 'file/x', content: 'x' },
    ]);
    assert.equal(await readFile(path.join(root, 'dir'), 'utf8'), 'now a file');
    assert.deepEqual(await names(path.join(root, 'file')), ['x']);
    await apply(root, [{ name: 'file', type: 'symlink', linkname: 'dir' }]);
    assert.equal(await readlink(path.join(root, 'file')), 'dir');
  });

  it('deletes with whiteouts, recursively, and ignores a whiteout of nothing', async () => {
    const root = await lower();
    await apply(root, [{ name: 'dir/.wh.sub' }, { name: '.wh.file' }, { name: '.wh.absent' }]);
    assert.deepEqual(await names(root), ['dir']);
    assert.deepEqual(await names(path.join(root, 'dir')), ['keep']);
  });

  it('empties a directory with an opaque marker, keeping what this tar unpacked', async () => {
    const root = await lower();
    await apply(root, [
      { name: 'dir/', type: 'directory' },
      { name: 'dir/new', content: 'new' },
      { name: 'dir/sub/', type: 'directory' },
      { name: 'dir/sub/fresh', content: 'fresh' },
      { name: 'dir/.wh..wh..opq' },
    ]);
    assert.deepEqual(await names(path.join(root, 'dir')), ['new', 'sub']);
    assert.deepEqual(await names(path.join(root, 'dir/sub')), ['fresh']);
    assert.deepEqual(await names(root), ['dir', 'file']);
  });

  it('empties the root with an opaque marker at the top', async () => {
    const root = await lower();
    await apply(root, [{ name: 'fresh', content: 'x' }, { name: '.wh..wh..opq' }]);
    assert.deepEqual(await names(root), ['fresh']);
  });

  it('skips AUFS metadata, and turns links into .wh..wh.plnk/ into copies', async () => {
    const root = await freshRoot();
    await apply(root, [
      { name: '.wh..wh.plnk/', type: 'directory' },
      { name: '.wh..wh.plnk/1234', content: 'shared', mode: 0o755, mtime: 1_111_111_111 },
      { name: '.wh..wh.orph/', type: 'directory' },
      { name: 'bin/ls', type: 'link', linkname: '.wh..wh.plnk/1234' },
      { name: 'bin/dir', type: 'link', linkname: './.wh..wh.plnk/1234' },
      { name: 'bin/.wh..wh.aufs', content: 'metadata' },
    ]);
    assert.deepEqual(await names(root), ['bin']);
    assert.deepEqual(await names(path.join(root, 'bin')), ['dir', 'ls']);
    const ls = await lstat(path.join(root, 'bin/ls'));
    assert.deepEqual([ls.mode & 0o7777, ls.mtimeMs, ls.nlink], [0o755, 1_111_111_111_000, 1]);
    assert.equal(await readFile(path.join(root, 'bin/ls'), 'utf8'), 'shared');
  });
});

/** A tar whose first header's type flag is `flag` (checksum fixed). */
async function withTypeFlag(flag: string): Promise<Buffer> {
  const tar = await buildTar([{ name: 'odd', content: 'x' }]);
  tar.write(flag, 156, 'latin1');
  tar.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += tar[i] as number;
  tar.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 'latin1');
  return tar;
}

describe('archive: bad input', () => {
  const refused = (pattern: RegExp, entry?: string) => (err: unknown) => {
    assert.ok(err instanceof BadArchiveError, `expected BadArchiveError, got ${String(err)}`);
    assert.match(err.message, pattern);
    if (entry !== undefined) assert.equal(err.entry, entry);
    return true;
  };

  it('refuses a tar cut in the middle of a file', async () => {
    const tar = await buildTar([{ name: 'a', content: Buffer.alloc(3000, 1) }]);
    await assert.rejects(apply(await freshRoot(), tar.subarray(0, 2048)), refused(/truncated/));
  });

  it('refuses bytes that are not a tar', async () => {
    await assert.rejects(apply(await freshRoot(), Buffer.alloc(1024, 0x41)), refused(/damaged/));
  });

  for (const [flag, what] of [
    ['S', 'a GNU sparse file'],
    ['V', 'a volume label'],
    ['D', 'a GNU dump directory'],
  ]) {
    it(`refuses ${what} (type '${flag}'), naming the entry`, async () => {
      await assert.rejects(
        apply(await freshRoot(), await withTypeFlag(flag as string)),
        refused(/unknown type/, 'odd'),
      );
    });
  }

  it('refuses PAX sparse files', async () => {
    const tar = await buildTar([
      { name: 'sparse', content: 'x', pax: { 'GNU.sparse.major': '1' } },
    ]);
    await assert.rejects(apply(await freshRoot(), tar), refused(/sparse/, 'sparse'));
  });

  for (const [name, magic] of [
    ['bzip2', [0x42, 0x5a, 0x68, 0x39]],
    ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
    ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
  ] as const) {
    it(`refuses a ${name} stream by name`, async () => {
      const bytes = Buffer.concat([Buffer.from(magic), Buffer.alloc(600)]);
      await assert.rejects(
        apply(await freshRoot(), bytes),
        refused(new RegExp(`compressed with ${name}`)),
      );
    });
  }

  it('decompresses gzip, and refuses a truncated gzip stream', async () => {
    const gz = gzipSync(await buildTar([{ name: 'a', content: Buffer.alloc(100_000, 3) }]));
    const root = await freshRoot();
    assert.equal((await apply(root, gz)).size, 100_000);
    assert.equal((await lstat(path.join(root, 'a'))).size, 100_000);
    await assert.rejects(
      apply(await freshRoot(), gz.subarray(0, gz.length - 20)),
      refused(/gzip|truncated/),
    );
  });

  it('refuses a hard link to a file the layer and the root do not hold', async () => {
    await assert.rejects(
      apply(await freshRoot(), [{ name: 'h', type: 'link', linkname: 'nowhere' }]),
      refused(/does not exist/, 'h'),
    );
  });

  it('refuses a directory entry that carries data', async () => {
    await assert.rejects(
      apply(await freshRoot(), [{ name: 'd/', type: 'directory', content: 'data' }]),
      refused(/carries 4 bytes/, 'd/'),
    );
  });

  it('accepts an empty stream as an empty layer', async () => {
    assert.deepEqual(await apply(await freshRoot(), Buffer.alloc(0)), { size: 0, warnings: [] });
  });

  it('names a root that does not exist', async () => {
    await assert.rejects(
      applyTar(path.join(base, 'absent'), streamOf(Buffer.alloc(0))),
      NotFoundError,
    );
  });
});
