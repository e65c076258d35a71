/**
 * The archive layer against GNU tar, the reference unpacker: a tar that `tar --xattrs`
 * makes of a directory (posix format, PAX times with nanoseconds, xattrs; or the gnu format;
 * or gzip) applied with applyLayer gives the same tree as `tar -x --xattrs`, and GNU tar
 * reads back the tar that exportDiff writes to the same tree.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, chown, link, mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { applyLayer, exportDiff } from '../../src/archive/index.js';
import { fsOps } from '../../src/archive/native.js';
import { findOnPath } from '../../src/util/index.js';
import { tempDir } from '../support/temp.js';
import { assertSameTree, snapshotTree } from '../support/tree-snapshot.js';

const run = promisify(execFile);
const base = await tempDir('thinp-archive-gnu-tar-');

/** A capability set: cap_net_raw+ep (VFS_CAP_REVISION_2), with NUL and high bytes. */
const CAPABILITY = Buffer.from('0100000200200000000000000000000000000000', 'hex');

async function gnuTar(args: string[]): Promise<void> {
  if ((await findOnPath('tar', process.env.PATH)) === undefined) {
    throw new Error(
      "GNU tar is not installed: it comes with the Debian package tar; run 'apt-get install tar'",
    );
  }
  await run('tar', args, { maxBuffer: 64 * 1024 * 1024 });
}

function setXattr(file: string, name: string, value: Buffer): void {
  fsOps().lsetxattr(Buffer.from(file), Buffer.from(name), value);
}

/** A tree with every kind of entry a layer holds, odd names, owners, modes and xattrs. */
async function makeSource(dir: string): Promise<void> {
  await mkdir(path.join(dir, 'etc/deep/er'), { recursive: true });
  await writeFile(path.join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  await writeFile(path.join(dir, 'empty'), '');
  await writeFile(path.join(dir, 'big'), Buffer.alloc(300_000, 7));
  await writeFile(path.join(dir, 'setuid'), '#!/bin/sh\n');
  await chmod(path.join(dir, 'setuid'), 0o4755);
  await mkdir(path.join(dir, 'tmp'), { mode: 0o777 });
  await chmod(path.join(dir, 'tmp'), 0o1777);
  await mkdir(path.join(dir, 'private'));
  await chmod(path.join(dir, 'private'), 0o700);
  await writeFile(path.join(dir, 'owned'), 'owned by 1000:2000');
  await chown(path.join(dir, 'owned'), 1000, 2000);
  await writeFile(path.join(dir, 'big-ids'), 'ids beyond ustar octal');
  await chown(path.join(dir, 'big-ids'), 3_000_000, 4_000_000);
  await symlink('passwd', path.join(dir, 'etc/relative'));
  await symlink('/etc/passwd', path.join(dir, 'etc/absolute'));
  await symlink('no/such/file', path.join(dir, 'dangling'));
  await link(path.join(dir, 'etc/passwd'), path.join(dir, 'etc/deep/hardlink'));
  fsOps().mknod(Buffer.from(path.join(dir, 'null')), 0o020666, 1, 3);
  fsOps().mknod(Buffer.from(path.join(dir, 'loop9')), 0o060660, 7, 9);
  fsOps().mknod(Buffer.from(path.join(dir, 'fifo')), 0o010600, 0, 0);
  await writeFile(path.join(dir, 'ping'), 'capable');
  setXattr(path.join(dir, 'ping'), 'security.capability', CAPABILITY);
  setXattr(path.join(dir, 'ping'), 'user.binary', Buffer.from([0xff, 0x00, 0x80, 0x0a]));
  setXattr(path.join(dir, 'etc'), 'trusted.overlay.x', Buffer.from('y'));
  await writeFile(path.join(dir, 'naïve-ünïcødé'), 'utf-8 name');
  await writeFile(
    Buffer.concat([Buffer.from(`${dir}/latin1-`), Buffer.from([0xe9, 0xff])]),
    'not utf-8',
  );
  const long = path.join(dir, 'l'.repeat(120), 'm'.repeat(150));
  await mkdir(path.dirname(long));
  await writeFile(long, 'a name longer than ustar holds');
  await symlink('t'.repeat(200), path.join(dir, 'long-target'));
  await writeFile(path.join(dir, 'old'), 'from 1970');
  fsOps().lutimes(Buffer.from(path.join(dir, 'old')), 5, 0, 5, 0);
  fsOps().lutimes(
    Buffer.from(path.join(dir, 'etc/passwd')),
    1_600_000_000,
    1,
    1_600_000_000,
    123_456_789,
  );
}

describe('archive: against GNU tar', () => {
  for (const format of ['posix', 'gnu', 'posix+gzip'] as const) {
    it(`applies a ${format} tar of a directory exactly as tar -x --xattrs does`, async () => {
      const dir = path.join(base, format);
      const [source, reference, ours] = ['source', 'reference', 'ours'].map((d) =>
        path.join(dir, d),
      ) as [string, string, string];
      await mkdir(source, { recursive: true });
      await mkdir(reference);
      await mkdir(ours);
      await makeSource(source);
      const file = path.join(dir, 'layer.tar');
      const xattrs = format === 'gnu' ? [] : ['--xattrs', '--xattrs-include=*'];
      const make = format === 'gnu' ? ['--format=gnu'] : ['--format=posix'];
      const gzip = format === 'posix+gzip' ? ['-z'] : [];
      await gnuTar([
        ...make,
        ...xattrs,
        ...gzip,
        '--numeric-owner',
        '-C',
        source,
        '-cf',
        file,
        '.',
      ]);
      await gnuTar([
        ...xattrs,
        ...gzip,
        '--numeric-owner',
        '--same-owner',
        '-p',
        '-C',
        reference,
        '-xf',
        file,
      ]);
      const result = await applyLayer(ours, createReadStream(file));
      assert.deepEqual(result.warnings, []);
      const mtime = format === 'gnu' ? 'seconds' : 'ns';
      assertSameTree(
        await snapshotTree(ours, { mtime }),
        await snapshotTree(reference, { mtime }),
        'applyLayer',
      );
      if (format !== 'gnu') {
        // Against the source too: nothing was lost on the way (xattrs, ns times, ids).
        assertSameTree(
          await snapshotTree(ours),
          await snapshotTree(source),
          'applyLayer vs source',
        );
      }
    });
  }

  it('writes a diff that tar -x --xattrs unpacks into the same tree', async () => {
    const dir = path.join(base, 'export');
    const [source, unpacked] = [path.join(dir, 'source'), path.join(dir, 'unpacked')];
    await mkdir(source, { recursive: true });
    await mkdir(unpacked);
    await makeSource(source);
    const file = path.join(dir, 'diff.tar');
    await pipeline(exportDiff(source, undefined), createWriteStream(file));
    await gnuTar([
      '--xattrs',
      '--xattrs-include=*',
      '--numeric-owner',
      '--same-owner',
      '-p',
      '-C',
      unpacked,
      '-xf',
      file,
    ]);
    // The root is not in a diff, and a tar carries whole seconds (as Docker writes them).
    const options = { mtime: 'seconds', dirMtimes: false, root: false } as const;
    assertSameTree(
      await snapshotTree(unpacked, options),
      await snapshotTree(source, options),
      'tar -x of exportDiff',
    );
  });
});
