/**
 * A metadata snapshot is one critical section: reserving it while a mapping insert is queued
 * must leave metadata that both checkers accept (it once took the lock three times and
 * referenced roots the copy did not describe).
 */

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { FileDevice } from '../../../src/block/index.js';
import { PoolMetadata } from '../../../src/thin/index.js';
import { checkMetadata } from '../../../src/tools/index.js';
import { requirePeer, thinCheck } from '../../support/peers.js';
import { tempDir } from '../../support/temp.js';

const dir = tempDir('thinp-snap-race-');

describe('reserveMetadataSnap racing other changes', () => {
  it('leaves metadata that thinp check and thin_check accept', async () => {
    await requirePeer('thin_check');
    const file = path.join(await dir, 'race.meta');
    const dev = await FileDevice.open(file, { create: { size: 8 << 20 } });
    try {
      const md = await PoolMetadata.format(dev, { dataBlockSize: 128, nrDataBlocks: 1000 });
      await md.createThin(1);
      for (let v = 0; v < 10; v++) await md.insertMapping(1, v, await md.allocDataBlock());
      await md.commit();
      const block = await md.allocDataBlock();
      const [held] = await Promise.all([
        md.reserveMetadataSnap(),
        md.insertMapping(1, 100, block),
        md.createThin(2),
      ]);
      assert.ok(held > 0);
      await md.commit();
      assert.deepEqual((await checkMetadata(dev)).problems, []);
      const roots = await md.heldRoots();
      let held10 = 0;
      await md.walkMappings(1, () => void held10++, roots);
      assert.equal(held10, 10, 'the snapshot is the commit before the queued insert');
      await md.close();
    } finally {
      await dev.close();
    }
    const check = await thinCheck(file);
    assert.equal(check.status, 0, check.stdout + check.stderr);
  });
});
