/**
 * Repair on hand-edited metadata: values the format cannot hold are dropped and named, and
 * a pool whose trees are all gone still yields sound, empty metadata with the loss said.
 */

import assert from 'node:assert/strict';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { FileDevice } from '../../../src/block/index.js';
import { blockChecksum, CSUM_XOR } from '../../../src/pdata/index.js';
import { checkMetadata, formatReport, repairMetadata } from '../../../src/tools/index.js';
import { unpackFixture } from '../../support/fixtures.js';
import { tempDir } from '../../support/temp.js';

const dir = await tempDir('thinp-repair-unit-');
const BLOCK = 4096;

/** Rewrites block `loc` of `file` with `edit`, then its checksum as a btree node. */
async function editNode(file: string, loc: number, edit: (block: Buffer) => void): Promise<void> {
  const image = await readFile(file);
  const block = image.subarray(loc * BLOCK, (loc + 1) * BLOCK);
  edit(block);
  block.writeUInt32LE(blockChecksum(block, CSUM_XOR.btreeNode), 0);
  await writeFile(file, image);
}

async function repair(file: string) {
  const input = await FileDevice.open(file, { readOnly: true });
  const output = await FileDevice.open(`${file}.out`, { create: { size: input.size } });
  try {
    const report = await repairMetadata(input, output);
    const check = await checkMetadata(output);
    assert.deepEqual(check.problems, [], formatReport(check));
    return report;
  } finally {
    await input.close();
    await output.close();
  }
}

test('a device id beyond 2^24 - 1 is dropped and named', async () => {
  const file = await unpackFixture('one-thin', await mkdtemp(path.join(dir, 'id-')));
  // Block 7 is one-thin's top-level leaf: key 0 is device 0's id.
  await editNode(file, 7, (block) => block.writeBigUInt64LE(2n ** 24n, 32));
  const report = await repair(file);
  assert.deepEqual(report.kept, { devices: 0, mappings: 0 });
  assert.deepEqual(report.lost.devices, [
    { id: 2 ** 24, block: null, problem: 'device id 16777216 is beyond the largest, 16777215' },
  ]);
});

test('with both trees unreadable, the pool comes back empty and says what it lost', async () => {
  const file = await unpackFixture('one-thin', await mkdtemp(path.join(dir, 'trees-')));
  await editNode(file, 7, (block) => block.writeUInt32LE(0, 4)); // no node type
  await editNode(file, 6, (block) => block.writeUInt32LE(0, 4));
  const report = await repair(file);
  assert.deepEqual(report.kept, { devices: 0, mappings: 0 });
  assert.deepEqual(
    report.damagedBlocks.map((d) => d.block),
    [6, 7],
  );
  assert.deepEqual(report.lost.deviceRanges, [
    { first: 0, last: null, block: 7, problem: 'unknown node type (flags 0)' },
  ]);
});
