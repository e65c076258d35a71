/**
 * A full pool through the built CLI: the write that finds no space fails with the pool's
 * ENOSPC error, nothing written before is damaged, and after `pool resize --data-size`
 * writes succeed again.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { describe, it } from 'node:test';
import { runThinp } from '../support/cli-process.js';
import { tempDir } from '../support/temp.js';

const cwd = await tempDir('thinp-cli-full-');
const root = path.join(cwd, 'root');
const MiB = 1024 * 1024;

function run(args: string[], input = Buffer.alloc(0)) {
  return runThinp(args, {
    cwd,
    input,
    globalArgs: [
      '--root',
      root,
      '--storage-opt',
      'dm.loopdatasize=2M',
      '--storage-opt',
      'dm.loopmetadatasize=8M',
      '--storage-opt',
      'dm.min_free_space=0%',
    ],
  });
}

describe('a full pool', () => {
  it('fails the write that finds no space, keeps what was written, and grows', async () => {
    const first = randomBytes(2 * MiB);
    const more = randomBytes(MiB);
    assert.equal((await run(['pool', 'create'])).status, 0);
    assert.equal((await run(['device', 'create', 'a', '--size', '8M'])).status, 0);
    assert.equal((await run(['device', 'write', 'a'], first)).status, 0);
    const full = await run(['device', 'write', 'a', '--offset', String(4 * MiB)], more);
    assert.equal(full.status, 1);
    assert.match(full.stderr, /data device is full .*grow it with 'thinp pool resize --data-size'/);
    const kept = await run(['device', 'read', 'a', '--length', String(2 * MiB)]);
    assert.ok(kept.bytes.equals(first), 'the data written before is intact');
    assert.equal((await run(['pool', 'resize', '--data-size', '8M'])).status, 0);
    assert.equal(
      (await run(['device', 'write', 'a', '--offset', String(4 * MiB)], more)).status,
      0,
    );
    const back = await run([
      'device',
      'read',
      'a',
      '--offset',
      String(4 * MiB),
      '--length',
      String(MiB),
    ]);
    assert.ok(back.bytes.equals(more));
    const check = await run(['check']);
    assert.equal(check.status, 0, check.stdout + check.stderr);
  });
});
