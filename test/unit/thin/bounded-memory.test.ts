import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { FileDevice } from '../../../src/block/index.js';
import { MAX_METADATA_BLOCKS, MIN_CACHE_BLOCKS } from '../../../src/pdata/index.js';
import { MetadataImport, PoolMetadata } from '../../../src/thin/index.js';
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

describe('the default metadata cache', () => {
  const MAPPINGS = 600_000;

  let built: Promise<string> | undefined;
  /** A pool of one device with MAPPINGS mappings, built at once (once); returns its file. */
  function bigPool(): Promise<string> {
    built ??= buildPool();
    return built;
  }

  async function buildPool(): Promise<string> {
    const file = path.join(await dir, 'cache.meta');
    const dev = await FileDevice.open(file, { create: { size: 64 << 20 } });
    try {
      const build = await MetadataImport.begin(dev, {
        dataBlockSize: 128,
        nrDataBlocks: MAPPINGS,
        time: 0,
        transactionId: 1,
        flags: 0,
      });
      build.beginDevice(0, { transactionId: 0, creationTime: 0, snapshottedTime: 0 });
      await build.addRun(0, 0, MAPPINGS, 0);
      await build.endDevice();
      await build.finish();
    } finally {
      await dev.close();
    }
    return file;
  }

  /** Looks up one vblock per leaf of device 0; returns the device reads it took. */
  async function touchEveryLeaf(md: PoolMetadata): Promise<number> {
    const before = md.cacheStats.reads;
    for (let v = 0; v < MAPPINGS; v += 200) assert.ok((await md.lookup(0, v)) !== undefined);
    return md.cacheStats.reads - before;
  }

  it('holds the metadata in use, so a second pass over every leaf reads nothing', async () => {
    const file = await bigPool();
    const dev = await FileDevice.open(file, { readOnly: true });
    try {
      const md = await PoolMetadata.open(dev);
      const used = md.metadataUsage.usedBlocks;
      assert.ok(used > MIN_CACHE_BLOCKS, `${used} blocks in use`);
      assert.equal(md.cacheStats.capacity, Math.ceil(used * 1.25));
      assert.ok((await touchEveryLeaf(md)) > 0);
      assert.equal(await touchEveryLeaf(md), 0);
      assert.ok(md.cacheStats.cachedBlocks <= md.cacheStats.capacity);
      await md.close();
    } finally {
      await dev.close();
    }
  });

  it('stays within maxCacheBlocks, and a fixed cacheBlocks overrides it', async () => {
    const file = await bigPool();
    const dev = await FileDevice.open(file, { readOnly: true });
    try {
      const bounded = await PoolMetadata.open(dev, { maxCacheBlocks: 1500 });
      assert.equal(bounded.cacheStats.capacity, 1500);
      await touchEveryLeaf(bounded);
      assert.ok((await touchEveryLeaf(bounded)) > 0, 'the bounded cache cannot hold every leaf');
      assert.ok(bounded.cacheStats.cachedBlocks <= 1500);
      await bounded.close();
      const fixed = await PoolMetadata.open(dev, { cacheBlocks: 300, maxCacheBlocks: 1500 });
      assert.equal(fixed.cacheStats.capacity, 300);
      await fixed.close();
    } finally {
      await dev.close();
    }
  });
});
