/**
 * The mount layer's pure parts: which backend a machine gets (the nbd module and
 * nbd-client, or nbdfuse), the mount table and blkid parsers, the mount options (xfs always
 * gets nouuid), and state file names that are safe whatever the export name holds.
 */

import assert from 'node:assert/strict';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { pickAttacherKind } from '../../../src/mount/choose-attacher.js';
import { parseBlkidExport } from '../../../src/mount/filesystem.js';
import { mountOptions } from '../../../src/mount/mount-device.js';
import { keyOf, stateFileOf } from '../../../src/mount/state-file.js';
import { parseMountInfoLine } from '../../../src/mount/system.js';
import { tempDir } from '../../support/temp.js';

const dir = await tempDir('thinp-mount-pure-');

describe('choosing the attacher', () => {
  const moduleDir = path.join(dir, 'sys-module-nbd');
  const bin = path.join(dir, 'bin');
  const missing = path.join(dir, 'no-such-dir');

  test('no nbd module: nbdfuse, whatever is installed', async () => {
    await mkdir(bin, { recursive: true });
    await writeFile(path.join(bin, 'nbd-client'), '#!/bin/sh\n');
    await chmod(path.join(bin, 'nbd-client'), 0o755);
    assert.equal(await pickAttacherKind({ searchPath: bin }, missing), 'nbdfuse');
  });

  test('the nbd module and nbd-client: nbd-client', async () => {
    await mkdir(moduleDir, { recursive: true });
    assert.equal(await pickAttacherKind({ searchPath: bin }, moduleDir), 'nbd-client');
  });

  test('the nbd module without nbd-client: nbdfuse', async () => {
    assert.equal(await pickAttacherKind({ searchPath: missing }, moduleDir), 'nbdfuse');
  });

  test('an explicit preference wins', async () => {
    assert.equal(await pickAttacherKind({ prefer: 'nbd-client' }, missing), 'nbd-client');
    assert.equal(
      await pickAttacherKind({ prefer: 'nbdfuse', searchPath: bin }, moduleDir),
      'nbdfuse',
    );
    assert.equal(
      await pickAttacherKind({ prefer: 'auto', searchPath: bin }, moduleDir),
      'nbd-client',
    );
  });

  test('this machine has no nbd module, so it gets nbdfuse', async () => {
    assert.equal(await pickAttacherKind({}), 'nbdfuse');
  });
});

describe('parsers', () => {
  test('a mountinfo line with optional fields and escaped spaces', () => {
    const line =
      '36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 shared:7 - ext3 /dev/loop0 rw,errors=continue';
    assert.deepEqual(parseMountInfoLine(line), {
      mountPoint: '/mnt/with space',
      fsType: 'ext3',
      source: '/dev/loop0',
    });
    assert.equal(parseMountInfoLine(''), undefined);
    assert.equal(parseMountInfoLine('1 2 3'), undefined);
  });

  test('blkid -o export', () => {
    const fields = parseBlkidExport(
      'DEVNAME=/dev/loop3\nUUID=1b2c-99\nBLOCK_SIZE=4096\nTYPE=xfs\n',
    );
    assert.equal(fields.get('TYPE'), 'xfs');
    assert.equal(fields.get('UUID'), '1b2c-99');
    assert.equal(fields.get('DEVNAME'), '/dev/loop3');
  });
});

describe('mount options and state files', () => {
  test('xfs always gets nouuid, once; read-only adds ro', () => {
    assert.deepEqual(mountOptions({ type: 'xfs', options: [] }), ['nouuid']);
    assert.deepEqual(mountOptions({ type: 'xfs', options: ['nouuid', 'discard'] }), [
      'nouuid',
      'discard',
    ]);
    assert.deepEqual(mountOptions({ type: 'ext4', options: ['discard'], readOnly: true }), [
      'discard',
      'ro',
    ]);
    assert.deepEqual(mountOptions({ type: 'ext4', options: [] }), []);
  });

  test('export names become file names that stay inside the state directory', () => {
    assert.equal(keyOf('abc-123'), 'abc-123');
    for (const name of ['../../etc/passwd', 'a/b', '..', '.hidden', 'sp ace']) {
      const file = stateFileOf('/run/mounts', name);
      assert.equal(path.dirname(file), '/run/mounts', name);
      assert.ok(!path.basename(file).startsWith('.'), name);
    }
  });
});
