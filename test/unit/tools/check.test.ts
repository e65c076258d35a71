import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type BlockDevice, FileDevice, MemoryDevice } from '../../../src/block/index.js';
import {
  bitmapPayload,
  blockChecksum,
  CSUM_XOR,
  decodeIndexEntry,
  ENTRIES_PER_BITMAP,
  getEntry,
  indexEntryOffset,
  METADATA_BLOCK_SIZE,
} from '../../../src/pdata/index.js';
import { decodeSuperblock, PoolMetadata } from '../../../src/thin/index.js';
import {
  type CheckOptions,
  type CheckReport,
  checkMetadata,
  formatReport,
  type Problem,
} from '../../../src/tools/check/index.js';
import { corruptFixtureNames, fixtureNames, unpackFixture } from '../../support/fixtures.js';
import { tempDir } from '../../support/temp.js';

const dir = await tempDir('thinp-check-');

async function checkFixture(name: string, options: CheckOptions = {}): Promise<CheckReport> {
  const device = await FileDevice.open(await unpackFixture(name, dir), { readOnly: true });
  try {
    return await checkMetadata(device, options);
  } finally {
    await device.close();
  }
}

function describeProblems(report: CheckReport): string {
  return formatReport(report);
}

describe('checkMetadata on sound fixtures', () => {
  for (const name of fixtureNames()) {
    test(`finds no problem in ${name}`, async () => {
      const report = await checkFixture(name);
      assert.deepEqual(report.problems, [], describeProblems(report));
    });
  }

  test('finds no problem in the metadata snapshot of held-root', async () => {
    const report = await checkFixture('held-root', { metadataSnap: true });
    assert.deepEqual(report.problems, [], describeProblems(report));
    assert.equal(report.devices, 2);
    assert.equal(report.mappings, 14);
  });

  test('reports a missing metadata snapshot as fatal', async () => {
    const report = await checkFixture('one-thin', { metadataSnap: true });
    assert.equal(report.problems[0]?.severity, 'fatal');
    assert.match(report.problems[0]?.message ?? '', /no metadata snapshot/);
  });

  test('summarises one-thin like thin_dump sees it', async () => {
    const report = await checkFixture('one-thin');
    assert.equal(report.transactionId, 1);
    assert.equal(report.devices, 1);
    assert.equal(report.mappings, 7);
    assert.deepEqual(report.data, { free: 1017, total: 1024 });
    assert.deepEqual(report.metadata, { free: 2038, total: 2048 });
    assert.match(formatReport(report), /no problems found/);
  });

  test('stops after the superblock when asked', async () => {
    const report = await checkFixture('corrupt/flip-leaf-byte', { superblockOnly: true });
    assert.deepEqual(report.problems, []);
  });

  test('skips the bottom-level trees and the space maps when asked', async () => {
    const report = await checkFixture('corrupt/flip-leaf-byte', { skipMappings: true });
    assert.deepEqual(report.problems, []);
    assert.equal(report.devices, 1);
  });
});

interface Expected {
  severity: Problem['severity'];
  area: Problem['area'];
  block: number | undefined;
  message: RegExp;
  /** No fatal problem at all may be reported (the case is a leak). */
  onlyNonFatal?: boolean;
}

const fatalLeaf = (message: RegExp): Expected => ({
  severity: 'fatal',
  area: 'mappings',
  block: 10,
  message,
});

/** The problem each corruption of corrupt/thin_check-results.md must produce. */
const CORRUPT: Record<string, Expected> = {
  'flip-leaf-byte': fatalLeaf(/thin device 0: bad checksum in btree node/),
  'keys-out-of-order': fatalLeaf(/keys are out of order, 11 <= 200/),
  'blocknr-mismatch': fatalLeaf(/bad block nr in btree node/),
  'value-size-mismatch': fatalLeaf(/value size mismatch: expected 8, but got 16/),
  'max-entries-not-div3': fatalLeaf(/max entries is not divisible by 3: 250/),
  'max-entries-too-large': fatalLeaf(/max entries too large: 256/),
  'nr-entries-too-large': fatalLeaf(/bad nr_entries: 256/),
  'node-flags-zero': fatalLeaf(/unknown node type/),
  'node-flags-both': fatalLeaf(/both internal and leaf/),
  'data-block-beyond-end': fatalLeaf(/maps to data block 1280000, beyond the end/),
  'superblock-flip': { severity: 'fatal', area: 'superblock', block: 0, message: /checksum/ },
  'superblock-bad-magic': { severity: 'fatal', area: 'superblock', block: 0, message: /magic/ },
  'too-few-entries': {
    severity: 'fatal',
    area: 'mappings',
    block: 14,
    message: /too few entries in btree node: 10, expected at least 84/,
  },
  'parent-key-mismatch': {
    severity: 'fatal',
    area: 'mappings',
    block: 15,
    message: /parent key mismatch: parent was 150, but lowest in node was 142/,
  },
  'meta-refcount-too-low': {
    severity: 'fatal',
    area: 'metadata space map',
    block: 10,
    message: /block 10: expected 2, but got 1/,
  },
  'meta-refcount-leak': {
    severity: 'non-fatal',
    area: 'metadata space map',
    block: 8,
    message: /block 8: expected 0, but got 1/,
    onlyNonFatal: true,
  },
  'meta-refcount-too-high': {
    severity: 'non-fatal',
    area: 'metadata space map',
    block: 6,
    message: /block 6: expected 1, but got 2/,
    onlyNonFatal: true,
  },
  'meta-bitmap-csum': {
    severity: 'fatal',
    area: 'metadata space map',
    block: 3,
    message: /bad checksum in space map bitmap/,
  },
  'meta-index-csum': {
    severity: 'fatal',
    area: 'metadata space map',
    block: 1,
    message: /bad checksum in metadata index block/,
  },
  'data-bitmap-csum': {
    severity: 'fatal',
    area: 'data space map',
    block: 9,
    message: /bad checksum in space map bitmap/,
  },
  'data-refcount-too-high': {
    severity: 'fatal',
    area: 'data space map',
    block: 9,
    message:
      /data reference counts differ for data block 0: expected 1, but got 2, in the bitmap at metadata block/,
  },
  'data-refcount-zero': {
    severity: 'fatal',
    area: 'data space map',
    block: 9,
    message: /data reference counts differ for data block 0: expected 1, but got 0, in the bitmap/,
  },
  'data-refcount-leak': {
    severity: 'non-fatal',
    area: 'data space map',
    block: 9,
    message: /data reference counts differ for data block 500: expected 0, but got 1/,
    onlyNonFatal: true,
  },
};

describe('checkMetadata on corrupt fixtures', () => {
  test('covers every corrupt fixture', () => {
    const names = corruptFixtureNames().map((name) => name.replace('corrupt/', ''));
    assert.deepEqual(names.sort(), Object.keys(CORRUPT).sort());
    assert.equal(names.length, 23);
  });

  for (const [name, expected] of Object.entries(CORRUPT)) {
    test(`names the damage of ${name}`, async () => {
      const report = await checkFixture(`corrupt/${name}`);
      const text = describeProblems(report);
      const match = report.problems.find((p) => expected.message.test(p.message));
      assert.ok(match !== undefined, `no problem matches ${expected.message}:\n${text}`);
      assert.equal(match.severity, expected.severity, text);
      assert.equal(match.area, expected.area, text);
      assert.equal(match.block, expected.block, text);
      if (expected.onlyNonFatal === true) {
        assert.ok(
          report.problems.every((p) => p.severity === 'non-fatal'),
          text,
        );
      }
    });
  }

  test('formats each problem on one line naming its block', async () => {
    const text = formatReport(await checkFixture('corrupt/flip-leaf-byte'));
    assert.match(text, /^ {2}thin device 0: bad checksum in btree node.*\(block 10\)$/m);
    assert.match(text, /problems? found, 1 fatal/);
  });
});

// ---------------------------------------------------------------------------------------
// Metadata written by the engine

const META_SIZE = 4 * 1024 * 1024;
const DATA_BLOCKS = 20_000;

/** A pool with a few hundred mappings, a chain of five snapshots and a held snapshot. */
async function engineImage(): Promise<MemoryDevice> {
  const device = new MemoryDevice(META_SIZE);
  const md = await PoolMetadata.format(device, { dataBlockSize: 128, nrDataBlocks: DATA_BLOCKS });
  await md.createThin(0);
  await mapRange(md, 0, 0, 400);
  await md.commit();
  for (let depth = 1; depth <= 5; depth++) {
    await md.createSnapshot(depth, depth - 1);
    await mapRange(md, depth, depth * 50, 30);
    await md.removeMapping(depth, depth * 7);
    await md.commit();
  }
  await md.createThin(10);
  await mapRange(md, 10, 1000, 300);
  await md.createSnapshot(11, 10);
  await md.deleteDevice(10);
  await md.commit();
  await md.reserveMetadataSnap();
  await mapRange(md, 11, 1000, 20);
  await md.removeMapping(0, 3);
  await md.commit();
  await md.close();
  return device;
}

async function mapRange(md: PoolMetadata, id: number, first: number, count: number) {
  for (let vblock = first; vblock < first + count; vblock++) {
    await md.insertMapping(id, vblock, await md.allocDataBlock());
  }
}

async function readBlock(device: BlockDevice, loc: number): Promise<Buffer> {
  const buf = Buffer.alloc(METADATA_BLOCK_SIZE);
  await device.read(buf, loc * METADATA_BLOCK_SIZE);
  return buf;
}

/** Blocks with a non-zero count in the metadata space map (its first bitmap suffices here). */
async function usedBlocks(device: BlockDevice): Promise<Set<number>> {
  const sb = decodeSuperblock(await readBlock(device, 0));
  const index = await readBlock(device, sb.metadataSpaceMap.bitmapRoot);
  const bitmap = await readBlock(device, decodeIndexEntry(index, indexEntryOffset(0)).blocknr);
  const used = new Set<number>();
  const n = Math.min(sb.metadataSpaceMap.nrBlocks, ENTRIES_PER_BITMAP);
  for (let b = 0; b < n; b++) if (getEntry(bitmapPayload(bitmap), b) !== 0) used.add(b);
  return used;
}

/** Every block that holds something, and a copy of the device with `loc`'s byte flipped. */
async function copyWithFlip(blocks: Map<number, Buffer>, loc: number): Promise<MemoryDevice> {
  const copy = new MemoryDevice(META_SIZE);
  for (const [b, buf] of blocks) {
    const bytes = Buffer.from(buf);
    if (b === loc) bytes[100] = (bytes[100] as number) ^ 0x5a;
    await copy.write(bytes, b * METADATA_BLOCK_SIZE);
  }
  return copy;
}

/** The block with the u32 at `offset` replaced and its checksum made valid again. */
function restamped(buf: Buffer, offset: number, value: number): Buffer {
  const xor = Object.values(CSUM_XOR).find((x) => blockChecksum(buf, x) === buf.readUInt32LE(0));
  const copy = Buffer.from(buf);
  copy.writeUInt32LE(value >>> 0, offset);
  if (xor !== undefined) copy.writeUInt32LE(blockChecksum(copy, xor), 0);
  return copy;
}

/** A tiny deterministic generator, so that a failure can be replayed. */
function* lcg(seed: number): Generator<number> {
  let x = seed;
  for (;;) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    yield x;
  }
}

describe('checkMetadata on metadata the engine wrote', async () => {
  const device = await engineImage();
  const written = new Map<number, Buffer>();
  for (let b = 0; b < META_SIZE / METADATA_BLOCK_SIZE; b++) {
    const buf = await readBlock(device, b);
    if (buf.some((x) => x !== 0)) written.set(b, buf);
  }
  const used = await usedBlocks(device);

  test('finds no problem', async () => {
    const report = await checkMetadata(device);
    assert.deepEqual(report.problems, [], formatReport(report));
    assert.equal(report.devices, 7);
  });

  test('finds no problem in the held metadata snapshot', async () => {
    const report = await checkMetadata(device, { metadataSnap: true });
    assert.deepEqual(report.problems, [], formatReport(report));
  });

  test('names every used block whose byte is flipped, and nothing for free blocks', async () => {
    assert.ok(used.size > 30, `only ${used.size} blocks in use`);
    for (const loc of written.keys()) {
      const report = await checkMetadata(await copyWithFlip(written, loc));
      if (used.has(loc)) {
        const named = report.problems.some((p) => p.block === loc && p.severity === 'fatal');
        assert.ok(named, `block ${loc} flipped:\n${formatReport(report)}`);
      } else {
        assert.deepEqual(
          report.problems,
          [],
          `free block ${loc} flipped:\n${formatReport(report)}`,
        );
      }
    }
  });

  test('never throws on damage hidden behind a valid checksum', async () => {
    const random = lcg(12345);
    const next = () => random.next().value as number;
    for (const loc of used) {
      for (const offset of [
        4,
        8,
        12,
        16,
        20,
        24,
        32,
        40,
        64,
        200,
        1040,
        2048,
        2056,
        next() % 4092,
      ]) {
        const blocks = new Map(written);
        const buf = written.get(loc);
        if (buf === undefined) continue;
        blocks.set(loc, restamped(buf, offset & ~3, next()));
        const copy = await copyWithFlip(blocks, -1);
        const report = await checkMetadata(copy);
        assert.ok(Array.isArray(report.problems));
      }
    }
  });
});
