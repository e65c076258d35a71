/**
 * The writer against the real thin-provisioning-tools: generated dumps must restore, check
 * clean and dump back to exactly the text the writer gives their canonical form.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { FileDevice } from '../../src/block/index.js';
import { PoolMetadata } from '../../src/thin/index.js';
import { checkMetadata, dumpMetadata } from '../../src/tools/index.js';
import { formatDumpXml } from '../../src/tools/xml/dump-writer.js';
import { findOnPath } from '../../src/util/index.js';
import { arbMetadataImage, canonicalImage } from '../support/arbitrary-image.js';
import { tempDir } from '../support/temp.js';

const run = promisify(execFile);
const dir = await tempDir('thinp-xml-restore-');
/** The empty pool is a fixture already, so every sample here holds devices. */
const images = fc.sample(
  arbMetadataImage({ maxDevices: 8, maxRunsPerDevice: 16 }).filter((i) => i.devices.length > 0),
  { numRuns: 20, seed: 20_240_601 },
);
const METADATA_SIZE = 64 * 1024 * 1024;

/** The full path of a thin-provisioning-tools program; fails loudly when it is missing. */
async function tool(name: string): Promise<string> {
  const found = await findOnPath(name, [process.env.PATH, '/usr/sbin', '/sbin'].join(':'));
  if (found === undefined) {
    assert.fail(`${name} is not installed: run 'npm run deps:test' (thin-provisioning-tools)`);
  }
  return found;
}

async function runTool(name: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(await tool(name), args, { maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    assert.fail(`${name} ${args.join(' ')} failed: ${String(error)}\n${stdout}${stderr}`);
  }
}

describe('thin_restore of dumps written by thinp', () => {
  images.forEach((image, i) => {
    const mappings = image.devices.reduce((sum, device) => sum + device.info.mappedBlocks, 0);
    test(`generated image ${i} (${image.devices.length} devices, ${mappings} mappings) restores, checks clean and dumps back unchanged`, async () => {
      const xml = path.join(dir, `image-${i}.xml`);
      const meta = path.join(dir, `image-${i}.meta`);
      await writeFile(xml, formatDumpXml(image));
      await writeFile(meta, '');
      await truncate(meta, METADATA_SIZE);
      await runTool('thin_restore', ['-i', xml, '-o', meta]);
      await runTool('thin_check', [meta]);
      const dump = await runTool('thin_dump', [meta]);
      assert.equal(dump, formatDumpXml(canonicalImage(image)));
      await engineReadsAndChanges(meta, formatDumpXml(canonicalImage(image)));
    });
  });
});

/**
 * thinp opens what thin_restore wrote: its dump and its checker agree with the tools, and a
 * change made by the engine (a new device and mapping, one device deleted) keeps thin_check
 * clean.
 */
async function engineReadsAndChanges(meta: string, expectedXml: string): Promise<void> {
  const dev = await FileDevice.open(meta);
  try {
    let text = '';
    await dumpMetadata(dev, (chunk) => {
      text += chunk;
    });
    assert.equal(text, expectedXml, 'thinp dump of thin_restore output');
    const report = await checkMetadata(dev);
    assert.deepEqual(report.problems, [], 'thinp check of thin_restore output');
    const md = await PoolMetadata.open(dev);
    const ids = await md.deviceIds();
    const fresh = (ids[0] ?? 0) === 0 ? 16_777_214 : 0;
    await md.createThin(fresh);
    // Blocks freed by a delete are not reused before the commit: allocate first.
    if (md.dataUsage.usedBlocks < md.dataUsage.totalBlocks) {
      await md.insertMapping(fresh, 42, await md.allocDataBlock());
    }
    const last = ids[ids.length - 1];
    if (last !== undefined && ids.length > 1) await md.deleteDevice(last);
    await md.commit();
  } finally {
    await dev.close();
  }
  await runTool('thin_check', [meta]);
  const reopened = await FileDevice.open(meta, { readOnly: true });
  try {
    assert.deepEqual((await checkMetadata(reopened)).problems, []);
  } finally {
    await reopened.close();
  }
}
