/**
 * Docker's ChangesDirs and ChangesSize rules (DOCKER.md §1.6), one case each, on trees made
 * here; and the whiteout names that ExportChanges writes for deletions.
 */

import assert from 'node:assert/strict';
import { chmod, link, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { extract } from 'tar-stream';
import { fsOps } from '../../../src/archive/native.js';
import { changesHere, exportHere, sizeHere } from '../../../src/archive/operations.js';
import { classifyName, whiteoutOf } from '../../../src/archive/whiteouts.js';
import { tempDir } from '../../support/temp.js';

const base = await tempDir('thinp-archive-changes-');
let count = 0;

/** Two copies of a small tree with identical times: parent and child. */
async function pair(): Promise<{
  parent: string;
  child: string;
  both: (f: (root: string) => Promise<void>) => Promise<void>;
}> {
  const dir = path.join(base, String(count++));
  const [parent, child] = [path.join(dir, 'parent'), path.join(dir, 'child')];
  const both = async (f: (root: string) => Promise<void>) => {
    await f(parent);
    await f(child);
  };
  await both(async (root) => {
    await mkdir(path.join(root, 'etc/deep'), { recursive: true });
    await writeFile(path.join(root, 'etc/passwd'), 'root');
    await writeFile(path.join(root, 'etc/deep/file'), 'deep');
    await writeFile(path.join(root, 'bin'), 'binary');
    for (const p of ['etc/passwd', 'etc/deep/file', 'bin', 'etc/deep', 'etc', ''])
      setTime(path.join(root, p), 1_600_000_000, 5);
  });
  return { parent, child, both };
}

function setTime(file: string, sec: number, nsec: number): void {
  fsOps().lutimes(Buffer.from(file), sec, nsec, sec, nsec);
}

async function changes(parent: string, child: string): Promise<string[]> {
  return (await changesHere(child, parent)).map(({ path: p, kind }) => `${'MAD'[kind]} ${p}`);
}

describe('archive: changes between two trees', () => {
  it('lists nothing for identical trees, and never lists the root', async () => {
    const { parent, child } = await pair();
    await chmod(child, 0o700);
    assert.deepEqual(await changes(parent, child), []);
  });

  it('lists an added directory and everything below it', async () => {
    const { parent, child } = await pair();
    await mkdir(path.join(child, 'new/sub'), { recursive: true });
    await writeFile(path.join(child, 'new/sub/f'), '');
    assert.deepEqual(await changes(parent, child), ['A /new', 'A /new/sub', 'A /new/sub/f']);
  });

  it('lists a deleted directory once, and its parent as modified before it', async () => {
    const { parent, child } = await pair();
    await rm(path.join(child, 'etc/deep'), { recursive: true });
    assert.deepEqual(await changes(parent, child), ['M /etc', 'D /etc/deep']);
  });

  it('sees a new mtime or size of a file, but not of a directory', async () => {
    const { parent, child } = await pair();
    setTime(path.join(child, 'bin'), 1_600_000_001, 5);
    setTime(path.join(child, 'etc/deep'), 1_700_000_000, 0);
    assert.deepEqual(await changes(parent, child), ['M /bin']);
    await writeFile(path.join(child, 'etc/passwd'), 'rooted');
    setTime(path.join(child, 'etc/passwd'), 1_600_000_000, 5);
    assert.deepEqual(await changes(parent, child), ['M /bin', 'M /etc', 'M /etc/passwd']);
  });

  it('matches a zero nanosecond part with any other (a time from a tar)', async () => {
    const { parent, child } = await pair();
    setTime(path.join(child, 'bin'), 1_600_000_000, 0);
    setTime(path.join(parent, 'etc/passwd'), 1_600_000_000, 0);
    setTime(path.join(child, 'etc/deep/file'), 1_600_000_000, 6);
    assert.deepEqual(await changes(parent, child), ['M /etc', 'M /etc/deep', 'M /etc/deep/file']);
  });

  it('sees mode, owner and security.capability, but not other xattrs', async () => {
    const { parent, child } = await pair();
    await chmod(path.join(child, 'etc/deep'), 0o700);
    fsOps().lsetxattr(
      Buffer.from(path.join(child, 'etc/passwd')),
      Buffer.from('user.x'),
      Buffer.from('y'),
    );
    const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex');
    fsOps().lsetxattr(
      Buffer.from(path.join(child, 'bin')),
      Buffer.from('security.capability'),
      cap,
    );
    assert.deepEqual(await changes(parent, child), ['M /bin', 'M /etc', 'M /etc/deep']);
  });

  it('lists a directory replaced by a file as modified, without its old children', async () => {
    const { parent, child } = await pair();
    await rm(path.join(child, 'etc/deep'), { recursive: true });
    await writeFile(path.join(child, 'etc/deep'), 'now a file');
    assert.deepEqual(await changes(parent, child), ['M /etc', 'M /etc/deep']);
  });

  it('lists every path as added when there is no parent', async () => {
    const { child } = await pair();
    const all = (await changesHere(child, undefined)).map(
      ({ path: p, kind }) => `${'MAD'[kind]} ${p}`,
    );
    assert.deepEqual(all, ['A /bin', 'A /etc', 'A /etc/deep', 'A /etc/deep/file', 'A /etc/passwd']);
  });
});

describe('archive: diff size', () => {
  it('adds the sizes of added and modified non-directories, a hard-linked inode once', async () => {
    const { parent, child } = await pair();
    await writeFile(path.join(child, 'big'), Buffer.alloc(1000));
    await link(path.join(child, 'big'), path.join(child, 'big2'));
    await symlink('twelve chars', path.join(child, 'sym'));
    await writeFile(path.join(child, 'bin'), 'bigger binary'); // 13 bytes
    await rm(path.join(child, 'etc/passwd'));
    assert.equal(await sizeHere(child, parent), 1000 + 12 + 13);
  });
});

describe('archive: whiteouts in a diff', () => {
  it('names a whiteout .wh.<name> and tells the kinds of names apart', () => {
    assert.equal(whiteoutOf('passwd'), '.wh.passwd');
    assert.deepEqual(classifyName('.wh.passwd'), { kind: 'whiteout', target: 'passwd' });
    assert.deepEqual(classifyName('.wh..wh..opq'), { kind: 'opaque' });
    assert.deepEqual(classifyName('.wh..wh.plnk'), { kind: 'meta' });
    assert.deepEqual(classifyName('.whx'), { kind: 'normal' });
  });

  it('writes deletions as empty files .wh.<name>, mode 0, after sorting by path', async () => {
    const { parent, child } = await pair();
    await rm(path.join(child, 'etc/deep'), { recursive: true });
    await rm(path.join(child, 'bin'));
    const out = new PassThrough();
    const tar = extract();
    out.pipe(tar);
    const entries: string[] = [];
    const reading = (async () => {
      for await (const entry of tar) {
        const h = entry.header;
        entries.push(`${h.type} ${h.name} ${h.size} ${(h.mode ?? 0).toString(8)} ${h.uid}`);
        entry.resume();
      }
    })();
    await exportHere(child, parent, out);
    out.end();
    await reading;
    assert.deepEqual(entries, [
      'file .wh.bin 0 0 0',
      'directory etc/ 0 755 0',
      'file etc/.wh.deep 0 0 0',
    ]);
  });
});
