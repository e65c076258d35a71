import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  type BlockDevice,
  createMetadataFile,
  dumpMetadata,
  openMetadataFile,
  restoreMetadata,
} from '../../../src/tools/index.js';
import { BadInputError, MetadataCorruptError, NotFoundError } from '../../../src/util/index.js';
import { thinp } from '../../support/cli.js';
import {
  FIXTURE_DIR,
  fixtureNames,
  readFixtureText,
  unpackFixture,
} from '../../support/fixtures.js';
import { tempDir } from '../../support/temp.js';

const dir = await tempDir('thinp-dump-restore-');
const METADATA_SIZE = 64 * 1024 * 1024;
let counter = 0;

async function dumpOf(device: BlockDevice, metadataSnap = false): Promise<string> {
  let text = '';
  await dumpMetadata(
    device,
    (chunk) => {
      text += chunk;
    },
    { metadataSnap },
  );
  return text;
}

async function dumpFile(file: string, metadataSnap = false): Promise<string> {
  const device = await openMetadataFile(file, { readOnly: true });
  try {
    return await dumpOf(device, metadataSnap);
  } finally {
    await device.close();
  }
}

/** A new metadata file of `size` bytes; returns it open. */
async function freshDevice(size = METADATA_SIZE): Promise<{ file: string; device: BlockDevice }> {
  const file = path.join(dir, `restored-${counter++}.meta`);
  return { file, device: await createMetadataFile(file, size) };
}

async function* textSource(text: string): AsyncGenerator<string> {
  yield text;
}

/** Restores `xml` into a fresh file and returns its dump. */
async function restoreAndDump(xml: string): Promise<string> {
  const { device } = await freshDevice();
  try {
    await restoreMetadata(textSource(xml), device);
    return await dumpOf(device);
  } finally {
    await device.close();
  }
}

async function restoreFails(xml: string, message: RegExp): Promise<void> {
  const { device } = await freshDevice();
  try {
    await assert.rejects(restoreMetadata(textSource(xml), device), (error: unknown) => {
      assert.ok(error instanceof BadInputError, String(error));
      assert.match(error.message, message);
      return true;
    });
  } finally {
    await device.close();
  }
}

const SB =
  '<superblock uuid="" time="0" transaction="0" flags="0" version="2" data_block_size="128" nr_data_blocks="10">';
const DEVICE = '<device dev_id="0" transaction="0" creation_time="0" snap_time="0">';

describe('dump', () => {
  for (const name of fixtureNames()) {
    test(`${name}: the dump equals thin_dump's ${name}.dump.xml byte for byte`, async () => {
      const file = await unpackFixture(name, dir);
      assert.equal(await dumpFile(file), await readFixtureText(`${name}.dump.xml`));
    });
  }

  test('-m dumps the held metadata snapshot, with nr_data_blocks="0"', async () => {
    const file = await unpackFixture('held-root', dir);
    assert.equal(await dumpFile(file, true), await readFixtureText('held-root.snap-dump.xml'));
  });

  test('-m without a held snapshot says so and how to go on', async () => {
    const file = await unpackFixture('one-thin', dir);
    await assert.rejects(dumpFile(file, true), (error: unknown) => {
      assert.ok(error instanceof NotFoundError);
      assert.match(
        error.describe(),
        /holds no metadata snapshot; dump the live metadata without -m/,
      );
      return true;
    });
  });

  test('damaged space maps do not stop a dump, as they do not stop thin_dump', async () => {
    for (const name of ['meta-bitmap-csum', 'meta-index-csum', 'data-bitmap-csum']) {
      const file = await unpackFixture(`corrupt/${name}`, dir);
      assert.equal(await dumpFile(file), await readFixtureText('one-thin.dump.xml'), name);
    }
  });

  test('a damaged mapping tree stops the dump with an error naming the block and the check', async () => {
    const file = await unpackFixture('corrupt/flip-leaf-byte', dir);
    await assert.rejects(dumpFile(file), (error: unknown) => {
      assert.ok(error instanceof MetadataCorruptError);
      assert.equal(error.block, 10);
      assert.match(
        error.describe(),
        /^btree node \(metadata block 10\): bad checksum.*thinp check/,
      );
      return true;
    });
  });

  test('a damaged superblock stops the dump before any output', async () => {
    const file = await unpackFixture('corrupt/superblock-flip', dir);
    let output = '';
    const device = await openMetadataFile(file, { readOnly: true });
    try {
      await assert.rejects(
        dumpMetadata(device, (chunk) => {
          output += chunk;
        }),
        /superblock \(metadata block 0\): bad checksum/,
      );
    } finally {
      await device.close();
    }
    assert.equal(output, '');
  });
});

describe('restore', () => {
  for (const name of fixtureNames()) {
    test(`${name}: restoring ${name}.dump.xml dumps it back unchanged`, async () => {
      const xml = await readFixtureText(`${name}.dump.xml`);
      // thinp always writes version 2, where thin_restore kept the input's missing version as 1.
      const expected = xml.replace('version="1"', 'version="2"');
      assert.equal(await restoreAndDump(xml), expected);
    });
  }

  test('a streamed file restores as a string does, in chunks cut anywhere', async () => {
    const file = path.join(FIXTURE_DIR, 'many-mappings.dump.xml');
    const { device } = await freshDevice();
    try {
      const summary = await restoreMetadata(
        createReadStream(file, { highWaterMark: 1000 }),
        device,
      );
      assert.deepEqual(summary, {
        devices: 4,
        mappings: 2411,
        dataBlockSize: 256,
        nrDataBlocks: 40000,
      });
      assert.equal(await dumpOf(device), await readFile(file, 'utf8'));
    } finally {
      await device.close();
    }
  });

  test('input without a version restores as version 2', async () => {
    const { file, device } = await freshDevice();
    try {
      const input = createReadStream(path.join(FIXTURE_DIR, 'version-omitted.xml'));
      await restoreMetadata(input, device);
    } finally {
      await device.close();
    }
    const block0 = (await readFile(file)).subarray(0, 4096);
    assert.equal(block0.readUInt32LE(40), 2);
    assert.match(
      await dumpFile(file),
      /^<superblock uuid="" time="0" transaction="0" flags="0" version="2" /,
    );
  });

  test('metadata_snap is ignored: no held root is written', async () => {
    const { file, device } = await freshDevice();
    const xml = `${SB.replace('>', ' metadata_snap="5">')}\n</superblock>\n`;
    try {
      await restoreMetadata(textSource(xml), device);
    } finally {
      await device.close();
    }
    const block0 = (await readFile(file)).subarray(0, 4096);
    assert.equal(block0.readBigUInt64LE(56), 0n);
    await assert.rejects(dumpFile(file, true), NotFoundError);
  });

  test('flags, time and transaction ids are kept; mapped_blocks is counted', async () => {
    const xml = [
      '<superblock uuid="" time="7" transaction="9007199254740991" flags="1" version="2" data_block_size="2097152" nr_data_blocks="10">',
      '  <device dev_id="16777215" mapped_blocks="99" transaction="3" creation_time="4294967295" snap_time="5">',
      '    <range_mapping origin_begin="9007199254740989" data_begin="0" length="2" time="7"/>',
      '  </device>',
      '</superblock>',
      '',
    ].join('\n');
    assert.equal(await restoreAndDump(xml), xml.replace('mapped_blocks="99"', 'mapped_blocks="2"'));
  });

  describe('rejects what thin_restore rejects, naming the line and column', () => {
    const cases: Array<[string, string, RegExp]> = [
      [
        'a mapping beyond the end of the data device',
        `${SB}\n  ${DEVICE}\n    <single_mapping origin_block="0" data_block="10" time="0"/>\n  </device>\n</superblock>\n`,
        /^line 3, column 5: mapping beyond end of data device: vblock 0 maps to data block 10/,
      ],
      [
        'a range running past the end of the data device',
        `${SB}\n  ${DEVICE}\n    <range_mapping origin_begin="0" data_begin="8" length="3" time="0"/>\n  </device>\n</superblock>\n`,
        /^line 3, column 5: mapping beyond end of data device: vblock 2 maps to data block 10/,
      ],
      [
        'a repeated device',
        `${SB}\n  ${DEVICE}</device>\n  ${DEVICE}</device>\n</superblock>\n`,
        /^line 3, column 3: device 0 appears twice/,
      ],
      [
        'a vblock mapped twice',
        `${SB}\n  ${DEVICE}\n    <single_mapping origin_block="4" data_block="1" time="0"/>\n    <single_mapping origin_block="4" data_block="2" time="0"/>\n  </device>\n</superblock>\n`,
        /^line 4, column 5: device 0: the mapping at vblock 4 overlaps or precedes the previous one/,
      ],
      [
        'an unknown element',
        `${SB}\n  <devise dev_id="0"/>\n</superblock>\n`,
        /^line 2, column 3: unknown tag type <devise>/,
      ],
      ['a cut-short dump', `${SB}\n  ${DEVICE}\n`, /the input ends inside <device>/],
      [
        'a bad data block size',
        '<superblock uuid="" time="0" transaction="0" data_block_size="100" nr_data_blocks="10">\n</superblock>\n',
        /^line 1, column 1: data_block_size 100 is not a multiple of 128/,
      ],
      [
        'flags beyond the 32-bit field',
        `${SB.replace('flags="0"', 'flags="4294967296"')}\n</superblock>\n`,
        /^line 1, column 1: flags 4294967296 does not fit in 32 bits/,
      ],
      [
        'a device id beyond 24 bits',
        `${SB}\n  ${DEVICE.replace('dev_id="0"', 'dev_id="16777216"')}</device>\n</superblock>\n`,
        /^line 2, column 3: dev_id 16777216 is beyond the largest device id/,
      ],
      [
        'a mapping time beyond 24 bits',
        `${SB}\n  ${DEVICE}\n    <single_mapping origin_block="0" data_block="1" time="16777216"/>\n  </device>\n</superblock>\n`,
        /^line 3, column 5: the mapping time 16777216 does not fit in 24 bits/,
      ],
    ];
    for (const [what, xml, message] of cases) {
      test(what, () => restoreFails(xml, message));
    }
  });

  test('a metadata device too small for a pool is refused before anything is written', async () => {
    const { file, device } = await freshDevice(32 * 1024);
    try {
      await assert.rejects(
        restoreMetadata(textSource(`${SB}\n</superblock>\n`), device),
        /a metadata device of 32768 bytes is too small/,
      );
    } finally {
      await device.close();
    }
    assert.ok((await readFile(file)).every((byte) => byte === 0));
  });
});

describe('thinp restore replaces the target only on success', () => {
  test('bad XML leaves the target byte for byte as it was, and no scratch file behind', async () => {
    const work = path.join(dir, 'atomic');
    await mkdir(work);
    const target = await unpackFixture('snapshots', work);
    const before = await readFile(target);
    const bad = path.join(work, 'bad.xml');
    const good = await readFixtureText('one-thin.dump.xml');
    await writeFile(bad, good.replace('data_block="7"', 'data_block="1024"'));
    const result = await thinp(['restore', '-i', bad, '--metadata', target], { cwd: work });
    assert.equal(result.status, 1);
    assert.match(result.stderr, /^thinp: line 5, column 5: mapping beyond end of data device/);
    assert.ok((await readFile(target)).equals(before));
    assert.deepEqual((await readdir(work)).sort(), ['bad.xml', 'snapshots.meta']);
  });

  test('a good restore keeps the size of the target', async () => {
    const target = await unpackFixture('many-mappings', dir);
    const size = (await stat(target)).size;
    const input = path.join(FIXTURE_DIR, 'one-thin.dump.xml');
    const result = await thinp(['restore', '-i', input, '--metadata', target], { cwd: dir });
    assert.equal(result.status, 0, result.stderr);
    assert.equal((await stat(target)).size, size);
    assert.equal(await dumpFile(target), await readFixtureText('one-thin.dump.xml'));
    await rm(target);
  });
});
