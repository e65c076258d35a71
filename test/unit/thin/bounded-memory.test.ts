import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { FileDevice } from '../../../src/block/index.js';
import { MAX_METADATA_BLOCKS } from '../../../src/pdata/index.js';
import { PoolMetadata } from '../../../src/thin/index.js';
import { tempDir } from '../../support/temp.js';

const dir = tempDir('thinp-bounded-');

describe('a metadata device of the largest size the format allows', () => {
  it('is formatted, opened and used with a cache of 2 MiB', async () => {
    const file = path.join(await dir, 'huge.meta');
    const dev = await FileDevice.open(file, { create: { size: 16 * 2 ** 30 } });
    try {
      const md = await PoolMetadata.format(dev, {
        dataBlockSize: 128,
        nrDataBlocks: 1_000_000,
        cacheBlocks: 512,
      });
      assert.equal(md.metadataUsage.totalBlocks, MAX_METADATA_BLOCKS);
      await md.close();
      const reopened = await PoolMetadata.open(dev, { cacheBlocks: 512 });
      await reopened.createThin(0);
      for (let v = 0; v < 60_000; v++) {
        await reopened.insertMapping(0, (v * 7919) % 1_000_003, await reopened.allocDataBlock());
        if (v % 10_000 === 9_999) await reopened.commit();
      }
      await reopened.commit();
      const stats = reopened.cacheStats;
      assert.ok(
        stats.cachedBlocks <= stats.capacity,
        `${stats.cachedBlocks} blocks cached, more than the ${stats.capacity} allowed`,
      );
      assert.equal(await reopened.mappedBlocks(0), 60_000);
    } finally {
      await dev.close();
    }
  });
});
