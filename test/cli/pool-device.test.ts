/**
 * The pool and device commands of the built `thinp` (dist/, made by `npm run build`), run
 * as real processes: raw bytes through stdin and stdout, exit statuses, the root lock.
 */

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { THINP_VERSION } from '../../src/util/index.js';
import type { CliResult } from '../support/cli.js';
import { requirePeer, thinCheck } from '../support/peers.js';
import { tempDir } from '../support/temp.js';

const bin = path.resolve('dist/cli/main.js');
const cwd = await tempDir('thinp-cli-pool-');
const root = path.join(cwd, 'root');
const MiB = 1024 * 1024;

before(async () => {
  await access(bin).catch(() =>
    assert.fail(`${bin} is missing: run 'npm run build' (npm test does it first)`),
  );
});

function start(args: readonly string[]): ChildProcess {
  return spawn(
    process.execPath,
    [
      bin,
      '--root',
      root,
      '--storage-opt',
      'dm.loopdatasize=64M',
      '--storage-opt',
      'dm.loopmetadatasize=8M',
      ...args,
    ],
    { cwd, env: { PATH: '' } },
  );
}

/** Runs the built thinp with `input` on stdin; stdout comes back as bytes. */
async function run(
  args: readonly string[],
  input: Uint8Array = Buffer.alloc(0),
): Promise<CliResult & { bytes: Buffer }> {
  const child = start(args);
  const out: Buffer[] = [];
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => out.push(chunk));
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  child.stdin?.end(input);
  const [status] = (await once(child, 'close')) as [number];
  const bytes = Buffer.concat(out);
  return { status, stdout: bytes.toString('utf8'), stderr, bytes };
}

async function ok(args: readonly string[], input?: Uint8Array) {
  const result = await run(args, input);
  assert.equal(result.status, 0, result.stderr);
  return result;
}

describe('thinp pool and device commands', () => {
  const payload = randomBytes(300_000);
  const offset = 123_457;

  it('pool create makes the pool, once', async () => {
    const created = await ok(['pool', 'create']);
    assert.match(created.stdout, /^created a loop-mode pool at .*root: 1024 data blocks of 64K/);
    const again = await run(['pool', 'create']);
    assert.equal(again.status, 1);
    assert.match(
      again.stderr,
      /^thinp: a pool exists at .*; an existing pool is never overwritten/,
    );
  });

  it('device write and read move raw bytes at an offset', async () => {
    await ok(['device', 'create', 'disk', '--size', '4M']);
    await ok(['device', 'write', 'disk', '--offset', String(offset)], payload);
    const read = await ok([
      'device',
      'read',
      'disk',
      '--offset',
      String(offset),
      '--length',
      String(payload.length),
    ]);
    assert.ok(read.bytes.equals(payload), 'the bytes read are the bytes written');
    const whole = await ok(['device', 'read', 'disk']);
    assert.equal(whole.bytes.length, 4 * MiB);
    assert.ok(whole.bytes.subarray(0, offset).every((b) => b === 0));
    assert.ok(whole.bytes.subarray(offset, offset + payload.length).equals(payload));
  });

  it('refuses to write past the end of a device', async () => {
    const result = await run(['device', 'write', 'disk', '--offset', '4M'], Buffer.alloc(1));
    assert.equal(result.status, 1);
    assert.match(
      result.stderr,
      /^thinp: 1 bytes at offset 4194304 runs past the end of device disk/,
    );
  });

  it('a snapshot keeps the bytes; list --json shows sharing', async () => {
    await ok(['device', 'create', 'snap', '--origin', 'disk']);
    await ok(['device', 'write', 'disk', '--offset', String(offset)], Buffer.alloc(4096, 7));
    const read = await ok([
      'device',
      'read',
      'snap',
      '--offset',
      String(offset),
      '--length',
      String(payload.length),
    ]);
    assert.ok(read.bytes.equals(payload));
    const list = JSON.parse((await ok(['device', 'list', '--json'])).stdout);
    const B = 65536;
    assert.deepEqual(list, [
      {
        name: 'disk',
        id: 1,
        size: 4 * MiB,
        mappedBytes: 6 * B,
        exclusiveBytes: B,
        sharedBytes: 5 * B,
        origin: null,
      },
      {
        name: 'snap',
        id: 2,
        size: 4 * MiB,
        mappedBytes: 6 * B,
        exclusiveBytes: B,
        sharedBytes: 5 * B,
        origin: 'disk',
      },
    ]);
    const table = (await ok(['device', 'list'])).stdout;
    assert.match(table, /^NAME\s+ID\s+SIZE\s+MAPPED\s+EXCLUSIVE\s+SHARED\s+ORIGIN\n/);
    assert.match(table, /^snap\s+2\s+4\.194MB\s+393\.2kB\s+65\.54kB\s+327\.7kB\s+disk$/m);
  });

  it('pool status --json gives the design keys', async () => {
    const status = JSON.parse((await ok(['pool', 'status', '--json'])).stdout);
    assert.deepEqual(Object.keys(status), [
      'transactionId',
      'mode',
      'needsCheck',
      'heldRoot',
      'data',
      'metadata',
    ]);
    assert.equal(status.transactionId, 2);
    assert.equal(status.mode, 'rw');
    assert.deepEqual(status.data, { usedBlocks: 7, totalBlocks: 1024, blockSize: 65536 });
    assert.deepEqual(Object.keys(status.metadata), ['usedBlocks', 'totalBlocks']);
    assert.equal(status.metadata.totalBlocks, 2048);
  });

  it("info shows Docker's fields for the pool, in Docker's order", async () => {
    const text = (await ok(['info'])).stdout;
    const labels = text
      .split('\n')
      .slice(1, -1)
      .map((line) => line.replace(/^ ([^:]+): .*$/, '$1'));
    assert.deepEqual(labels, [
      'Pool Name',
      'Pool Blocksize',
      'Base Device Size',
      'Backing Filesystem',
      'Data file',
      'Metadata file',
      'Data Space Used',
      'Data Space Total',
      'Data Space Available',
      'Metadata Space Used',
      'Metadata Space Total',
      'Metadata Space Available',
      'Thin Pool Minimum Free Space',
      'Udev Sync Supported',
      'Deferred Removal Enabled',
      'Deferred Deletion Enabled',
      'Deferred Deleted Device Count',
      'Data loop file',
      'Metadata loop file',
      'Library Version',
    ]);
    assert.match(text, /^ Pool Name: thinp-\d+:\d+-\d+-pool$/m);
    assert.match(text, /^ Data Space Used: 458\.8kB$/m);
    assert.match(text, /^ Data Space Total: 67\.11MB$/m);
    assert.match(text, /^ Thin Pool Minimum Free Space: 6\.685MB$/m);
    const info = JSON.parse((await ok(['info', '--json'])).stdout);
    assert.equal(info.pool, 'created');
    assert.equal(info.dataSpaceUsed, 7 * 65536);
    assert.equal(info.dataSpaceTotal, 64 * MiB);
    assert.ok(info.dataSpaceAvailable <= (1024 - 7) * 65536);
    assert.equal(info.metadataSpaceTotal, 8 * MiB);
    assert.equal(info.thinPoolMinimumFreeSpace, 102 * 65536);
    assert.equal(info.deferredDeletedDeviceCount, 0);
    assert.equal(info.libraryVersion, `thinp ${THINP_VERSION}`);
  });

  it('a second process gets a clear error while the root is locked', async () => {
    const writer = start(['device', 'write', 'disk']);
    let stderr = '';
    writer.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    writer.stdin?.write(Buffer.alloc(512, 1));
    await waitFor(() => access(path.join(root, 'thinp.lock')));
    const second = await run(['device', 'list']);
    assert.equal(second.status, 1);
    assert.match(
      second.stderr,
      new RegExp(
        `^thinp: ${root} is in use by pid ${writer.pid} \\('thinp device write disk' since [^)]+\\); wait for it or stop it\\n$`,
      ),
    );
    writer.stdin?.end();
    const [status] = await once(writer, 'close');
    assert.equal(status, 0, stderr);
  });

  it('device remove removes; the metadata stays clean', async () => {
    await ok(['device', 'remove', 'disk']);
    const list = JSON.parse((await ok(['device', 'list', '--json'])).stdout);
    assert.deepEqual(
      list.map((d: { name: string; origin: string | null }) => [d.name, d.origin]),
      [['snap', null]],
    );
    const missing = await run(['device', 'remove', 'disk']);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /^thinp: there is no device "disk"; 'thinp device list' shows/);
    await requirePeer('thin_check');
    const check = await thinCheck(path.join(root, 'devicemapper/metadata'));
    assert.equal(check.status, 0, check.stderr);
  });

  it('pool resize grows the data space and refuses to shrink it', async () => {
    const grown = await ok(['pool', 'resize', '--data-size', '128M']);
    assert.match(grown.stdout, /^data: \d+ of 2048 blocks of 64K used/m);
    const shrink = await run(['pool', 'resize', '--data-size', '64M']);
    assert.equal(shrink.status, 1);
    assert.match(shrink.stderr, /cannot shrink .*; give a size above the current one/);
  });
});

async function waitFor(probe: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      await probe();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
  assert.fail('timed out');
}
