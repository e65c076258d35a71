import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FileDevice } from '../../src/block/index.js';
import { PoolMetadata } from '../../src/thin/index.js';
import { CrashDevice, type CrashMode } from '../support/crash-device.js';
import {
  arbOp,
  assertMatches,
  type MetadataModel,
  ModelDriver,
  type Op,
} from '../support/metadata-model.js';
import { requirePeer, thinCheck } from '../support/peers.js';
import { tempDir } from '../support/temp.js';

const dir = tempDir('thinp-crash-');

const [WORKLOAD] = fc.sample(
  fc.array(arbOp({ vblocks: 400 }), { minLength: 300, maxLength: 300 }),
  {
    numRuns: 1,
    seed: 424242,
  },
) as [Op[]];

interface Outcome {
  /** What the last successful commit held. */
  committed: MetadataModel;
  /** What a commit in flight at the crash would have held, if one was. */
  inFlight: MetadataModel | undefined;
  crashed: boolean;
  opsAfterFormat: number;
}

/** Formats a pool on `file`, then runs the workload with a crash armed at op `crashAt`. */
async function runUntilCrash(file: string, crashAt: number, mode: CrashMode, seed: number) {
  await rm(file, { force: true });
  const inner = await FileDevice.open(file, { create: { size: 4 << 20 } });
  const dev = new CrashDevice(inner);
  let rng = seed;
  const random = () => {
    rng = (rng * 1103515245 + 12345) % 2 ** 31;
    return rng / 2 ** 31;
  };
  const md = await PoolMetadata.format(dev, {
    dataBlockSize: 128,
    nrDataBlocks: 5000,
    cacheBlocks: 16,
  });
  const driver = new ModelDriver(md);
  await driver.commit();
  const start = dev.opCount;
  if (crashAt >= 0) dev.crashAfter(start + crashAt, mode, random);
  let inFlight: MetadataModel | undefined;
  let crashed = false;
  try {
    for (const op of WORKLOAD) {
      inFlight = op.kind === 'commit' ? driver.model.clone() : undefined;
      await driver.apply(op);
    }
    inFlight = driver.model.clone();
    await driver.commit();
    inFlight = undefined;
  } catch (err) {
    if (!dev.crashed) throw err;
    crashed = true;
  }
  await dev.close();
  await inner.close();
  return { committed: driver.committed, inFlight, crashed, opsAfterFormat: dev.opCount - start };
}

/** Reopens `file` and checks it holds one of the allowed states, and passes thin_check. */
async function verifyReopened(file: string, outcome: Outcome): Promise<void> {
  const dev = await FileDevice.open(file);
  try {
    const md = await PoolMetadata.open(dev);
    try {
      await assertMatches(md, outcome.committed);
    } catch (err) {
      if (outcome.inFlight === undefined) throw err;
      await assertMatches(md, outcome.inFlight);
    }
  } finally {
    await dev.close();
  }
  const check = await thinCheck(file);
  assert.equal(check.status, 0, check.stdout + check.stderr);
}

describe('crashes at every kind of write', () => {
  it('reopens at exactly the last commit after dropping every unflushed write', async () => {
    await requirePeer('thin_check');
    const file = path.join(await dir, 'drop-all.meta');
    const full = await runUntilCrash(file, -1, 'drop-all', 1);
    assert.equal(full.crashed, false);
    const total = full.opsAfterFormat;
    const points = 100;
    // Every crash point is a different write or flush (a flush writes neighbouring blocks
    // with one write, so there are fewer writes than blocks).
    assert.ok(total > points, `the workload did only ${total} writes and flushes`);
    for (let i = 0; i < points; i++) {
      const at = Math.floor((i * total) / points);
      const outcome = await runUntilCrash(file, at, 'drop-all', i);
      assert.equal(outcome.crashed, true, `crash at op ${at} did not happen`);
      await verifyReopened(file, outcome);
    }
  });

  it('reopens at the last commit (or the one in flight) when a random subset of writes lands', async () => {
    await requirePeer('thin_check');
    const file = path.join(await dir, 'subset.meta');
    const total = (await runUntilCrash(file, -1, 'random-subset', 1)).opsAfterFormat;
    const points = 100;
    for (let i = 0; i < points; i++) {
      const at = Math.floor(((i + 0.5) * total) / points);
      const outcome = await runUntilCrash(file, at, 'random-subset', 1000 + i);
      assert.equal(outcome.crashed, true);
      await verifyReopened(file, outcome);
    }
  });
});
