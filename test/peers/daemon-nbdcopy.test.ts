/**
 * nbdcopy both ways through the daemon on a sparse 4 GiB thin device: a raw file into the
 * device, then the device into a new file. nbdcopy zeroes the source's holes with
 * NBD_CMD_WRITE_ZEROES of up to 128 MiB, far over the 32 MiB maximum payload, which bounds
 * only WRITE and READ; the copy must be byte-identical and keep the holes as holes (unmapped
 * blocks in the pool, holes in the file).
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open, stat, truncate, writeFile } from 'node:fs/promises';
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
const GiB = 1024 * MiB;
const SIZE = 4 * GiB;
const BLOCK = 64 * KiB;
const dir = await tempDir('thinp-daemon-nbdcopy-');

let daemon: InProcessDaemon;

before(async () => {
  await requireTool('nbdcopy', 'libnbd-bin');
  await requireTool('cmp', 'diffutils');
  daemon = await startInProcess(path.join(dir, 'root'));
  await daemon.handle.deviceSet.createDevice('big', SIZE);
});

after(() => daemon?.stop());

/** Data runs of the source: some on whole pool blocks, some not, spread over 4 GiB. */
const RUNS = [
  { offset: 0, length: 3 * BLOCK },
  { offset: 700 * MiB + 4 * KiB, length: 10 * KiB },
  { offset: 1 * GiB + 5 * MiB, length: 1 * MiB },
  { offset: 2 * GiB + 123 * KiB, length: 300 * KiB },
  { offset: 3 * GiB - 8 * KiB, length: 16 * KiB },
  { offset: SIZE - 2 * BLOCK, length: 2 * BLOCK },
];

/** The pool blocks the runs touch. */
function touchedBlocks(): number {
  const blocks = new Set<number>();
  for (const r of RUNS) {
    for (let b = Math.floor(r.offset / BLOCK); b * BLOCK < r.offset + r.length; b++) blocks.add(b);
  }
  return blocks.size;
}

describe('nbdcopy through the daemon on a sparse multi-GiB device', () => {
  test('file to device to file: byte-identical, holes kept', async () => {
    const nbdcopy = await requireTool('nbdcopy', 'libnbd-bin');
    const cmp = await requireTool('cmp', 'diffutils');
    const source = path.join(dir, 'source.raw');
    await writeFile(source, '');
    await truncate(source, SIZE);
    const file = await open(source, 'r+');
    try {
      for (const r of RUNS) await file.write(randomBytes(r.length), 0, r.length, r.offset);
    } finally {
      await file.close();
    }
    const uri = daemon.uri('big');

    await runToolOk(nbdcopy, [source, uri]);
    const [entry] = (await daemon.handle.deviceSet.list()).filter((d) => d.name === 'big');
    assert.equal(
      entry?.mappedBytes,
      touchedBlocks() * BLOCK,
      'the pool maps exactly the blocks holding data',
    );

    const back = path.join(dir, 'back.raw');
    await runToolOk(nbdcopy, [uri, back]);
    const result = await runTool(cmp, [source, back]);
    assert.equal(result.status, 0, result.stdout + result.stderr);
    const copied = await stat(back);
    assert.equal(copied.size, SIZE);
    assert.ok(
      copied.blocks * 512 <= touchedBlocks() * BLOCK + 1 * MiB,
      `the copy allocated ${copied.blocks * 512} bytes for ${touchedBlocks()} blocks of data`,
    );
  });
});
