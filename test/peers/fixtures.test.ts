import assert from 'node:assert/strict';
import { stat, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  corruptFixtureNames,
  FIXTURE_DIR,
  fixtureNames,
  readFixtureText,
  unpackFixture,
} from '../support/fixtures.js';
import { requirePeer, thinCheck, thinDump, thinRestore } from '../support/peers.js';
import { tempDir } from '../support/temp.js';

const dir = await tempDir('thinp-fixtures-');

interface RecordedCheck {
  name: string;
  args: string[];
  status: number;
}

/** Every `thin_check` run recorded in corrupt/thin_check-results.md, with its exit status. */
async function recordedChecks(): Promise<RecordedCheck[]> {
  const text = await readFixtureText('corrupt/thin_check-results.md');
  const runs = text.matchAll(/^\$ thin_check (.*?)(\S+)\.meta\n[\s\S]*?^exit status: (\d+)$/gm);
  return [...runs].map(([, args = '', name = '', status = '']) => ({
    name,
    args: args.trim() === '' ? [] : args.trim().split(/\s+/),
    status: Number(status),
  }));
}

test('a missing peer fails loudly, naming the package and how to install it', async () => {
  const expected =
    'thin_no_such_tool is not installed: it comes with the Debian package ' +
    "thin-provisioning-tools; run 'npm run deps:test'";
  await assert.rejects(requirePeer('thin_no_such_tool'), new Error(expected));
});

describe('the dm-thin fixtures and the real thin-provisioning-tools', () => {
  test('lists the fixtures the README describes', () => {
    assert.deepEqual(fixtureNames(), [
      'empty-pool',
      'held-root',
      'kernel-snap',
      'many-devices',
      'many-mappings',
      'one-thin',
      'snapshots',
      'version-omitted',
    ]);
    assert.equal(corruptFixtureNames().length, 23);
    assert.ok(corruptFixtureNames().includes('corrupt/flip-leaf-byte'));
  });

  for (const name of fixtureNames()) {
    test(`thin_check passes ${name} and thin_dump prints its .dump.xml byte for byte`, async () => {
      const meta = await unpackFixture(name, dir);
      const check = await thinCheck(meta);
      assert.equal(check.status, 0, `thin_check ${name}: ${check.stdout}${check.stderr}`);
      assert.equal(await thinDump(meta), await readFixtureText(`${name}.dump.xml`));
    });
  }

  test('unpacks an image to a sparse file of its full size', async () => {
    const meta = await unpackFixture('many-mappings', dir);
    const info = await stat(meta);
    assert.equal(info.size, 80 * 1024 * 1024);
    assert.ok(info.blocks * 512 < 8 * 1024 * 1024, `${info.blocks * 512} bytes allocated`);
  });

  test('thin_check fails on a leaf with a flipped byte', async () => {
    const meta = await unpackFixture('corrupt/flip-leaf-byte', dir);
    const check = await thinCheck(meta);
    assert.notEqual(check.status, 0);
    assert.match(check.stdout + check.stderr, /bad checksum in btree node \(block 10\)/);
  });

  test('thin_check exits as recorded on every corrupt fixture', async () => {
    const checks = await recordedChecks();
    assert.equal(checks.length, 2 * corruptFixtureNames().length);
    for (const { name, args, status } of checks) {
      const meta = await unpackFixture(`corrupt/${name}`, dir);
      const check = await thinCheck(meta, args);
      assert.equal(check.status, status, `thin_check ${args.join(' ')} ${name}`);
    }
  });

  test('thin_restore rebuilds one-thin from its XML, as the README says', async () => {
    const meta = path.join(dir, 'restored.meta');
    await writeFile(meta, '');
    await truncate(meta, 8 * 1024 * 1024);
    await thinRestore(path.join(FIXTURE_DIR, 'one-thin.xml'), meta);
    assert.equal((await thinCheck(meta)).status, 0);
    assert.equal(await thinDump(meta), await readFixtureText('one-thin.dump.xml'));
  });

  test('thin_dump reports failure with the tool’s message', async () => {
    const meta = await unpackFixture('corrupt/superblock-flip', dir);
    await assert.rejects(thinDump(meta), /thin_dump .*superblock-flip\.meta exited with status/);
  });
});
