/**
 * Untrusted layer tars: every way out of the root is refused with an UnsafeEntryError that
 * names the entry, and nothing outside the root changes (a sentinel directory beside it is
 * compared before and after). Symbolic links met on the way are followed as in a chroot: an
 * absolute target stays inside the root.
 */

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { applyLayer, UnsafeEntryError } from '../../src/archive/index.js';
import { buildTar, streamOf, type TarSpec } from '../support/layer-tar.js';
import { tempDir } from '../support/temp.js';
import { snapshotTree } from '../support/tree-snapshot.js';

const base = await tempDir('thinp-archive-malicious-');

/** A fresh root at base/N/layer/rootfs, with base/N/outside holding a sentinel. */
async function fixture(): Promise<{ root: string; outside: string; top: string }> {
  const top = await mkdtemp(path.join(base, 'case-'));
  const root = path.join(top, 'layer', 'rootfs');
  const outside = path.join(top, 'outside');
  await mkdir(root, { recursive: true });
  await mkdir(outside);
  await writeFile(path.join(outside, 'sentinel'), 'untouched\n');
  return { root, outside, top };
}

interface Case {
  what: string;
  entries: (outside: string) => TarSpec[];
  /** The entry the error must name. */
  entry: string;
  /** Links already in the root (a lower layer): name → target, `OUTSIDE` replaced. */
  lower?: Record<string, string>;
}

const CASES: Case[] = [
  {
    what: 'a name that climbs out with ../',
    entries: () => [{ name: '../escape', content: 'x' }],
    entry: '../escape',
  },
  {
    what: 'a name that climbs out after going down',
    entries: () => [{ name: 'a/b/../../../outside/sentinel', content: 'pwned' }],
    entry: 'a/b/../../../outside/sentinel',
  },
  {
    what: 'an absolute name',
    entries: (o) => [{ name: `${o}/sentinel`, content: 'pwned' }],
    entry: '/',
  },
  {
    what: 'a symlink out of the root, then a file through it',
    entries: () => [
      { name: 'link', type: 'symlink', linkname: '../../outside' },
      { name: 'link/sentinel', content: 'pwned' },
    ],
    entry: 'link',
  },
  {
    what: 'a file through a lower layer symlink that leaves the root',
    lower: { up: '../../outside' },
    entries: () => [{ name: 'up/sentinel', content: 'pwned' }],
    entry: 'up/sentinel',
  },
  {
    what: 'a directory through a lower layer symlink that climbs step by step',
    lower: { a: '.', b: 'a/../..' },
    entries: () => [{ name: 'b/outside/new/', type: 'directory' }],
    entry: 'b/outside/new/',
  },
  {
    what: 'a hard link to a file outside',
    entries: () => [{ name: 'hl', type: 'link', linkname: '../../outside/sentinel' }],
    entry: 'hl',
  },
  {
    what: 'a hard link with an absolute target',
    entries: (o) => [{ name: 'hl', type: 'link', linkname: `${o}/sentinel` }],
    entry: 'hl',
  },
  {
    what: 'a hard link through a symlink that leaves the root',
    lower: { up: '../../outside' },
    entries: () => [{ name: 'hl', type: 'link', linkname: 'up/sentinel' }],
    entry: 'hl',
  },
  { what: "a whiteout of '..'", entries: () => [{ name: 'dir/.wh..' + '.' }], entry: 'dir/.wh...' },
  { what: "a whiteout of '.'", entries: () => [{ name: '.wh..' }], entry: '.wh..' },
  {
    what: 'a whiteout that climbs out',
    entries: () => [{ name: '../outside/.wh.sentinel' }],
    entry: '../outside/.wh.sentinel',
  },
  {
    what: 'a whiteout through a symlink that leaves the root',
    lower: { up: '../../outside' },
    entries: () => [{ name: 'up/.wh.sentinel' }],
    entry: 'up/.wh.sentinel',
  },
  {
    what: 'an opaque marker through a symlink that leaves the root',
    lower: { up: '../../outside' },
    entries: () => [{ name: 'up/.wh..wh..opq' }],
    entry: 'up/.wh..wh..opq',
  },
  {
    what: 'a loop of symlinks',
    lower: { a: 'b', b: 'a' },
    entries: () => [{ name: 'a/file', content: 'x' }],
    entry: 'a/file',
  },
  {
    what: 'a file in place of the root',
    entries: () => [{ name: './', type: 'file', content: 'x' }],
    entry: './',
  },
];

describe('archive: malicious layer tars', () => {
  for (const c of CASES) {
    it(`refuses ${c.what}, naming the entry, and writes nothing outside`, async () => {
      const { root, outside, top } = await fixture();
      for (const [name, target] of Object.entries(c.lower ?? {})) {
        await symlink(target, path.join(root, name));
      }
      const before = await snapshotTree(top, { ignore: (p) => p.startsWith('/layer') });
      const tar = await buildTar(c.entries(outside));
      await assert.rejects(applyLayer(root, streamOf(tar)), (err: unknown) => {
        assert.ok(err instanceof UnsafeEntryError, `expected UnsafeEntryError, got ${String(err)}`);
        const named = c.entry === '/' ? `'${outside}/sentinel'` : `'${c.entry}'`;
        assert.ok(err.message.includes(named), `${err.message} should name ${named}`);
        assert.ok(err.hint !== undefined);
        return true;
      });
      const after = await snapshotTree(top, { ignore: (p) => p.startsWith('/layer') });
      assert.deepEqual(after, before);
      assert.deepEqual((await readdir(top)).sort(), ['layer', 'outside']);
    });
  }

  it('follows an absolute symlink inside the root, as a chroot would', async () => {
    const { root, outside, top } = await fixture();
    const before = await snapshotTree(top, { ignore: (p) => p.startsWith('/layer') });
    const tar = await buildTar([
      { name: 'abs', type: 'symlink', linkname: outside },
      { name: 'abs/sentinel', content: 'inside\n' },
    ]);
    await applyLayer(root, streamOf(tar));
    const after = await snapshotTree(top, { ignore: (p) => p.startsWith('/layer') });
    assert.deepEqual(after, before);
    const inside = await snapshotTree(root, { mtime: 'none' });
    assert.equal(inside.get(`${outside}/sentinel`)?.sha256 !== undefined, true);
    assert.equal(inside.get(`${outside}`)?.type, 'dir');
  });
});
