/**
 * Repair of random single-block damage: pools with snapshots built by the engine (several
 * commits, so that old tree nodes linger in free blocks), then one block zeroed or one bit
 * flipped — a tree node, the superblock, or a space map block, chosen by fast-check. The
 * real thin_check accepts every repaired file; its thin_dump keeps exactly the mappings that
 * did not sit under the damaged block; the report names those; the real thin_repair, where
 * it succeeds, keeps the same devices and mappings.
 */

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import fc from 'fast-check';
import { FileDevice } from '../../src/block/index.js';
import { PoolMetadata } from '../../src/thin/index.js';
import { repairMetadata } from '../../src/tools/index.js';
import {
  dumpMappings,
  type PathedDevice,
  pathedDevices,
  treeBlocks,
} from '../support/metadata-paths.js';
import { requirePeer, thinDump, thinRepair } from '../support/peers.js';
import { assertRepaired } from '../support/repair-assertions.js';
import { tempDir } from '../support/temp.js';

const dir = await tempDir('thinp-repair-damage-');
const BLOCK = 4096;
const META_SIZE = 4 * 1024 * 1024;
const DATA_BLOCKS = 8192;
const RUNS = 15;

interface PoolShape {
  origin: number[];
  snapWrites: number[];
  other: number[];
}

const arbShape: fc.Arbitrary<PoolShape> = fc.record({
  origin: fc.uniqueArray(fc.nat(5000), { minLength: 150, maxLength: 700 }),
  snapWrites: fc.uniqueArray(fc.nat(5000), { minLength: 1, maxLength: 120 }),
  other: fc.uniqueArray(fc.nat(100_000), { maxLength: 300 }),
});

/** Origin 0 → snapshot 1 (partly rewritten) → snapshot 2, and device 3, over three commits. */
async function buildPool(file: string, shape: PoolShape): Promise<void> {
  const device = await FileDevice.open(file, { create: { size: META_SIZE } });
  try {
    const md = await PoolMetadata.format(device, { dataBlockSize: 128, nrDataBlocks: DATA_BLOCKS });
    await md.createThin(0);
    for (const v of shape.origin) await md.insertMapping(0, v, await md.allocDataBlock());
    await md.commit();
    await md.createSnapshot(1, 0);
    for (const v of shape.snapWrites) await md.insertMapping(1, v, await md.allocDataBlock());
    await md.commit();
    await md.createSnapshot(2, 1);
    await md.createThin(3);
    for (const v of shape.other) await md.insertMapping(3, v, await md.allocDataBlock());
    await md.commit();
    await md.close();
  } finally {
    await device.close();
  }
}

interface Damage {
  /** Index into the candidate blocks. */
  pick: number;
  /** Zero the block, or flip this bit of it. */
  bit: number | 'zero';
}

const arbDamage: fc.Arbitrary<Damage> = fc.record({
  pick: fc.nat(),
  bit: fc.oneof(fc.constant<'zero'>('zero'), fc.nat(BLOCK * 8 - 1)),
});

/** Tree nodes, the superblock and the blocks of the space maps (the first few). */
function candidates(devices: PathedDevice[]): number[] {
  const blocks = new Set([0, 1, 2, 3, 4, 5, ...treeBlocks(devices)]);
  return [...blocks].sort((a, b) => a - b);
}

async function damage(file: string, block: number, bit: number | 'zero'): Promise<void> {
  const image = await readFile(file);
  const at = block * BLOCK;
  if (bit === 'zero') image.fill(0, at, at + BLOCK);
  else image[at + (bit >> 3)] = (image[at + (bit >> 3)] as number) ^ (1 << (bit & 7));
  await writeFile(file, image);
}

describe('repair of random single-block damage', () => {
  before(async () => {
    await requirePeer('thin_check');
    await requirePeer('thin_repair');
  });

  test('keeps exactly what the damaged block did not hold, and says what it lost', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(arbShape, arbDamage, async (shape, hit) => {
        run++;
        const file = path.join(dir, `pool-${run}.meta`);
        await buildPool(file, shape);
        const original = await pathedDevices(file);
        const blocks = candidates(original);
        const block = blocks[hit.pick % blocks.length] as number;
        await damage(file, block, hit.bit);

        const repaired = path.join(dir, `pool-${run}.repaired`);
        const overrides =
          block === 0 ? { transactionId: 0, dataBlockSize: 128, nrDataBlocks: DATA_BLOCKS } : {};
        const input = await FileDevice.open(file, { readOnly: true });
        const output = await FileDevice.open(repaired, { create: { size: META_SIZE } });
        const report = await repairMetadata(input, output, overrides).finally(async () => {
          await input.close();
          await output.close();
        });
        const inTree = treeBlocks(original).includes(block);
        assert.deepEqual(
          report.damagedBlocks.map((d) => d.block),
          inTree ? [block] : [],
          JSON.stringify(report),
        );
        assert.equal(report.source, block === 0 ? 'scan' : 'superblock');
        const ours = await assertRepaired(original, new Set([block]), repaired, report);
        const detailsLost = original.filter((d) => d.detailsPath.includes(block)).map((d) => d.id);
        assert.deepEqual(
          report.lost.details.map((d) => d.id),
          detailsLost.filter((id) => ours.has(id)),
        );

        const theirs = path.join(dir, `pool-${run}.thin_repair`);
        await FileDevice.open(theirs, { create: { size: META_SIZE } }).then((d) => d.close());
        const args =
          block === 0
            ? ['--transaction-id=0', '--data-block-size=128', `--nr-data-blocks=${DATA_BLOCKS}`]
            : [];
        const result = await thinRepair(file, theirs, args);
        // With a root of the superblock's trees damaged, thin_repair 0.9.0 falls back to
        // older trees that a scan finds; thinp keeps the last commit only, and says so. With
        // the superblock damaged, both scan, and thin_repair 0.9.0 may settle on an older
        // commit's roots (thinp's choice is checked against the original above).
        const roots = [0, original[0]?.topPath[0], original[0]?.detailsPath[0]];
        if (result.status === 0 && !roots.includes(block)) {
          assert.deepEqual(ours, dumpMappings(await thinDump(theirs)));
        }
      }),
      { numRuns: RUNS },
    );
  });
});
