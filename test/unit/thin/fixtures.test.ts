import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { FileDevice } from '../../../src/block/index.js';
import { PoolMetadata, type TreeRoots } from '../../../src/thin/index.js';
import { parseDumpXml } from '../../../src/tools/xml/dump-reader.js';
import type { MetadataImage } from '../../../src/tools/xml/metadata-image.js';
import { fixtureNames, readFixtureText, unpackFixture } from '../../support/fixtures.js';
import { thinCheck, thinDump } from '../../support/peers.js';
import { tempDir } from '../../support/temp.js';

const dir = tempDir('thinp-fixtures-');

/** What the metadata says, in the XML's terms. */
async function readBack(md: PoolMetadata, roots?: TreeRoots): Promise<MetadataImage['devices']> {
  const devices = await md.devicesIn(roots ?? md.roots);
  const out: MetadataImage['devices'] = [];
  for (const { id, details } of devices) {
    const runs: MetadataImage['devices'][number]['runs'] = [];
    await md.walkMappings(
      id,
      (vblock, dataBlock, time) => {
        const last = runs[runs.length - 1];
        if (
          last !== undefined &&
          last.vblock + last.length === vblock &&
          last.dataBlock + last.length === dataBlock &&
          last.time === time
        ) {
          last.length++;
        } else {
          runs.push({ vblock, dataBlock, length: 1, time });
        }
      },
      roots,
    );
    out.push({
      info: {
        devId: id,
        mappedBlocks: details.mappedBlocks,
        transaction: details.transactionId,
        creationTime: details.creationTime,
        snapTime: details.snapshottedTime,
      },
      runs,
    });
  }
  return out;
}

describe('the engine opens every fixture', () => {
  for (const name of fixtureNames()) {
    it(`reads ${name} back as thin_dump does`, async () => {
      const file = await unpackFixture(name, await dir);
      const expected = parseDumpXml(await readFixtureText(`${name}.dump.xml`));
      const dev = await FileDevice.open(file, { readOnly: true });
      try {
        const md = await PoolMetadata.open(dev);
        assert.equal(md.transactionId, expected.superblock.transaction);
        assert.equal(md.time, expected.superblock.time);
        assert.equal(md.dataBlockSize, expected.superblock.dataBlockSize);
        assert.equal(md.dataUsage.totalBlocks, expected.superblock.nrDataBlocks);
        assert.deepEqual(await readBack(md), expected.devices);
        if (md.heldRoot !== 0) {
          const snap = parseDumpXml(await readFixtureText(`${name}.snap-dump.xml`));
          assert.deepEqual(await readBack(md, await md.heldRoots()), snap.devices);
        }
      } finally {
        await dev.close();
      }
    });
  }
});

describe('the engine changes what the tools and the kernel wrote', () => {
  for (const name of fixtureNames()) {
    it(`writes to ${name}, and thin_check and thin_dump agree`, async () => {
      const original = await unpackFixture(name, await dir);
      const file = path.join(await dir, `${name}.changed.meta`);
      await copyFile(original, file);
      const dev = await FileDevice.open(file);
      const expected = new Map<number, Map<number, number>>();
      try {
        const md = await PoolMetadata.open(dev);
        for (const id of await md.deviceIds()) {
          const maps = new Map<number, number>();
          await md.walkMappings(id, (v, b) => {
            maps.set(v, b);
          });
          expected.set(id, maps);
        }
        const ids = [...expected.keys()];
        const first = ids[0];
        if (first !== undefined && md.dataUsage.totalBlocks > md.dataUsage.usedBlocks + 20) {
          // Overwrite some of the first device's blocks (breaking sharing where there is any),
          // remove one, snapshot it.
          const maps = expected.get(first) as Map<number, number>;
          for (const vblock of [...maps.keys()].slice(0, 5).concat([123_456])) {
            const b = await md.allocDataBlock();
            await md.insertMapping(first, vblock, b);
            maps.set(vblock, b);
          }
          const victim = [...maps.keys()][1];
          if (victim !== undefined) {
            await md.removeMapping(first, victim);
            maps.delete(victim);
          }
          const snapId = Math.max(...ids) + 1;
          if (snapId < 2 ** 24) {
            await md.createSnapshot(snapId, first);
            expected.set(snapId, new Map(maps));
          }
        }
        if (ids.length > 1) {
          const last = ids[ids.length - 1] as number;
          await md.deleteDevice(last);
          expected.delete(last);
        }
        await md.createThin(2 ** 24 - 2);
        expected.set(2 ** 24 - 2, new Map());
        await md.commit();
      } finally {
        await dev.close();
      }
      const check = await thinCheck(file);
      assert.equal(check.status, 0, check.stdout + check.stderr);
      const dumped = parseDumpXml(await thinDump(file));
      const got = new Map<number, Map<number, number>>();
      for (const d of dumped.devices) {
        const maps = new Map<number, number>();
        for (const r of d.runs)
          for (let i = 0; i < r.length; i++) maps.set(r.vblock + i, r.dataBlock + i);
        got.set(d.info.devId, maps);
      }
      assert.deepEqual(got, expected);
    });
  }
});
