/**
 * The NBD server against real clients: libnbd's nbdinfo and nbdcopy, and QEMU's qemu-io and
 * qemu-img. The server runs in this process on a UNIX socket in a temp dir, over sparse
 * in-memory exports; the clients are spawned. A missing client fails loudly.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { NbdServer, staticRegistry } from '../../src/nbd/index.js';
import { findOnPath } from '../../src/util/index.js';
import { ALLOCATION_BLOCK, MemoryExport } from '../support/nbd-memory-export.js';
import { tempDir } from '../support/temp.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

/** Each client and the Debian package it comes from. */
const CLIENTS = {
  nbdinfo: 'libnbd-bin',
  nbdcopy: 'libnbd-bin',
  'qemu-io': 'qemu-utils',
  'qemu-img': 'qemu-utils',
} as const;

async function requireClient(program: keyof typeof CLIENTS): Promise<string> {
  const where = await findOnPath(program, process.env.PATH);
  if (where === undefined) {
    throw new Error(
      `${program} is not installed: it comes with the Debian package ${CLIENTS[program]}; run 'npm run deps:test'`,
    );
  }
  return where;
}

async function client(program: keyof typeof CLIENTS, args: readonly string[]) {
  const file = await requireClient(program);
  try {
    const { stdout, stderr } = await run(file, args, { encoding: 'utf8', maxBuffer: 64 * MiB });
    return { status: 0, stdout, stderr };
  } catch (err) {
    const failure = err as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof failure.code !== 'number') throw err;
    return { status: failure.code, stdout: failure.stdout ?? '', stderr: failure.stderr ?? '' };
  }
}

const dir = await tempDir('thinp-nbd-peers-');
const socket = path.join(dir, 'nbd.sock');
const uri = (name: string) => `nbd+unix:///${name}?socket=${socket}`;

const sparse = new MemoryExport({ name: 'sparse', description: 'a thin device', size: 16 * MiB });
const scratch = new MemoryExport({ name: 'scratch', size: 16 * MiB });
const copy = new MemoryExport({ name: 'copy', size: 16 * MiB });
const polled = new MemoryExport({ name: 'polled', size: 16 * MiB });
const server = new NbdServer({ registry: staticRegistry([sparse, scratch, copy, polled]) });

before(async () => {
  for (const program of Object.keys(CLIENTS) as Array<keyof typeof CLIENTS>)
    await requireClient(program);
  // Two data blocks in a sparse export: 64 KiB at 1 MiB, 128 KiB at 8 MiB.
  await sparse.write(randomBytes(ALLOCATION_BLOCK), 1 * MiB);
  await sparse.write(randomBytes(2 * ALLOCATION_BLOCK), 8 * MiB);
  await server.listen({ path: socket });
});

after(() => server.close());

describe('real NBD clients', () => {
  test('nbdinfo --list shows every export with its size and description', async () => {
    const result = await client('nbdinfo', ['--list', `nbd+unix://?socket=${socket}`]);
    assert.equal(result.status, 0, result.stderr);
    assert.match(
      result.stdout,
      /export="sparse":\n\tdescription: a thin device\n\texport-size: 16777216/,
    );
    assert.match(result.stdout, /export="scratch":/);
    assert.match(result.stdout, /export="copy":/);
  });

  test('nbdinfo shows the export flags', async () => {
    const result = await client('nbdinfo', ['--json', uri('sparse')]);
    assert.equal(result.status, 0, result.stderr);
    const info = JSON.parse(result.stdout) as { exports: Array<Record<string, unknown>> };
    const e = info.exports[0] ?? {};
    assert.equal(e['export-size'], 16 * MiB);
    assert.equal(e.is_read_only, false);
    assert.equal(e.can_multi_conn, true);
    assert.equal(e.can_flush, true);
    assert.equal(e.can_trim, true);
    assert.equal(e.can_zero, true);
    assert.equal(e.can_fast_zero, true);
    assert.equal(e.block_size_minimum, 512);
  });

  test('nbdinfo --map shows holes and data', async () => {
    const result = await client('nbdinfo', ['--map', uri('sparse')]);
    assert.equal(result.status, 0, result.stderr);
    const rows = result.stdout
      .trim()
      .split('\n')
      .map((line) => line.trim().split(/\s+/));
    assert.deepEqual(rows, [
      ['0', String(1 * MiB), '3', 'hole,zero'],
      [String(1 * MiB), String(64 * 1024), '0', 'data'],
      [String(1 * MiB + 64 * 1024), String(7 * MiB - 64 * 1024), '3', 'hole,zero'],
      [String(8 * MiB), String(128 * 1024), '0', 'data'],
      [String(8 * MiB + 128 * 1024), String(8 * MiB - 128 * 1024), '3', 'hole,zero'],
    ]);
  });

  test('qemu-img map shows the same allocation', async () => {
    const result = await client('qemu-img', ['map', '-f', 'raw', '--output=json', uri('sparse')]);
    assert.equal(result.status, 0, result.stderr);
    const map = JSON.parse(result.stdout) as Array<{
      start: number;
      length: number;
      data: boolean;
    }>;
    const data = map.filter((m) => m.data).map((m) => [m.start, m.length]);
    assert.deepEqual(data, [
      [1 * MiB, 64 * 1024],
      [8 * MiB, 128 * 1024],
    ]);
  });

  test('qemu-io writes patterns at random offsets over two connections and reads them back', async () => {
    // One write per MiB, at a random 4 KiB-aligned place inside it, so that none overlap.
    const writes = Array.from({ length: 16 }, (_, i) => ({
      offset: i * MiB + Math.floor(Math.random() * 240) * 4096,
      length: 4096 * (1 + (i % 4)),
      pattern: 0x10 + i,
    }));
    const command = (w: (typeof writes)[number], op: 'write' | 'read') => [
      '-c',
      `${op} -P ${w.pattern} ${w.offset} ${w.length}`,
    ];
    const half = (n: number) => writes.filter((_, i) => i % 2 === n);
    const [a, b] = await Promise.all(
      [0, 1].map((n) =>
        client('qemu-io', [
          '-f',
          'raw',
          ...half(n).flatMap((w) => command(w, 'write')),
          uri('scratch'),
        ]),
      ),
    );
    assert.equal(a?.status, 0, a?.stderr);
    assert.equal(b?.status, 0, b?.stderr);
    const read = await client('qemu-io', [
      '-f',
      'raw',
      '-r',
      ...writes.flatMap((w) => command(w, 'read')),
      uri('scratch'),
    ]);
    assert.equal(read.status, 0, read.stderr);
    assert.doesNotMatch(read.stdout, /Pattern verification failed/);
    assert.equal(read.stdout.match(/^read \d+\/\d+ bytes at offset/gm)?.length, writes.length);
    const wrong = await client('qemu-io', [
      '-f',
      'raw',
      '-r',
      '-c',
      `read -P 0xee ${writes[0]?.offset} 4096`,
      uri('scratch'),
    ]);
    assert.match(wrong.stdout, /Pattern verification failed/, 'a wrong pattern is noticed');
    assert.notEqual(wrong.status, 0);
  });

  test('qemu-io at queue depth 1: the server polls for each next request, every byte right', async () => {
    // Writes and reads one after another: the server finds most requests by polling its
    // socket between them (input-poll.ts) rather than by waking from epoll.
    const before = server.inputPolls();
    const commands: string[] = [];
    for (let i = 0; i < 200; i++) {
      const offset = (i % 64) * 65_536 + (i % 3) * 4096;
      commands.push('-c', `write -P ${0x20 + (i % 200)} ${offset} 4096`);
      commands.push('-c', `read -P ${0x20 + (i % 200)} ${offset} 4096`);
    }
    const r = await client('qemu-io', ['-f', 'raw', ...commands, uri('polled')]);
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /Pattern verification failed/);
    assert.equal(r.stdout.match(/^read 4096\/4096 bytes at offset/gm)?.length, 200);
    const after = server.inputPolls();
    const hits = after.hits - before.hits;
    const misses = after.misses - before.misses;
    assert.ok(hits > 0, `no request was found by polling (${misses} polls found nothing)`);
  });

  test('qemu-img convert copies an export to a raw file and back, identical', async () => {
    const file = path.join(dir, 'sparse.raw');
    const out = await client('qemu-img', [
      'convert',
      '-f',
      'raw',
      '-O',
      'raw',
      uri('sparse'),
      file,
    ]);
    assert.equal(out.status, 0, out.stderr);
    assert.deepEqual(await readFile(file), sparse.contents());
    const back = await client('qemu-img', [
      'convert',
      '-n',
      '-f',
      'raw',
      '-O',
      'raw',
      file,
      uri('copy'),
    ]);
    assert.equal(back.status, 0, back.stderr);
    assert.deepEqual(copy.contents(), sparse.contents());
    const compare = await client('qemu-img', [
      'compare',
      '-f',
      'raw',
      '-F',
      'raw',
      uri('sparse'),
      uri('copy'),
    ]);
    assert.equal(compare.status, 0, compare.stdout + compare.stderr);
  });

  test('nbdcopy copies a sparse export without materialising its holes', async () => {
    const file = path.join(dir, 'nbdcopy.raw');
    await writeFile(file, '');
    const result = await client('nbdcopy', [uri('sparse'), file]);
    assert.equal(result.status, 0, result.stderr);
    const copied = await stat(file);
    assert.equal(copied.size, 16 * MiB);
    assert.ok(copied.blocks * 512 <= 1 * MiB, `allocated ${copied.blocks * 512} bytes`);
    assert.deepEqual(await readFile(file), sparse.contents());
  });
});
