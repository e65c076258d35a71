/**
 * The built `thinp` executable (dist/, made by `npm run build`, which `npm test` runs
 * first), run as a real process: exit statuses and streams must survive the trip.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { before, test } from 'node:test';
import { promisify } from 'node:util';
import { tempDir } from '../support/temp.js';

const bin = path.resolve('dist/cli/main.js');
const cwd = await tempDir();

before(async () => {
  await access(bin).catch(() =>
    assert.fail(`${bin} is missing: run 'npm run build' (npm test does it first)`),
  );
});

async function thinpProcess(...args: string[]) {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [bin, ...args], {
      cwd,
      env: { PATH: '' },
    });
    return { status: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { status: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

test('package.json names the built CLI as the thinp bin', async () => {
  const manifest = JSON.parse(await readFile('package.json', 'utf8'));
  assert.equal(path.resolve(manifest.bin.thinp), bin);
});

test('exits 0 and prints info', async () => {
  const result = await thinpProcess('info');
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /^Storage Driver: devicemapper\n Pool Blocksize: 65\.54kB\n/);
});

test('exits 1 on a user error, with the message on stderr', async () => {
  const result = await thinpProcess('--storage-opt', 'dm.nosuch=1', 'info');
  assert.equal(result.status, 1);
  assert.equal(result.stdout, '');
  assert.match(result.stderr, /^thinp: --storage-opt: unknown option dm\.nosuch/);
});

test('exits 2 on a usage error', async () => {
  const result = await thinpProcess('info', '--nope');
  assert.equal(result.status, 2);
  assert.match(result.stderr, /^thinp: unknown option '--nope'/);
});

test('writes nothing to stdout that is not output', async () => {
  const result = await thinpProcess('config', '--json');
  assert.equal(result.status, 0);
  assert.doesNotThrow(() => JSON.parse(result.stdout));
  assert.equal(result.stderr, '');
});
