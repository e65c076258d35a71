import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { BadArchiveError, UnsafeEntryError } from '../../../src/archive/errors.js';
import { rawOf } from '../../../src/archive/raw-name.js';
import { resolveDir, splitEntryName, symlinkStaysInside } from '../../../src/archive/root-path.js';
import { tempDir } from '../../support/temp.js';

const base = await tempDir('thinp-archive-root-path-');

describe('archive: entry names', () => {
  const cases: Array<[string, string[]]> = [
    ['etc/passwd', ['etc', 'passwd']],
    ['./etc//passwd', ['etc', 'passwd']],
    ['etc/', ['etc']],
    ['./', []],
    ['.', []],
    ['a/b/../c', ['a', 'c']],
    ['a/./b/.', ['a', 'b']],
    ['a/..', []],
    ['..a/b..', ['..a', 'b..']],
  ];
  for (const [name, parts] of cases) {
    it(`cleans '${name}' to [${parts.join(', ')}]`, () => {
      assert.deepEqual(splitEntryName(name), parts);
    });
  }

  for (const name of ['../x', 'a/../../x', '..', './..', 'a/b/../../..']) {
    it(`refuses '${name}', which climbs out, naming it`, () => {
      assert.throws(
        () => splitEntryName(name),
        (err: unknown) =>
          err instanceof UnsafeEntryError && err.entry === name && /climbs out/.test(err.message),
      );
    });
  }

  it('refuses an absolute name', () => {
    assert.throws(
      () => splitEntryName('/etc/passwd'),
      (err: unknown) => err instanceof UnsafeEntryError && /absolute/.test(err.reason),
    );
  });
});

describe('archive: symbolic link targets at creation', () => {
  const cases: Array<[string[], string, boolean]> = [
    [[], 'etc/passwd', true],
    [[], '/anything/at/all', true],
    [[], '../x', false],
    [['a'], '../x', true],
    [['a'], '../../x', false],
    [['a', 'b'], '../../x', true],
    [['a'], 'b/../../..', false],
    [['a'], './../.', true],
  ];
  for (const [dir, target, inside] of cases) {
    it(`a link in /${dir.join('/')} to '${target}' is ${inside ? 'inside' : 'outside'} the root`, () => {
      assert.equal(symlinkStaysInside(dir, target), inside);
    });
  }
});

describe('archive: resolving directories inside the root', () => {
  async function root(): Promise<string> {
    const dir = path.join(base, `r${Math.random().toString(36).slice(2)}`);
    await mkdir(path.join(dir, 'usr/lib'), { recursive: true });
    await mkdir(path.join(dir, 'real'));
    await symlink('usr/lib', path.join(dir, 'lib'));
    await symlink('/usr', path.join(dir, 'abs'));
    await symlink('../..', path.join(dir, 'real/up'));
    await symlink('loop2', path.join(dir, 'loop1'));
    await symlink('loop1', path.join(dir, 'loop2'));
    await writeFile(path.join(dir, 'file'), '');
    return dir;
  }

  it('follows a relative link inside the root', async () => {
    const dir = await root();
    assert.equal(
      await resolveDir(rawOf(dir), ['lib'], 'lib/x', 'undefined'),
      rawOf(path.join(dir, 'usr/lib')),
    );
  });

  it('starts an absolute link again at the root, as a chroot does', async () => {
    const dir = await root();
    assert.equal(
      await resolveDir(rawOf(dir), ['abs', 'lib'], 'abs/lib/x', 'undefined'),
      rawOf(path.join(dir, 'usr/lib')),
    );
  });

  it('creates missing directories with mode 0600, or reports them', async () => {
    const dir = await root();
    assert.equal(
      await resolveDir(rawOf(dir), ['new', 'deeper'], 'new/deeper/x', 'undefined'),
      undefined,
    );
    const made = await resolveDir(rawOf(dir), ['new', 'deeper'], 'new/deeper/x', 'create');
    assert.equal(made, rawOf(path.join(dir, 'new/deeper')));
    const { lstat } = await import('node:fs/promises');
    const previous = process.umask(0);
    try {
      await resolveDir(rawOf(dir), ['other'], 'other/x', 'create');
    } finally {
      process.umask(previous);
    }
    assert.equal((await lstat(path.join(dir, 'other'))).mode & 0o7777, 0o600);
  });

  it('refuses a link that leaves the root, naming the entry', async () => {
    const dir = await root();
    await assert.rejects(
      resolveDir(rawOf(dir), ['real', 'up', 'etc'], 'real/up/etc/x', 'create'),
      (err: unknown) =>
        err instanceof UnsafeEntryError &&
        err.entry === 'real/up/etc/x' &&
        /leaves the root/.test(err.reason),
    );
  });

  it('refuses a loop of links', async () => {
    const dir = await root();
    await assert.rejects(
      resolveDir(rawOf(dir), ['loop1'], 'loop1/x', 'create'),
      (err: unknown) => err instanceof UnsafeEntryError && /too many levels/.test(err.reason),
    );
  });

  it('says which file is in the way of a directory', async () => {
    const dir = await root();
    await assert.rejects(
      resolveDir(rawOf(dir), ['file', 'x'], 'file/x/y', 'create'),
      (err: unknown) =>
        err instanceof BadArchiveError &&
        /'file' is in the way/.test(err.message) &&
        err.entry === 'file/x/y',
    );
  });
});
