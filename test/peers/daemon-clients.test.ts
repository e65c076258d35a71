/**
 * The daemon's thin devices through real NBD clients: QEMU's qemu-io and qemu-img, libnbd's
 * nbdcopy and nbdinfo. The daemon runs in this process on a temp root, serving a pool of
 * 64 KiB blocks on ROOT/nbd.sock; the clients are spawned. A missing client fails loudly.
 */

import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { open, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type InProcessDaemon,
  requireTool,
  runTool,
  runToolOk,
  startInProcess,
} from '../support/daemon.js';
import { tempDir } from '../support/temp.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const dir = await tempDir('thinp-daemon-clients-');

const tools = {
  qemuIo: () => requireTool('qemu-io', 'qemu-utils'),
  qemuImg: () => requireTool('qemu-img', 'qemu-utils'),
  nbdcopy: () => requireTool('nbdcopy', 'libnbd-bin'),
  nbdinfo: () => requireTool('nbdinfo', 'libnbd-bin'),
  cmp: () => requireTool('cmp', 'diffutils'),
};

let daemon: InProcessDaemon;

before(async () => {
  for (const find of Object.values(tools)) await find();
  daemon = await startInProcess(path.join(dir, 'root'));
  const set = daemon.handle.deviceSet;
  await set.createDevice('patterns', 64 * MiB);
  await set.createDevice('source', 32 * MiB);
  await set.createDevice('copy', 32 * MiB);
  await set.createDevice('sparse', 256 * MiB);
});

after(() => daemon?.stop());

interface Write {
  offset: number;
  length: number;
  pattern: number;
}

/**
 * `count` non-overlapping writes at random 4 KiB-aligned offsets in the first `span` bytes,
 * 4 to 32 KiB each, with random patterns; many share a pool block with a neighbour.
 */
function randomWrites(count: number, span: number): Write[] {
  const slots = new Set<number>();
  while (slots.size < count) slots.add(randomInt(span / (4 * KiB)) * 4 * KiB);
  const starts = [...slots].sort((a, b) => a - b);
  return starts.map((offset, i) => {
    const room = (starts[i + 1] ?? span) - offset;
    return {
      offset,
      length: Math.min(room, randomInt(1, 9) * 4 * KiB),
      pattern: randomInt(1, 256),
    };
  });
}

function qemuIoCommands(writes: readonly Write[], op: 'write' | 'read'): string[] {
  return writes.flatMap((w) => [
    '-c',
    `${op} -P 0x${w.pattern.toString(16)} ${w.offset} ${w.length}`,
  ]);
}

/** nbdinfo --map as [offset, length, description] rows, adjacent rows of one kind merged. */
async function allocationMap(uri: string): Promise<Array<[number, number, string]>> {
  const out = await runToolOk(await tools.nbdinfo(), ['--map', uri]);
  const rows: Array<[number, number, string]> = [];
  for (const line of out.trim().split('\n')) {
    const [offset, length, , kind] = line.trim().split(/\s+/);
    const row: [number, number, string] = [Number(offset), Number(length), kind ?? ''];
    const last = rows[rows.length - 1];
    if (last !== undefined && last[2] === row[2] && last[0] + last[1] === row[0]) {
      last[1] += row[1];
    } else {
      rows.push(row);
    }
  }
  return rows;
}

describe('the daemon with real NBD clients', () => {
  test('two qemu-io processes write patterns at random offsets and every one reads back', async () => {
    const qemuIo = await tools.qemuIo();
    const uri = daemon.uri('patterns');
    const writes = randomWrites(160, 16 * MiB);
    const side = writes.map(() => randomInt(2));
    const halves = [0, 1].map((n) => writes.filter((_, i) => side[i] === n));
    const results = await Promise.all(
      halves.map((half) => runTool(qemuIo, ['-f', 'raw', ...qemuIoCommands(half, 'write'), uri])),
    );
    for (const r of results) {
      assert.equal(r.status, 0, r.stderr);
      assert.doesNotMatch(r.stdout, /error|failed/i);
    }
    const read = await runTool(qemuIo, ['-f', 'raw', '-r', ...qemuIoCommands(writes, 'read'), uri]);
    assert.equal(read.status, 0, read.stdout + read.stderr);
    assert.doesNotMatch(read.stdout, /Pattern verification failed/);
    assert.equal(read.stdout.match(/^read \d+\/\d+ bytes at offset/gm)?.length, writes.length);
    // Between the writes the device reads as zeros.
    const gaps = writes
      .map((w, i) => ({ from: w.offset + w.length, to: writes[i + 1]?.offset ?? 16 * MiB }))
      .filter((g) => g.to > g.from)
      .slice(0, 40)
      .map((g) => ({ offset: g.from, length: g.to - g.from, pattern: 0 }));
    const zeros = await runTool(qemuIo, ['-f', 'raw', '-r', ...qemuIoCommands(gaps, 'read'), uri]);
    assert.equal(zeros.status, 0, zeros.stdout + zeros.stderr);
    assert.doesNotMatch(zeros.stdout, /Pattern verification failed/);
    const wrong = writes[0] as Write;
    const miss = await runTool(qemuIo, [
      '-f',
      'raw',
      '-r',
      '-c',
      `read -P 0x${((wrong.pattern % 255) + 1).toString(16)} ${wrong.offset} 4096`,
      uri,
    ]);
    assert.match(miss.stdout, /Pattern verification failed/, 'a wrong pattern is noticed');
  });

  test('qemu-img convert copies a device to a raw file and the file to another device, identical', async () => {
    const qemuImg = await tools.qemuImg();
    const cmp = await tools.cmp();
    // Random data with holes: every other MiB, at odd lengths.
    const image = path.join(dir, 'image.raw');
    const content = Buffer.alloc(32 * MiB);
    for (let at = 0; at < 32 * MiB; at += 2 * MiB) {
      randomBytes(randomInt(1, 1024) * 512).copy(content, at + randomInt(512) * 512);
    }
    await writeFile(image, content);
    const fill = ['convert', '-n', '-f', 'raw', '-O', 'raw', image, daemon.uri('source')];
    await runToolOk(qemuImg, fill);

    const raw = path.join(dir, 'source.raw');
    await runToolOk(qemuImg, ['convert', '-f', 'raw', '-O', 'raw', daemon.uri('source'), raw]);
    assert.equal((await runTool(cmp, [image, raw])).status, 0, 'the device holds the image');

    const back = ['convert', '-n', '-f', 'raw', '-O', 'raw', raw, daemon.uri('copy')];
    await runToolOk(qemuImg, back);
    const compare = await runTool(qemuImg, [
      'compare',
      '-f',
      'raw',
      '-F',
      'raw',
      daemon.uri('source'),
      daemon.uri('copy'),
    ]);
    assert.equal(compare.status, 0, compare.stdout + compare.stderr);
    assert.match(compare.stdout, /Images are identical/);
    const again = path.join(dir, 'copy.raw');
    await runToolOk(qemuImg, ['convert', '-f', 'raw', '-O', 'raw', daemon.uri('copy'), again]);
    assert.equal((await runTool(cmp, [raw, again])).status, 0, 'the copy reads back the same');
  });

  test('nbdcopy copies a sparse device without materialising its holes', async () => {
    const qemuIo = await tools.qemuIo();
    const nbdcopy = await tools.nbdcopy();
    const cmp = await tools.cmp();
    const size = 256 * MiB;
    // A few MiB of data in 256 MiB: whole 64 KiB pool blocks, so the map is exact.
    const written: Write[] = [
      { offset: 0, length: 64 * KiB, pattern: 0x11 },
      { offset: 10 * MiB, length: 1 * MiB, pattern: 0x22 },
      { offset: 100 * MiB + 192 * KiB, length: 2 * MiB, pattern: 0x33 },
      { offset: 200 * MiB, length: 512 * KiB, pattern: 0x44 },
      { offset: size - 128 * KiB, length: 128 * KiB, pattern: 0x55 },
    ];
    const uri = daemon.uri('sparse');
    await runToolOk(qemuIo, ['-f', 'raw', ...qemuIoCommands(written, 'write'), uri]);

    const expected = path.join(dir, 'sparse.expected');
    await writeFile(expected, '');
    await truncate(expected, size);
    const file = await open(expected, 'r+');
    try {
      for (const w of written)
        await file.write(Buffer.alloc(w.length, w.pattern), 0, w.length, w.offset);
    } finally {
      await file.close();
    }

    const copy = path.join(dir, 'sparse.copy');
    await writeFile(copy, '');
    await truncate(copy, size);
    await runToolOk(nbdcopy, [uri, copy]);
    const copied = await stat(copy);
    assert.equal(copied.size, size);
    const cmpResult = await runTool(cmp, [expected, copy]);
    assert.equal(cmpResult.status, 0, cmpResult.stdout + cmpResult.stderr);
    const dataBytes = written.reduce((sum, w) => sum + w.length, 0);
    assert.ok(
      copied.blocks * 512 <= dataBytes + 1 * MiB,
      `the copy allocated ${copied.blocks * 512} bytes for ${dataBytes} bytes of data`,
    );
    // Into a file nbdcopy creates itself, too.
    const fresh = path.join(dir, 'sparse.fresh');
    await runToolOk(nbdcopy, [uri, fresh]);
    assert.deepEqual(await readFile(fresh), await readFile(expected));
    const freshStat = await stat(fresh);
    assert.ok(
      freshStat.blocks * 512 <= dataBytes + 1 * MiB,
      `the fresh copy allocated ${freshStat.blocks * 512} bytes for ${dataBytes} bytes of data`,
    );
  });

  test('nbdinfo --map shows the written ranges as data and the rest as holes', async () => {
    const rows = await allocationMap(daemon.uri('sparse'));
    const size = 256 * MiB;
    const data = (offset: number, length: number) => [offset, length, 'data'];
    const hole = (offset: number, length: number) => [offset, length, 'hole,zero'];
    assert.deepEqual(rows, [
      data(0, 64 * KiB),
      hole(64 * KiB, 10 * MiB - 64 * KiB),
      data(10 * MiB, 1 * MiB),
      hole(11 * MiB, 89 * MiB + 192 * KiB),
      data(100 * MiB + 192 * KiB, 2 * MiB),
      hole(102 * MiB + 192 * KiB, 98 * MiB - 192 * KiB),
      data(200 * MiB, 512 * KiB),
      hole(200 * MiB + 512 * KiB, 56 * MiB - 640 * KiB),
      data(size - 128 * KiB, 128 * KiB),
    ]);
    const list = await runToolOk(await tools.nbdinfo(), [
      '--list',
      `nbd+unix:///?socket=${daemon.handle.config.layout.nbdSocket}`,
    ]);
    for (const name of ['copy', 'patterns', 'source', 'sparse']) {
      assert.match(list, new RegExp(`export="${name}"`));
    }
    assert.match(list, /export-size: 268435456/);
  });
});
