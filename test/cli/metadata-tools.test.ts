/**
 * `thinp check`, `thinp dump` and `thinp restore`, driven through `run()` as the user types
 * them: output, exit statuses and the words of every error.
 */

import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { type CliIo, run } from '../../src/cli/index.js';
import { type CliResult, thinp } from '../support/cli.js';
import { FIXTURE_DIR, readFixtureText, unpackFixture } from '../support/fixtures.js';
import { tempDir } from '../support/temp.js';

const cwd = await tempDir('thinp-metadata-tools-');
const fixtures = path.join(cwd, 'fixtures');
await mkdir(fixtures);

const cli = (...args: string[]) => thinp(args, { cwd });

/** The unpacked fixture `name` ("one-thin", "corrupt/flip-leaf-byte"). */
function meta(name: string): Promise<string> {
  return unpackFixture(name, fixtures);
}

function assertFails(result: CliResult, status: number, message: RegExp): void {
  assert.equal(result.status, status, result.stderr);
  assert.match(result.stderr, /^thinp: /);
  assert.match(result.stderr, message);
  assert.equal(result.stderr.trimEnd().split('\n').length, 1, 'one line on stderr');
}

/** `thinp args` with `input` as standard input. */
async function withStdin(input: string, args: string[]): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const io: CliIo & { stdin: AsyncIterable<Buffer> } = {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    env: { PATH: '' },
    cwd,
    stdin: Readable.from([Buffer.from(input)]),
  };
  const status = await run(args, io);
  return { status, stdout, stderr };
}

describe('thinp dump', () => {
  test('prints the metadata of --metadata FILE as thin_dump does', async () => {
    const result = await cli('dump', '--metadata', await meta('snapshots'));
    assert.deepEqual(result, {
      status: 0,
      stdout: await readFixtureText('snapshots.dump.xml'),
      stderr: '',
    });
  });

  test('-m prints the held metadata snapshot', async () => {
    const result = await cli('dump', '-m', '--metadata', await meta('held-root'));
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, await readFixtureText('held-root.snap-dump.xml'));
  });

  test('-o writes the file, replacing what was there, and nothing to stdout', async () => {
    const out = path.join(cwd, 'dump-out');
    await mkdir(out);
    await writeFile(path.join(out, 'pool.xml'), 'old contents');
    const result = await cli(
      'dump',
      '--metadata',
      await meta('one-thin'),
      '-o',
      'dump-out/pool.xml',
    );
    assert.deepEqual(result, { status: 0, stdout: '', stderr: '' });
    assert.equal(
      await readFile(path.join(out, 'pool.xml'), 'utf8'),
      await readFixtureText('one-thin.dump.xml'),
    );
    assert.deepEqual(await readdir(out), ['pool.xml']);
  });

  test('-o leaves the old file alone when the dump fails', async () => {
    const out = path.join(cwd, 'dump-failed');
    await mkdir(out);
    await writeFile(path.join(out, 'pool.xml'), 'old contents');
    const result = await cli(
      'dump',
      '--metadata',
      await meta('corrupt/flip-leaf-byte'),
      '-o',
      path.join(out, 'pool.xml'),
    );
    assertFails(result, 1, /btree node \(metadata block 10\): bad checksum/);
    assert.equal(await readFile(path.join(out, 'pool.xml'), 'utf8'), 'old contents');
    assert.deepEqual(await readdir(out), ['pool.xml']);
  });

  test('damaged metadata names the block and points at thinp check', async () => {
    assertFails(
      await cli('dump', '--metadata', await meta('corrupt/superblock-flip')),
      1,
      /^thinp: superblock \(metadata block 0\): bad checksum: .*; run 'thinp check' to see every problem/,
    );
  });

  test('-m without a held snapshot', async () => {
    assertFails(
      await cli('dump', '--metadata-snap', '--metadata', await meta('one-thin')),
      1,
      /holds no metadata snapshot; dump the live metadata without -m\/--metadata-snap/,
    );
  });

  test('without --metadata, a root with no pool: the path and the fix', async () => {
    const result = await cli('--root', 'no-pool', 'dump');
    assertFails(
      result,
      1,
      new RegExp(
        `^thinp: the pool has no metadata file at ${path.join(cwd, 'no-pool/devicemapper/metadata')}; create the pool with 'thinp pool create' or give --metadata FILE\\n$`,
      ),
    );
  });

  test('a --metadata FILE that does not exist', async () => {
    assertFails(
      await cli('dump', '--metadata', 'nope.meta'),
      1,
      /^thinp: no metadata file at .*nope\.meta; check the path given with --metadata/,
    );
  });

  test('a directly attached metadata device is read where it is, and named when missing', async () => {
    assertFails(
      await cli(
        '--storage-opt',
        'dm.datadev=/dev/vdb',
        '--storage-opt',
        'dm.metadatadev=/dev/vdc',
        'dump',
      ),
      1,
      /^thinp: \/dev\/vdc: no such file; check the path/,
    );
  });
});

describe('thinp check', () => {
  test('clean metadata: the summary, exit 0', async () => {
    const result = await cli('check', '--metadata', await meta('one-thin'));
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^transaction id: 1\n/);
    assert.match(result.stdout, /devices: 1, mappings: 7\nno problems found\n$/);
    assert.equal(result.stderr, '');
  });

  test('every problem is printed with its block, and the status is 1', async () => {
    const result = await cli('check', '--metadata', await meta('corrupt/flip-leaf-byte'));
    assert.equal(result.status, 1);
    assert.match(result.stdout, /thin device 0: bad checksum in btree node.*\(block 10\)/);
    assert.match(
      result.stderr,
      /^thinp: .*flip-leaf-byte\.meta: the check found \d+ problems? \(1 fatal.*\); restore the metadata from a dump with 'thinp restore', or repair it with 'thinp repair'\n$/,
    );
  });

  test('non-fatal problems fail the check unless --ignore-non-fatal-errors', async () => {
    const file = await meta('corrupt/meta-refcount-leak');
    const strict = await cli('check', '--metadata', file);
    assert.equal(strict.status, 1);
    assert.match(strict.stdout, /metadata reference counts differ.*\[non-fatal\]/);
    assert.match(strict.stderr, /1 non-fatal\); .*give --ignore-non-fatal-errors to accept them/);
    const lenient = await cli('check', '--ignore-non-fatal-errors', '--metadata', file);
    assert.equal(lenient.status, 0, lenient.stderr);
    assert.equal(lenient.stderr, '');
  });

  test('--ignore-non-fatal-errors does not hide a fatal problem', async () => {
    const file = await meta('corrupt/meta-refcount-too-low');
    const result = await cli('check', '--ignore-non-fatal-errors', '--metadata', file);
    assert.equal(result.status, 1);
  });

  test('--json gives the report as JSON', async () => {
    const result = await cli('check', '--json', '--metadata', await meta('corrupt/flip-leaf-byte'));
    assert.equal(result.status, 1);
    const report = JSON.parse(result.stdout);
    assert.ok(
      report.problems.some(
        (p: { severity: string; block?: number }) => p.severity === 'fatal' && p.block === 10,
      ),
    );
  });

  test('--super-block-only looks no further than the superblock', async () => {
    const result = await cli(
      'check',
      '--super-block-only',
      '--metadata',
      await meta('corrupt/flip-leaf-byte'),
    );
    assert.equal(result.status, 0, result.stdout + result.stderr);
  });

  test('--skip-mappings skips the mapping trees', async () => {
    const file = await meta('corrupt/flip-leaf-byte');
    const result = await cli('check', '--skip-mappings', '--metadata', file);
    assert.equal(result.status, 0, result.stdout + result.stderr);
  });

  test('-m checks the held snapshot, and fails when there is none', async () => {
    const held = await cli('check', '-m', '--metadata', await meta('held-root'));
    assert.equal(held.status, 0, held.stdout + held.stderr);
    const none = await cli('check', '-m', '--metadata', await meta('one-thin'));
    assert.equal(none.status, 1);
    assert.match(none.stdout, /no metadata snapshot is held/);
  });

  test('without --metadata, a root with no pool', async () => {
    assertFails(
      await cli('--root', 'no-pool', 'check'),
      1,
      /the pool has no metadata file at .*; create the pool with 'thinp pool create' or give --metadata FILE/,
    );
  });
});

describe('thinp restore', () => {
  test('-i FILE --metadata FILE restores into a new file of --metadata-size', async () => {
    const target = path.join(cwd, 'new.meta');
    const result = await cli(
      'restore',
      '-i',
      path.join(FIXTURE_DIR, 'snapshots.dump.xml'),
      '--metadata',
      'new.meta',
      '--metadata-size',
      '16M',
    );
    assert.deepEqual(result, { status: 0, stdout: '', stderr: '' });
    assert.equal((await stat(target)).size, 16 * 1024 * 1024);
    const dump = await cli('dump', '--metadata', target);
    assert.equal(dump.stdout, await readFixtureText('snapshots.dump.xml'));
  });

  test('-i - reads standard input', async () => {
    const target = path.join(cwd, 'stdin.meta');
    const xml = await readFixtureText('one-thin.dump.xml');
    const result = await withStdin(xml, [
      'restore',
      '-i',
      '-',
      '--metadata',
      target,
      '--metadata-size',
      '8M',
    ]);
    assert.equal(result.status, 0, result.stderr);
    assert.equal((await cli('dump', '--metadata', target)).stdout, xml);
  });

  test("without --metadata, into the root's metadata file (2G by default, sparse)", async () => {
    const root = path.join(cwd, 'root-restore');
    await mkdir(path.join(root, 'devicemapper'), { recursive: true });
    const input = path.join(FIXTURE_DIR, 'one-thin.dump.xml');
    const result = await cli('--root', root, 'restore', '-i', input);
    assert.equal(result.status, 0, result.stderr);
    const file = path.join(root, 'devicemapper', 'metadata');
    const info = await stat(file);
    assert.equal(info.size, 2 * 1024 ** 3);
    assert.ok(info.blocks * 512 < 16 * 1024 * 1024, 'the file is sparse');
    const dump = await cli('--root', root, 'dump');
    assert.equal(dump.stdout, await readFixtureText('one-thin.dump.xml'));
  });

  test('bad XML: the line and column, and the target untouched', async () => {
    const target = await meta('many-devices');
    const before = await readFile(target);
    const result = await withStdin('<superblock uuid="" time="0">\n', [
      'restore',
      '-i',
      '-',
      '--metadata',
      target,
    ]);
    assertFails(result, 1, /^thinp: line 1, column 1: <superblock> is missing the attribute/);
    assert.ok((await readFile(target)).equals(before));
  });

  test('a dump too big for the metadata file says how to make room', async () => {
    const result = await cli(
      'restore',
      '-i',
      path.join(FIXTURE_DIR, 'many-mappings.dump.xml'),
      '--metadata',
      'tiny.meta',
      '--metadata-size',
      '64K',
    );
    assertFails(
      result,
      1,
      /65536 bytes of metadata cannot hold this dump; restore into a new file with a larger --metadata-size/,
    );
    await assert.rejects(stat(path.join(cwd, 'tiny.meta')), { code: 'ENOENT' });
  });

  test('--metadata-size that contradicts an existing file is a usage error', async () => {
    const target = await meta('one-thin');
    assertFails(
      await cli(
        'restore',
        '-i',
        path.join(FIXTURE_DIR, 'one-thin.dump.xml'),
        '--metadata',
        target,
        '--metadata-size',
        '1G',
      ),
      2,
      /--metadata-size 1G does not match .*one-thin\.meta, which holds 8388608 bytes; .*leave out --metadata-size/,
    );
  });

  test('a missing input file', async () => {
    assertFails(
      await cli('restore', '-i', 'missing.xml', '--metadata', 'x.meta'),
      1,
      /^thinp: no input file at .*missing\.xml; check the path given with -i/,
    );
  });

  test('a root whose pool was never created', async () => {
    assertFails(
      await cli('--root', 'never', 'restore', '-i', path.join(FIXTURE_DIR, 'one-thin.dump.xml')),
      1,
      /the folder .*never\/devicemapper for the metadata file does not exist; create the pool with 'thinp pool create' or give --metadata FILE/,
    );
  });
});
