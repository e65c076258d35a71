/**
 * `kill -9` in the middle of device create, snapshot and remove: at every step of the
 * device set's transaction (crash points) and at random moments. The next command must
 * find a pool that opens, has rolled the cut operation back (or, for a removal, finished
 * it), passes thin_check, and still holds the data written before.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { access, rm } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { CRASH_AT_ENV } from '../../src/util/index.js';
import { type ProcessResult, runThinp, THINP_BIN } from '../support/cli-process.js';
import { requirePeer, thinCheck } from '../support/peers.js';
import { tempDir } from '../support/temp.js';

const cwd = await tempDir('thinp-sigkill-');
const MiB = 1024 * 1024;

before(async () => {
  await access(THINP_BIN).catch(() =>
    assert.fail(`${THINP_BIN} is missing: run 'npm run build' (npm test does it first)`),
  );
  await requirePeer('thin_check');
});

function thinp(
  root: string,
  args: string[],
  options: { env?: Record<string, string>; input?: Buffer; killAfterMs?: number } = {},
): Promise<ProcessResult> {
  return runThinp(args, {
    cwd,
    env: { PATH: process.env.PATH ?? '', ...options.env },
    globalArgs: [
      '--root',
      root,
      '--storage-opt',
      'dm.loopdatasize=64M',
      '--storage-opt',
      'dm.loopmetadatasize=8M',
    ],
    ...(options.input === undefined ? {} : { input: options.input }),
    ...(options.killAfterMs === undefined ? {} : { killAfterMs: options.killAfterMs }),
  });
}

async function ok(root: string, args: string[], input?: Buffer): Promise<ProcessResult> {
  const r = await thinp(root, args, input === undefined ? {} : { input });
  assert.equal(r.status, 0, `thinp ${args.join(' ')}: ${r.stderr}`);
  return r;
}

interface Listed {
  name: string;
  id: number;
}

/** A pool with a device "base" holding `data` at offset 0. */
async function freshRoot(name: string, data: Buffer): Promise<string> {
  const root = path.join(cwd, name);
  await rm(root, { recursive: true, force: true });
  await ok(root, ['pool', 'create']);
  await ok(root, ['device', 'create', 'base', '--size', '16M']);
  await ok(root, ['device', 'write', 'base'], data);
  await ok(root, ['device', 'create', 'victim', '--size', '8M']);
  return root;
}

/** The pool opens, is consistent, thin_check passes and "base" still holds `data`. */
async function verify(root: string, data: Buffer): Promise<string[]> {
  const list = await ok(root, ['device', 'list', '--json']);
  const devices = JSON.parse(list.stdout) as Listed[];
  const check = await thinCheck(path.join(root, 'devicemapper', 'metadata'));
  assert.equal(check.status, 0, check.stdout + check.stderr);
  const own = await ok(root, ['check']);
  assert.match(own.stdout, /no problems found/);
  const read = await ok(root, ['device', 'read', 'base', '--length', String(data.length)]);
  assert.ok(read.bytes.equals(data), 'base kept its data');
  const names = devices.map((d) => d.name).sort();
  const ids = new Set(devices.map((d) => d.id));
  assert.equal(ids.size, devices.length, 'every device has its own thin id');
  return names;
}

const OPERATIONS: Array<{ args: string[]; points: string[]; done: (names: string[]) => boolean }> =
  [
    {
      args: ['device', 'create', 'new', '--size', '4M'],
      points: [
        'add:transaction-open',
        'add:pool-changed',
        'add:pool-committed',
        'add:device-file',
        'add:device-set-file',
        'add:closed',
      ],
      done: (names) => names.includes('new'),
    },
    {
      args: ['device', 'create', 'snap', '--origin', 'base'],
      points: [
        'add:transaction-open',
        'add:pool-changed',
        'add:pool-committed',
        'add:device-file',
        'add:device-set-file',
        'add:closed',
      ],
      done: (names) => names.includes('snap'),
    },
    {
      args: ['device', 'remove', 'victim'],
      points: [
        'remove:transaction-open',
        'remove:pool-changed',
        'remove:pool-committed',
        'remove:device-file',
        'remove:closed',
      ],
      done: (names) => !names.includes('victim'),
    },
  ];

describe('kill -9 during device operations', () => {
  const data = randomBytes(3 * MiB + 12_345);

  for (const op of OPERATIONS) {
    it(`leaves a consistent pool at every step of 'thinp ${op.args.slice(0, 2).join(' ')}' (${op.args[2]})`, async () => {
      for (const point of op.points) {
        const root = await freshRoot(`step-${op.args[2]}-${point.replace(':', '-')}`, data);
        const r = await thinp(root, op.args, { env: { [CRASH_AT_ENV]: point } });
        assert.equal(r.signal, 'SIGKILL', `the crash point ${point} was not reached: ${r.stderr}`);
        const names = await verify(root, data);
        if (point.endsWith(':closed'))
          assert.ok(op.done(names), `${point}: the operation is complete`);
        // The operation can be done again (or is already done) afterwards.
        if (!op.done(names)) await ok(root, op.args);
        await verify(root, data);
      }
    });
  }

  it('leaves a consistent pool when killed at random moments', async () => {
    const root = await freshRoot('random', data);
    let n = 0;
    for (let i = 0; i < 24; i++) {
      const op = OPERATIONS[i % OPERATIONS.length] as (typeof OPERATIONS)[number];
      const args = op.args.map((a) => (a === 'new' || a === 'snap' ? `${a}${i}` : a));
      const r = await thinp(root, args, { killAfterMs: 60 + ((i * 37) % 200) });
      if (r.signal === 'SIGKILL') n++;
      await verify(root, data);
      if (op.args[1] === 'remove')
        await thinp(root, ['device', 'create', 'victim', '--size', '8M']);
    }
    assert.ok(n > 0, 'no run was killed mid-way');
  });
});
