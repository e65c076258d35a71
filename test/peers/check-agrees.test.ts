/**
 * The checker against the real thin_check 0.9.0: whenever thin_check rejects a fixture, the
 * checker reports a problem, and a fatal one when thin_check's verdict survives
 * --ignore-non-fatal-errors. (The checker may find more: thin_check 0.9.0 checks neither the
 * data space map nor the superblock's magic.)
 */

import assert from 'node:assert/strict';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import { FileDevice } from '../../src/block/index.js';
import { PoolMetadata } from '../../src/thin/index.js';
import { checkMetadata, formatReport } from '../../src/tools/check/index.js';
import { corruptFixtureNames, fixtureNames, unpackFixture } from '../support/fixtures.js';
import { requirePeer, thinCheck } from '../support/peers.js';
import { tempDir } from '../support/temp.js';

const dir = await tempDir('thinp-check-agrees-');

/**
 * thin_check 0.9.0 skips the node occupancy check under --ignore-non-fatal-errors (it then
 * reports only the leaked block): the checker keeps calling too few entries fatal.
 */
const THIN_CHECK_DOWNGRADES = new Set(['corrupt/too-few-entries']);

describe('checkMetadata agrees with thin_check', () => {
  before(async () => {
    await requirePeer('thin_check');
  });

  for (const name of [...fixtureNames(), ...corruptFixtureNames()]) {
    test(`agrees on ${name}`, async () => {
      const file = await unpackFixture(name, dir);
      const strict = await thinCheck(file);
      const lenient = await thinCheck(file, ['--ignore-non-fatal-errors']);
      const device = await FileDevice.open(file, { readOnly: true });
      const report = await checkMetadata(device).finally(() => device.close());
      const text = `thin_check:\n${strict.stdout}${strict.stderr}\nthinp:\n${formatReport(report)}`;
      const fatal = report.problems.some((p) => p.severity === 'fatal');
      if (lenient.status !== 0) assert.ok(fatal, text);
      else if (strict.status !== 0) {
        assert.ok(report.problems.length > 0, text);
        if (!THIN_CHECK_DOWNGRADES.has(name)) assert.ok(!fatal, text);
      }
    });
  }

  test('held-root passes both checkers with -m', async () => {
    const file = await unpackFixture('held-root', dir);
    assert.equal((await thinCheck(file, ['-m'])).status, 0);
    const device = await FileDevice.open(file, { readOnly: true });
    const report = await checkMetadata(device, { metadataSnap: true }).finally(() =>
      device.close(),
    );
    assert.deepEqual(report.problems, [], formatReport(report));
  });

  test('agrees that metadata the engine wrote is sound', async () => {
    const file = path.join(dir, 'engine.meta');
    const device = await FileDevice.open(file, { create: { size: 8 * 1024 * 1024 } });
    const md = await PoolMetadata.format(device, { dataBlockSize: 128, nrDataBlocks: 4096 });
    await md.createThin(0);
    for (let v = 0; v < 300; v++) await md.insertMapping(0, v, await md.allocDataBlock());
    await md.createSnapshot(1, 0);
    for (let v = 0; v < 50; v++) await md.insertMapping(1, v * 3, await md.allocDataBlock());
    await md.commit();
    await md.reserveMetadataSnap();
    await md.removeMapping(0, 7);
    await md.commit();
    await md.close();
    const report = await checkMetadata(device).finally(() => device.close());
    const strict = await thinCheck(file);
    assert.equal(strict.status, 0, `${strict.stdout}${strict.stderr}`);
    assert.deepEqual(report.problems, [], formatReport(report));
  });
});
