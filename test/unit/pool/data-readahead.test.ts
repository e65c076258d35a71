/**
 * The pool turns the kernel's readahead off on its data device (`BlockDevice.stopReadahead`)
 * unless `dataReadahead` keeps it: a thin device's two reads in a row of 64 KiB then bring
 * those 128 KiB into the data file's page cache and no more (util-linux fincore counts them).
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { describe, it } from 'node:test';
import { FileDevice, MemoryDevice } from '../../../src/block/index.js';
import { ThinPool, type ThinPoolOptions } from '../../../src/pool/index.js';
import { residentBytes } from '../../support/page-cache.js';
import { tempDir } from '../../support/temp.js';

const B = 64 * 1024;
const MiB = 1024 * 1024;
const dir = await tempDir('thinp-readahead-');

let pools = 0;

/** What two reads of 64 KiB in a row from a thin device leave cached of the data file. */
async function cachedByTwoReads(options: ThinPoolOptions): Promise<number> {
  const file = path.join(dir, `data-${pools++}`);
  const data = await FileDevice.open(file, { create: { size: 64 * MiB } });
  const pool = await ThinPool.create(data, new MemoryDevice(4 * MiB), {
    blockSize: B,
    commitIntervalMs: 0,
    ...options,
  });
  try {
    await pool.createThin(0);
    const dev = pool.device(0, 16 * MiB);
    const written = randomBytes(8 * MiB);
    await dev.write(written, 0); // a large write: around the page cache
    assert.equal(residentBytes(file), 0, 'nothing of the data file cached yet');
    const buf = Buffer.alloc(B);
    await dev.read(buf, MiB);
    await dev.read(buf, MiB + B);
    assert.deepEqual(buf, written.subarray(MiB + B, MiB + 2 * B));
    return residentBytes(file);
  } finally {
    await pool.close();
    await data.close();
  }
}

describe("the data device's readahead", () => {
  it('is off by default: the reads bring in what they ask for', async () => {
    assert.equal(await cachedByTwoReads({}), 2 * B);
  });

  it('stays on with dataReadahead: the kernel reads further', async () => {
    const cached = await cachedByTwoReads({ dataReadahead: true });
    assert.ok(cached > 2 * B, `${cached} bytes cached (read_ahead_kb > 0 here)`);
  });
});
