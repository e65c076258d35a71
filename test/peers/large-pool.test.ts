import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { FileDevice } from '../../src/block/index.js';
import { PoolMetadata } from '../../src/thin/index.js';
import { readDumpXml } from '../../src/tools/xml/dump-reader.js';
import { requirePeer, thinCheck } from '../support/peers.js';
import { tempDir } from '../support/temp.js';

const dir = tempDir('thinp-large-');

const SEQUENTIAL = 500_000;
const SPARSE = 500_000;
const OVERWRITES = 20_000;

/** A deterministic permutation-ish scatter of virtual blocks for the sparse device. */
function sparseVblock(i: number): number {
  return (i * 2_654_435_761) % 2 ** 32;
}

describe('a pool with more than a million mappings', () => {
  it('builds trees of depth 3, passes thin_check and dumps exactly as written', async () => {
    await requirePeer('thin_check');
    const thinDumpPath = await requirePeer('thin_dump');
    const file = path.join(await dir, 'large.meta');
    const dev = await FileDevice.open(file, { create: { size: 128 << 20 } });
    const expected = new Map<number, Map<number, number>>([
      [0, new Map()],
      [1, new Map()],
      [2, new Map()],
    ]);
    const origin = expected.get(0) as Map<number, number>;
    const snap = expected.get(1) as Map<number, number>;
    const sparse = expected.get(2) as Map<number, number>;
    try {
      const md = await PoolMetadata.format(dev, {
        dataBlockSize: 128,
        nrDataBlocks: SEQUENTIAL + SPARSE + OVERWRITES + 10,
        cacheBlocks: 8192,
      });
      await md.createThin(0);
      for (let v = 0; v < SEQUENTIAL; v++) {
        const b = await md.allocDataBlock();
        await md.insertMapping(0, v, b);
        origin.set(v, b);
        if (v % 100_000 === 99_999) await md.commit();
      }
      await md.createSnapshot(1, 0);
      for (const [v, b] of origin) snap.set(v, b);
      for (let i = 0; i < OVERWRITES; i++) {
        const v = (i * 7919) % SEQUENTIAL;
        const b = await md.allocDataBlock();
        await md.insertMapping(1, v, b);
        snap.set(v, b);
      }
      await md.createThin(2);
      for (let i = 0; i < SPARSE; i++) {
        const b = await md.allocDataBlock();
        await md.insertMapping(2, sparseVblock(i), b);
        sparse.set(sparseVblock(i), b);
        if (i % 100_000 === 99_999) await md.commit();
      }
      await md.commit();
      assert.ok((await md.mappingTreeDepth(0)) >= 3, 'device 0 has a tree of depth 3 or more');
      assert.ok((await md.mappingTreeDepth(2)) >= 3, 'device 2 has a tree of depth 3 or more');
      let total = 0;
      for (const id of [0, 1, 2]) total += await md.mappedBlocks(id);
      assert.ok(total >= 1_000_000, `${total} mappings`);
    } finally {
      await dev.close();
    }

    const check = await thinCheck(file);
    assert.equal(check.status, 0, check.stdout + check.stderr);

    const child = spawn(thinDumpPath, [file], { stdio: ['ignore', 'pipe', 'inherit'] });
    let device = -1;
    const seen = new Map<number, number>();
    for await (const event of readDumpXml(child.stdout)) {
      if (event.kind === 'device') device = event.info.devId;
      if (event.kind === 'run') {
        const maps = expected.get(device) as Map<number, number>;
        for (let i = 0; i < event.run.length; i++) {
          const v: number = event.run.vblock + i;
          if (maps.get(v) !== event.run.dataBlock + i) {
            assert.fail(
              `device ${device} block ${v}: dump says ${event.run.dataBlock + i}, wrote ${maps.get(v)}`,
            );
          }
        }
        seen.set(device, (seen.get(device) ?? 0) + event.run.length);
      }
    }
    for (const [id, maps] of expected) assert.equal(seen.get(id), maps.size, `mappings of ${id}`);
  });
});
