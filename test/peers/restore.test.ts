/**
 * `thinp restore` against the real thin-provisioning-tools: what thinp writes must pass
 * thin_check, and thin_dump must print exactly what thinp's own dump prints (and what the
 * input says, in thin_dump's canonical form).
 */

import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import fc from 'fast-check';
import {
  checkMetadata,
  dumpMetadata,
  formatDumpXml,
  type MetadataImage,
  openMetadataFile,
} from '../../src/tools/index.js';
import { arbMetadataImage, canonicalImage } from '../support/arbitrary-image.js';
import { thinp } from '../support/cli.js';
import { FIXTURE_DIR, fixtureNames, readFixtureText } from '../support/fixtures.js';
import { requirePeer, thinCheck, thinDump } from '../support/peers.js';
import { tempDir } from '../support/temp.js';

const dir = await tempDir('thinp-restore-peers-');
const images = fc.sample(
  arbMetadataImage({ maxDevices: 8, maxRunsPerDevice: 16 }).filter((i) => i.devices.length > 0),
  { numRuns: 20, seed: 20_250_117 },
);

before(async () => {
  await requirePeer('thin_check');
  await requirePeer('thin_dump');
});

async function ourDump(file: string): Promise<string> {
  const device = await openMetadataFile(file, { readOnly: true });
  let text = '';
  try {
    await dumpMetadata(device, (chunk) => {
      text += chunk;
    });
  } finally {
    await device.close();
  }
  return text;
}

/** `thinp restore -i xml` into a new 64 MiB file; asserts thin_check and thin_dump agree. */
async function restoreAndCompare(xml: string, name: string, expected: string): Promise<void> {
  const meta = path.join(dir, `${name}.meta`);
  const result = await thinp(['restore', '-i', xml, '--metadata', meta, '--metadata-size', '64M'], {
    cwd: dir,
  });
  assert.equal(result.status, 0, result.stderr);
  const check = await thinCheck(meta);
  assert.equal(check.status, 0, `thin_check failed:\n${check.stdout}${check.stderr}`);
  const theirs = await thinDump(meta);
  assert.equal(theirs, await ourDump(meta));
  assert.equal(theirs, expected);
}

describe('thinp restore of the fixtures passes thin_check and thin_dump', () => {
  for (const name of fixtureNames()) {
    test(`${name}.dump.xml`, async () => {
      const xml = await readFixtureText(`${name}.dump.xml`);
      await restoreAndCompare(
        path.join(FIXTURE_DIR, `${name}.dump.xml`),
        `fixture-${name}`,
        xml.replace('version="1"', 'version="2"'),
      );
    });
  }
});

describe('thinp restore of generated images passes thin_check and thin_dump', () => {
  images.forEach((image, i) => {
    const mappings = image.devices.reduce((sum, device) => sum + device.info.mappedBlocks, 0);
    test(`image ${i} (${image.devices.length} devices, ${mappings} mappings)`, async () => {
      const xml = path.join(dir, `image-${i}.xml`);
      const text = formatDumpXml(canonicalImage(image));
      await writeFile(xml, text);
      await restoreAndCompare(xml, `image-${i}`, text);
    });
  });
});

/**
 * Shapes the bottom-up builder must get right: a tree of three levels whose last leaf and
 * last internal node are balanced with their neighbours, a leaf exactly full and one
 * entry over, an empty device, data blocks shared by four devices (counts in the
 * ref-count tree), and devices given out of id order.
 */
function bulkImage(): MetadataImage {
  const device = (devId: number, runs: MetadataImage['devices'][number]['runs']) => ({
    info: {
      devId,
      mappedBlocks: runs.reduce((sum, r) => sum + r.length, 0),
      transaction: devId,
      creationTime: 1,
      snapTime: 2,
    },
    runs,
  });
  const big = 252 * 253 + 10;
  return {
    superblock: {
      uuid: '',
      time: 3,
      transaction: 7,
      flags: 0,
      version: 2,
      dataBlockSize: 128,
      nrDataBlocks: 200_000,
    },
    devices: [
      device(13, [{ vblock: 0, dataBlock: 0, length: 1000, time: 1 }]),
      device(1, [{ vblock: 5, dataBlock: 100_000, length: big, time: 2 }]),
      device(2, [{ vblock: 0, dataBlock: 190_000, length: 252, time: 0 }]),
      device(3, [{ vblock: 1, dataBlock: 191_000, length: 253, time: 0 }]),
      device(4, []),
      device(10, [{ vblock: 0, dataBlock: 0, length: 1000, time: 1 }]),
      device(11, [{ vblock: 0, dataBlock: 0, length: 1000, time: 1 }]),
      device(12, [{ vblock: 7, dataBlock: 0, length: 1000, time: 1 }]),
    ],
  };
}

describe('thinp restore builds its trees bottom-up', () => {
  test('full leaves, balanced last nodes, shared data blocks and unsorted devices pass thin_check and both checks', async () => {
    const image = bulkImage();
    const xml = path.join(dir, 'bulk.xml');
    await writeFile(xml, formatDumpXml(image));
    const expected = formatDumpXml(canonicalImage(image));
    await restoreAndCompare(xml, 'bulk', expected);
    const device = await openMetadataFile(path.join(dir, 'bulk.meta'), { readOnly: true });
    try {
      const report = await checkMetadata(device);
      assert.deepEqual(report.problems, []);
      assert.equal(report.mappings, 252 * 253 + 10 + 252 + 253 + 4 * 1000);
      assert.equal(report.devices, 8);
    } finally {
      await device.close();
    }
  });
});
