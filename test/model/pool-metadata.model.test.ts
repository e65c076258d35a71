import assert from 'node:assert/strict';
import { truncate } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { FileDevice, MemoryDevice } from '../../src/block/index.js';
import { PoolMetadata } from '../../src/thin/index.js';
import { parseDumpXml } from '../../src/tools/xml/dump-reader.js';
import { arbOp, type MetadataModel, ModelDriver, type Op } from '../support/metadata-model.js';
import { requirePeer, thinCheck, thinDump } from '../support/peers.js';
import { tempDir } from '../support/temp.js';

const dir = tempDir('thinp-model-');

async function runOnFile(file: string, ops: readonly Op[], cacheBlocks = 16) {
  await truncate(file, 0).catch(() => undefined);
  const dev = await FileDevice.open(file, { create: { size: 8 << 20 } }).catch(async () => {
    await truncate(file, 8 << 20);
    return FileDevice.open(file);
  });
  try {
    const md = await PoolMetadata.format(dev, {
      dataBlockSize: 128,
      nrDataBlocks: 20_000,
      force: true,
      cacheBlocks,
    });
    const driver = new ModelDriver(md);
    for (const op of ops) await driver.apply(op);
    await driver.commit();
    return driver;
  } finally {
    await dev.close();
  }
}

/** thin_check passes and thin_dump shows exactly the model's mappings. */
async function verifyWithPeers(file: string, model: MetadataModel): Promise<void> {
  const check = await thinCheck(file);
  assert.equal(check.status, 0, `thin_check failed:\n${check.stdout}${check.stderr}`);
  const image = parseDumpXml(await thinDump(file));
  assert.deepEqual(
    image.devices.map((d) => d.info.devId),
    model.ids(),
  );
  for (const device of image.devices) {
    const seen = new Map<number, number>();
    for (const run of device.runs) {
      for (let i = 0; i < run.length; i++) seen.set(run.vblock + i, run.dataBlock + i);
    }
    assert.deepEqual(seen, model.devices.get(device.info.devId));
  }
}

describe('pool metadata against an in-memory model', () => {
  it('agrees with the model after every commit and abort, and with thin_check and thin_dump', async () => {
    await requirePeer('thin_check');
    const file = path.join(await dir, 'model.meta');
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(arbOp({ vblocks: 600 }), { minLength: 20, maxLength: 200 }),
        async (ops) => {
          const driver = await runOnFile(file, ops);
          runs++;
          if (runs % 3 === 1) await verifyWithPeers(file, driver.committed);
        },
      ),
      { numRuns: 30, seed: 20261123 },
    );
  });

  it('survives one long sequence of thousands of operations with a tiny cache', async () => {
    await requirePeer('thin_check');
    const file = path.join(await dir, 'long.meta');
    const [ops] = fc.sample(
      fc.array(arbOp({ vblocks: 3000 }), { minLength: 4000, maxLength: 4000 }),
      {
        numRuns: 1,
        seed: 7,
      },
    );
    const driver = await runOnFile(file, ops as Op[]);
    assert.ok(driver.commits > 100, `only ${driver.commits} commits`);
    await verifyWithPeers(file, driver.committed);
  });

  it('keeps a snapshot chain of depth 50 exact while every level diverges', async () => {
    const md = await PoolMetadata.format(new MemoryDevice(16 << 20), {
      dataBlockSize: 128,
      nrDataBlocks: 100_000,
    });
    const driver = new ModelDriver(md);
    await driver.apply({ kind: 'create', id: 0 });
    for (let level = 1; level <= 50; level++) {
      await driver.apply({ kind: 'write', pick: level - 1, vblock: level * 7, count: 30 });
      await driver.apply({ kind: 'snapshot', id: level, pick: level - 1 });
      if (level % 10 === 0) await driver.commit();
    }
    await driver.commit();
  });
});
