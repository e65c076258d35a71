/**
 * `thinp repair`, driven through `run()` as the user types it: the report in text and JSON,
 * the output file, in-place repair with its backup and confirmation, and the words of every
 * error.
 */

import assert from 'node:assert/strict';
import { mkdir, open, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { type CliResult, thinp } from '../support/cli.js';
import { unpackFixture } from '../support/fixtures.js';
import { thinCheck } from '../support/peers.js';
import { tempDir } from '../support/temp.js';

const cwd = await tempDir('thinp-repair-cli-');
const fixtures = path.join(cwd, 'fixtures');
await mkdir(fixtures);

const cli = (...args: string[]) => thinp(args, { cwd });

function assertFails(result: CliResult, status: number, message: RegExp): void {
  assert.equal(result.status, status, result.stderr);
  assert.match(result.stderr, /^thinp: /);
  assert.match(result.stderr, message);
  assert.equal(result.stderr.trimEnd().split('\n').length, 1, 'one line on stderr');
}

describe('thinp repair', () => {
  test('-o FILE writes sound metadata and says which vblocks were lost, and why', async () => {
    const damaged = await unpackFixture('corrupt/flip-leaf-byte', fixtures);
    const result = await cli('repair', '--metadata', damaged, '-o', 'flip.repaired');
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stderr, '');
    assert.match(result.stdout, /^read from: the superblock$/m);
    assert.match(result.stdout, /^kept: 1 devices, 0 mappings$/m);
    assert.match(
      result.stdout,
      /^lost: device 0, vblocks \[0, -\] \(damaged block 10: bad checksum in btree node: stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}\)$/m,
    );
    assert.equal((await thinCheck(path.join(cwd, 'flip.repaired'))).status, 0);
  });

  test('--json gives the same report as data', async () => {
    const damaged = await unpackFixture('corrupt/data-block-beyond-end', fixtures);
    const result = await cli('repair', '--metadata', damaged, '-o', 'beyond.repaired', '--json');
    assert.equal(result.status, 0, result.stderr);
    const report = JSON.parse(result.stdout);
    assert.equal(report.output, path.join(cwd, 'beyond.repaired'));
    assert.equal(report.source, 'superblock');
    assert.deepEqual(report.kept, { devices: 1, mappings: 6 });
    assert.deepEqual(report.lost.mappings, [
      {
        device: 0,
        ranges: [
          {
            first: 10,
            last: 10,
            block: null,
            problem: "it mapped to data block 1280000, beyond the data device's 1024 blocks",
          },
        ],
      },
    ]);
  });

  test('says "lost: nothing" when only the space maps were damaged; --metadata-size', async () => {
    const damaged = await unpackFixture('corrupt/meta-bitmap-csum', fixtures);
    const result = await cli(
      'repair',
      '--metadata',
      damaged,
      '-o',
      'bitmap.repaired',
      '--metadata-size',
      '16M',
    );
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^lost: nothing$/m);
    assert.equal((await stat(path.join(cwd, 'bitmap.repaired'))).size, 16 * 1024 * 1024);
  });

  test('a lost superblock needs the data sizes, and then scans for the roots', async () => {
    const damaged = await unpackFixture('corrupt/superblock-flip', fixtures);
    assertFails(
      await cli('repair', '--metadata', damaged, '-o', 'sb.repaired'),
      1,
      /^thinp: the superblock of .*superblock-flip\.meta is unusable \(bad checksum in superblock: .*\), and the size of the pool's data went with it; give --data-block-size SECTORS and --nr-data-blocks N/,
    );
    assert.deepEqual(
      (await readdir(cwd)).filter((f) => f.startsWith('.sb.repaired') || f === 'sb.repaired'),
      [],
      'no output and no scratch file is left',
    );
    const result = await cli(
      'repair',
      '--metadata',
      damaged,
      '-o',
      'sb.repaired',
      '--data-block-size',
      '128',
      '--nr-data-blocks',
      '1024',
    );
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^read from: a scan for btree nodes \(\d+ sound nodes found\)/m);
    assert.match(result.stdout, /transaction id 0, the highest of the devices'/);
    assert.match(result.stdout, /^kept: 1 devices, 7 mappings$/m);
  });

  test('--in-place needs --yes, keeps a backup, and will not overwrite one', async () => {
    const damaged = await unpackFixture('corrupt/keys-out-of-order', fixtures);
    const before = await readFile(damaged);
    assertFails(
      await cli('repair', '--metadata', damaged, '--in-place'),
      1,
      /repairing in place replaces .*keys-out-of-order\.meta; give --yes to confirm/,
    );
    assert.deepEqual(await readFile(damaged), before);
    const result = await cli('repair', '--metadata', damaged, '--in-place', '--yes');
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(await readFile(`${damaged}.backup`), before);
    assert.equal((await thinCheck(damaged)).status, 0);
    assertFails(
      await cli('repair', '--metadata', damaged, '--in-place', '--yes'),
      1,
      /the backup file .*keys-out-of-order\.meta\.backup already exists; move it away, or give another --backup FILE/,
    );
  });

  test('says that the held metadata snapshot is not carried over', async () => {
    const held = await unpackFixture('held-root', fixtures);
    const result = await cli('repair', '--metadata', held, '-o', 'held.repaired');
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^lost: nothing$/m);
    assert.match(result.stdout, /^dropped: the held metadata snapshot \(block 8\)/m);
    assert.equal((await thinCheck(path.join(cwd, 'held.repaired'))).status, 0);
  });

  test('usage errors', async () => {
    const damaged = await unpackFixture('corrupt/node-flags-zero', fixtures);
    assertFails(await cli('repair', '--metadata', damaged), 2, /needs -o FILE or --in-place --yes/);
    assertFails(
      await cli('repair', '--metadata', damaged, '-o', damaged),
      1,
      /is the damaged file itself; give another -o FILE/,
    );
    assertFails(
      await cli('repair', '--metadata', damaged, '-o', 'x', '--in-place', '--yes'),
      2,
      /--in-place and -o\/--output exclude each other/,
    );
    const bad = await cli('repair', '--metadata', damaged, '-o', 'x', '--nr-data-blocks', '12k');
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /'12k' is not a whole number/);
    assertFails(
      await cli('repair', '--metadata', 'missing.meta', '-o', 'x'),
      1,
      /no metadata file at .*missing\.meta; check the path given with --metadata/,
    );
  });

  test('--help describes the command', async () => {
    const result = await cli('repair', '--help');
    assert.equal(result.status, 0);
    for (const option of ['--in-place', '--yes', '--backup', '--data-block-size', '--json']) {
      assert.match(result.stdout, new RegExp(option));
    }
  });
});

describe('thinp repair of the pool under the root', () => {
  test('a lost superblock: sizes from the configuration, transaction id from the device set', async () => {
    const root = path.join(cwd, 'root');
    const opts = [
      '--root',
      root,
      '--storage-opt',
      'dm.loopmetadatasize=8M',
      '--storage-opt',
      'dm.loopdatasize=64M',
    ];
    const pool = (...args: string[]) => cli(...opts, ...args);
    assert.equal((await pool('pool', 'create')).status, 0);
    assert.equal((await pool('device', 'create', 'a', '--size', '1G')).status, 0);
    assert.equal((await pool('device', 'create', 'b', '--origin', 'a')).status, 0);
    const before = (await pool('device', 'list', '--json')).stdout;
    const status = JSON.parse((await pool('pool', 'status', '--json')).stdout);
    const metadata = path.join(root, 'devicemapper', 'metadata');
    const handle = await open(metadata, 'r+');
    await handle.write(Buffer.alloc(4096), 0, 4096, 0).finally(() => handle.close());

    const result = await pool('repair', '--in-place', '--yes');
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /data block size 128, from the pool's configuration and state/);
    assert.match(result.stdout, /data blocks 1024, from the pool's configuration and state/);
    assert.match(
      result.stdout,
      new RegExp(`transaction id ${status.transactionId}, from the pool's configuration and state`),
    );
    assert.equal((await thinCheck(metadata)).status, 0);
    const after = await pool('device', 'list', '--json');
    assert.equal(after.stderr, '', 'no operation is rolled back');
    assert.equal(after.stdout, before);
  });
});
