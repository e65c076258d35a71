import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { DumpXmlError, parseDumpXml, readDumpXml } from '../../../src/tools/xml/dump-reader.js';
import { DUMP_CHUNK_SIZE, DumpWriter, formatDumpXml } from '../../../src/tools/xml/dump-writer.js';
import {
  checkImageLimits,
  ImageBuilder,
  ImageLimitChecker,
  type MetadataImage,
  type XmlEvent,
} from '../../../src/tools/xml/metadata-image.js';
import { BadInputError } from '../../../src/util/index.js';
import { arbMetadataImage, canonicalImage, expandRuns } from '../../support/arbitrary-image.js';

const FIXTURES = new URL('../../fixtures/dm-thin/', import.meta.url);
const DUMPS = [
  'empty-pool.dump.xml',
  'one-thin.dump.xml',
  'snapshots.dump.xml',
  'many-mappings.dump.xml',
  'many-devices.dump.xml',
  'version-omitted.dump.xml',
  'kernel-snap.dump.xml',
  'held-root.dump.xml',
  'held-root.snap-dump.xml',
];
/** Inputs whose dump is the input itself, once thin_restore has done its part. */
const SAME_AS_DUMP = ['empty-pool', 'one-thin', 'snapshots', 'many-devices', 'version-omitted'];

function fixture(name: string): Promise<string> {
  return readFile(new URL(name, FIXTURES), 'utf8');
}

/** What thin_restore keeps of an image: mapped_blocks is recounted from the mappings. */
function restored(image: MetadataImage): MetadataImage {
  const devices = image.devices.map((device) => ({
    info: { ...device.info, mappedBlocks: expandRuns(device.runs).length },
    runs: device.runs,
  }));
  return { superblock: image.superblock, devices };
}

/** The text cut into pieces whose sizes cycle through `sizes`, half of them as Buffers. */
async function* pieces(text: string, sizes: readonly number[]): AsyncGenerator<string | Buffer> {
  const bytes = Buffer.from(text);
  for (let offset = 0, i = 0; offset < bytes.length; i++) {
    const size = sizes[i % sizes.length] ?? 1;
    const piece = bytes.subarray(offset, offset + size);
    yield i % 2 === 0 ? piece : piece.toString('latin1');
    offset += size;
  }
}

async function collect(events: AsyncIterable<XmlEvent>): Promise<MetadataImage> {
  const builder = new ImageBuilder();
  for await (const event of events) builder.add(event);
  return builder.image();
}

describe('thin_dump XML fixtures', () => {
  for (const name of DUMPS) {
    test(`${name} is printed again byte for byte`, async () => {
      const text = await fixture(name);
      assert.equal(formatDumpXml(parseDumpXml(text)), text);
    });
  }

  for (const name of SAME_AS_DUMP) {
    test(`${name}.xml restored prints as ${name}.dump.xml`, async () => {
      const image = parseDumpXml(await fixture(`${name}.xml`));
      assert.equal(formatDumpXml(restored(image)), await fixture(`${name}.dump.xml`));
    });
  }

  test('many-mappings.xml holds the same mappings as its dump', async () => {
    const input = parseDumpXml(await fixture('many-mappings.xml'));
    const dump = parseDumpXml(await fixture('many-mappings.dump.xml'));
    assert.deepEqual(input.superblock, dump.superblock);
    assert.deepEqual(
      input.devices.map((device) => [device.info.devId, expandRuns(device.runs)]),
      dump.devices.map((device) => [device.info.devId, expandRuns(device.runs)]),
    );
    for (const device of dump.devices) {
      assert.equal(device.info.mappedBlocks, expandRuns(device.runs).length);
    }
    assert.equal(formatDumpXml(restored(input)), formatDumpXml(dump));
  });

  test('a dump read from a file stream in small pieces equals the dump parsed whole', async () => {
    const url = new URL('many-mappings.dump.xml', FIXTURES);
    const streamed = await collect(readDumpXml(createReadStream(url, { highWaterMark: 97 })));
    assert.deepEqual(streamed, parseDumpXml(await fixture('many-mappings.dump.xml')));
  });

  test('the writer hands a large dump to an async sink in a few chunks of about 64 KiB', async () => {
    const image = parseDumpXml(await fixture('many-mappings.dump.xml'));
    const chunks: string[] = [];
    const writer = new DumpWriter(async (chunk) => {
      await new Promise((resolve) => setImmediate(resolve));
      chunks.push(chunk);
    });
    await writer.superblock(image.superblock);
    for (const device of image.devices) {
      await writer.device(device.info);
      for (const [vblock, dataBlock, time] of expandRuns(device.runs)) {
        await writer.mapping(vblock, dataBlock, time);
      }
      await writer.endDevice();
    }
    await writer.end();
    const text = chunks.join('');
    assert.equal(text, await fixture('many-mappings.dump.xml'));
    assert.equal(chunks.length, Math.ceil(text.length / DUMP_CHUNK_SIZE));
    for (const chunk of chunks.slice(0, -1)) assert.ok(chunk.length < DUMP_CHUNK_SIZE + 200);
  });
});

describe('thin_dump XML round trip', () => {
  test('a generated image read back from its dump in random pieces is its canonical form', async () => {
    const sizes = fc.array(fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 300 })), {
      minLength: 1,
      maxLength: 8,
    });
    await fc.assert(
      fc.asyncProperty(arbMetadataImage(), sizes, async (image, pieceSizes) => {
        const text = formatDumpXml(image);
        assert.deepEqual(
          await collect(readDumpXml(pieces(text, pieceSizes))),
          canonicalImage(image),
        );
        assert.deepEqual(parseDumpXml(text), canonicalImage(image));
        // Not thin_dump's exact spelling, so read by the general tag reader.
        assert.deepEqual(parseDumpXml(text.replaceAll('"/>', '" />')), canonicalImage(image));
      }),
      { numRuns: 150 },
    );
  });

  test('a dump read one byte at a time is the dump read whole', async () => {
    const text = await fixture('snapshots.dump.xml');
    assert.deepEqual(await collect(readDumpXml(pieces(text, [1]))), parseDumpXml(text));
  });

  test('the writer fed one mapping at a time prints what formatDumpXml prints', async () => {
    await fc.assert(
      fc.asyncProperty(arbMetadataImage(), async (image) => {
        let text = '';
        const writer = new DumpWriter((chunk) => {
          text += chunk;
        });
        await writer.superblock(image.superblock);
        for (const device of image.devices) {
          await writer.device(device.info);
          for (const mapping of expandRuns(device.runs)) await writer.mapping(...mapping);
          await writer.endDevice();
        }
        await writer.end();
        assert.equal(text, formatDumpXml(image));
      }),
      { numRuns: 50 },
    );
  });

  test('generated images are within the limits of the format', () => {
    fc.assert(fc.property(arbMetadataImage(), (image) => checkImageLimits(image)));
  });

  test('generated images use the extreme device ids, large vblocks and shared data blocks', () => {
    const images = fc.sample(arbMetadataImage(), { numRuns: 300, seed: 7 });
    const devices = images.flatMap((image) => image.devices);
    assert.ok(devices.some((device) => device.info.devId === 0));
    assert.ok(devices.some((device) => device.info.devId === 2 ** 24 - 1));
    assert.ok(devices.some((device) => device.runs.some((run) => run.vblock >= 2 ** 32)));
    assert.ok(images.some(sharesDataBlocks));
  });
});

function sharesDataBlocks(image: MetadataImage): boolean {
  const seen = new Set<number>();
  for (const device of image.devices) {
    const blocks = new Set(expandRuns(device.runs).map(([, dataBlock]) => dataBlock));
    for (const block of blocks) {
      if (seen.has(block)) return true;
    }
    for (const block of blocks) seen.add(block);
  }
  return false;
}

const SB =
  '<superblock uuid="" time="0" transaction="0" flags="0" version="2" data_block_size="128" nr_data_blocks="100">';
const DEV = '<device dev_id="0" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0">';
const MAP = '<single_mapping origin_block="0" data_block="0" time="0"/>';

describe('thin_dump XML grammar', () => {
  test('accepts attributes in any order, spread over lines, with defaults for optional ones', () => {
    const text = `<?xml version="1.0"?>\n<!-- a pool -->\n<superblock nr_data_blocks = '9'\n data_block_size="256" transaction="3" time="1" uuid="a&amp;b&#x41;"\n>\n<device snap_time="1" creation_time="0" transaction="2" dev_id="7"/>\n<device dev_id="8" transaction="0" creation_time="0" snap_time="0"><range_mapping time="1" length="2" data_begin="3" origin_begin="4"></range_mapping>\n</device></superblock>\n<!-- done -->\n`;
    assert.deepEqual(parseDumpXml(text), {
      superblock: {
        uuid: 'a&bA',
        time: 1,
        transaction: 3,
        flags: 0,
        version: 1,
        dataBlockSize: 256,
        nrDataBlocks: 9,
      },
      devices: [
        {
          info: { devId: 7, mappedBlocks: 0, transaction: 2, creationTime: 0, snapTime: 1 },
          runs: [],
        },
        {
          info: { devId: 8, mappedBlocks: 0, transaction: 0, creationTime: 0, snapTime: 0 },
          runs: [{ vblock: 4, dataBlock: 3, length: 2, time: 1 }],
        },
      ],
    });
  });

  test('keeps metadata_snap, which the writer never prints', () => {
    const image = parseDumpXml(`${SB.replace('>', ' metadata_snap="8">')}</superblock>`);
    assert.equal(image.superblock.metadataSnap, 8);
    assert.doesNotMatch(formatDumpXml(image), /metadata_snap/);
  });

  for (const map of [MAP, MAP.replace('/>', ' />')]) {
    test(`gives each event the line and column where its element starts (${map})`, async () => {
      const text = `${SB}\n  ${DEV}\n    ${map}\n  </device>\n</superblock>\n`;
      const events = [];
      for await (const event of readDumpXml(pieces(text, [5]))) {
        events.push([event.kind, event.at]);
      }
      assert.deepEqual(events, [
        ['superblock', { line: 1, column: 1 }],
        ['device', { line: 2, column: 3 }],
        ['run', { line: 3, column: 5 }],
        ['endDevice', { line: 4, column: 3 }],
        ['end', { line: 5, column: 1 }],
      ]);
    });
  }

  const BAD: Array<[string, string, string]> = [
    [
      'a missing attribute',
      `${SB}\n  ${DEV}\n    <single_mapping origin_block="0" time="0"/>`,
      'line 3, column 5: <single_mapping> is missing the attribute data_block',
    ],
    ['an unknown element', `${SB}\n  <devices/>`, 'line 2, column 3: unknown tag type <devices>'],
    ['an unknown end tag', `${SB}\n  </foo>`, 'line 2, column 3: unknown tag type <foo>'],
    [
      'a mapping outside a device',
      `${SB}\n  ${MAP}`,
      'line 2, column 3: <single_mapping> outside a <device>',
    ],
    [
      'a device outside the superblock',
      `${DEV}</device>`,
      'line 1, column 1: <device> outside a <superblock>',
    ],
    [
      'a device after the superblock',
      `${SB}</superblock>\n${DEV}</device>`,
      'line 2, column 1: <device> outside a <superblock>',
    ],
    [
      'a second superblock',
      `${SB}</superblock>\n\n${SB}</superblock>`,
      'line 3, column 1: a second <superblock>',
    ],
    [
      'a device inside a device',
      `${SB}\n  ${DEV}\n  ${DEV}`,
      'line 3, column 3: <device> inside <device> opened at line 2, column 3',
    ],
    [
      'a mapping inside a mapping',
      `${SB}${DEV}\n<single_mapping origin_block="0" data_block="0" time="0">${MAP}`,
      'line 2, column 58: <single_mapping> inside <single_mapping> opened at line 2, column 1',
    ],
    [
      'elements left open at the end',
      `${SB}\n  ${DEV}\n`,
      'line 3, column 1: the input ends inside <device> opened at line 2, column 3',
    ],
    ['an empty input', '\n', 'line 2, column 1: the input holds no <superblock>'],
    ['text between tags', `${SB}\n  hello`, 'line 2, column 3: text is not allowed here'],
    [
      'a repeated attribute',
      '<superblock time="0" time="1">',
      'line 1, column 22: <superblock> has the attribute time twice',
    ],
    [
      'an unknown attribute',
      `${SB}\n  <device dev_id="0" transaction="0" creation_time="0" snap_time="0" mapped="1">`,
      'line 2, column 70: <device> has no attribute mapped',
    ],
    [
      'a negative number',
      SB.replace('time="0"', 'time="-1"'),
      'line 1, column 27: time="-1" is not an unsigned decimal number',
    ],
    [
      'a hexadecimal number',
      SB.replace(' time="0"', '\n  time="0x10"'),
      'line 2, column 9: time="0x10" is not an unsigned decimal number',
    ],
    [
      'an empty number',
      SB.replace('time="0"', 'time=""'),
      'line 1, column 27: time="" is not an unsigned decimal number',
    ],
    [
      'a number beyond the safe integers',
      SB.replace('"100"', '"9007199254740992"'),
      'line 1, column 106: nr_data_blocks="9007199254740992" is above 2^53 - 1',
    ],
    [
      'a vblock beyond the safe integers',
      `${SB}${DEV}\n<single_mapping origin_block="9007199254740993" data_block="0" time="0"/>`,
      'line 2, column 31: origin_block="9007199254740993" is above 2^53 - 1',
    ],
    [
      'an unquoted value',
      '<superblock time=0>',
      'line 1, column 18: the value of the attribute time must be in quotes',
    ],
    [
      'a missing equals sign',
      '<superblock time "0">',
      "line 1, column 18: expected '=' after the attribute time",
    ],
    [
      'attributes without a space between them',
      '<superblock time="0"transaction="0">',
      'line 1, column 21: expected a space before the attribute in <superblock>',
    ],
    [
      'a stray character in a tag',
      '<superblock time="0" %>',
      "line 1, column 22: expected an attribute name in <superblock>, found '%'",
    ],
    [
      'a slash not before >',
      `${SB}${DEV.replace('>', '/ >')}`,
      "line 1, column 195: expected '>' after '/'",
    ],
    [
      'a mismatched end tag',
      `${SB}\n  ${DEV}\n  </superblock>`,
      'line 3, column 3: </superblock> does not match <device> opened at line 2, column 3',
    ],
    [
      'an end tag with nothing open',
      '  </superblock>',
      'line 1, column 3: </superblock> closes nothing',
    ],
    [
      'a tag cut off at the end',
      '<superblock time="0"',
      "line 1, column 1: the tag <superblock> does not end with '>'",
    ],
    ['a lone < at the end', `${SB}\n<`, 'line 2, column 1: the input ends inside a tag'],
    [
      'a tag broken by the next one',
      `${SB}\n  <device dev_id="0" transaction="0"\n  </superblock>`,
      "line 2, column 3: the tag <device> does not end with '>'",
    ],
    ['a doctype', '<!DOCTYPE superblock>', "line 1, column 1: '<!' markup is not allowed here"],
    [
      'an unclosed comment',
      `${SB}\n<!-- x </superblock>`,
      'line 2, column 1: the comment is not closed by -->',
    ],
    [
      'an element name missing',
      '< superblock>',
      "line 1, column 2: expected an element name after '<'",
    ],
    [
      'a bad entity in the uuid',
      SB.replace('uuid=""', 'uuid="a&b"'),
      "line 1, column 20: '&' in uuid starts no known entity",
    ],
  ];

  for (const [what, text, message] of BAD) {
    test(`rejects ${what} with its line and column`, async () => {
      assert.throws(() => parseDumpXml(text), isDumpXmlError(message));
      await assert.rejects(collect(readDumpXml(pieces(text, [1]))), isDumpXmlError(message));
    });
  }

  test('hints at the element or attribute a typo was meant to be', () => {
    assert.throws(() => parseDumpXml(`${SB}\n  <devices/>`), { hint: 'did you mean <device>?' });
    assert.throws(() => parseDumpXml('<superblock tme="0">'), { hint: 'did you mean time?' });
  });
});

function isDumpXmlError(message: string): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof DumpXmlError, `not a DumpXmlError: ${String(error)}`);
    assert.ok(error instanceof BadInputError);
    assert.equal(error.message, message);
    return true;
  };
}

describe('format limits', () => {
  const superblock = {
    uuid: '',
    time: 5,
    transaction: 0,
    flags: 0,
    version: 2,
    dataBlockSize: 128,
    nrDataBlocks: 100,
  };
  const info = { devId: 0, mappedBlocks: 0, transaction: 0, creationTime: 0, snapTime: 0 };
  const run = { vblock: 0, dataBlock: 0, length: 1, time: 0 };
  const image = (changes: Partial<MetadataImage>): MetadataImage => ({
    superblock,
    devices: [{ info, runs: [run] }],
    ...changes,
  });

  const LIMITS: Array<[string, MetadataImage, string]> = [
    [
      'a mapping beyond the data device',
      image({ devices: [{ info, runs: [{ vblock: 5, dataBlock: 99, length: 2, time: 0 }] }] }),
      'mapping beyond end of data device: vblock 6 maps to data block 100, but nr_data_blocks is 100',
    ],
    [
      'a device id used twice',
      image({
        devices: [
          { info, runs: [] },
          { info, runs: [] },
        ],
      }),
      'device 0 appears twice',
    ],
    [
      'a device id of 2^24',
      image({ devices: [{ info: { ...info, devId: 2 ** 24 }, runs: [] }] }),
      'dev_id 16777216 is beyond the largest device id 16777215',
    ],
    [
      'a pool time of 2^24',
      image({ superblock: { ...superblock, time: 2 ** 24 } }),
      'the superblock time 16777216 does not fit in 24 bits',
    ],
    [
      'a mapping time of 2^24',
      image({ devices: [{ info, runs: [{ ...run, time: 2 ** 24 }] }] }),
      'the mapping time 16777216 does not fit in 24 bits',
    ],
    [
      'overlapping runs',
      image({
        devices: [
          {
            info,
            runs: [
              { ...run, length: 6 },
              { ...run, vblock: 5, dataBlock: 50 },
            ],
          },
        ],
      }),
      'device 0: the mapping at vblock 5 overlaps or precedes the previous one, which ends at vblock 5',
    ],
    [
      'a data block size that is not a multiple of 128',
      image({ superblock: { ...superblock, dataBlockSize: 100 } }),
      'data_block_size 100 is not a multiple of 128 between 128 and 2097152 sectors',
    ],
    [
      'a data block size above 1 GiB',
      image({ superblock: { ...superblock, dataBlockSize: 2097152 + 128 } }),
      'data_block_size 2097280 is not a multiple of 128 between 128 and 2097152 sectors',
    ],
    [
      'a run of length 0',
      image({ devices: [{ info, runs: [{ ...run, vblock: 7, length: 0 }] }] }),
      'the mapping at vblock 7 has length 0',
    ],
  ];

  for (const [what, bad, message] of LIMITS) {
    test(`rejects ${what}`, () => {
      assert.throws(() => checkImageLimits(bad), { name: 'BadInputError', message });
    });
  }

  test('accepts the largest device id, time and data block size', () => {
    checkImageLimits({
      superblock: { ...superblock, time: 2 ** 24 - 1, dataBlockSize: 2097152 },
      devices: [{ info: { ...info, devId: 2 ** 24 - 1 }, runs: [{ ...run, time: 2 ** 24 - 1 }] }],
    });
  });

  test('names the line and column of the offending element of a dump', async () => {
    const text = `${SB}\n  ${DEV}\n    <single_mapping origin_block="0" data_block="100" time="0"/>`;
    const checker = new ImageLimitChecker();
    await assert.rejects(
      async () => {
        for await (const event of readDumpXml(pieces(text, [64]))) checker.check(event);
      },
      {
        message:
          'line 3, column 5: mapping beyond end of data device: vblock 0 maps to data block 100, but nr_data_blocks is 100',
      },
    );
  });
});
