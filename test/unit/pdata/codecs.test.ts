import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BITMAP_PAYLOAD_BYTES,
  blockChecksum,
  btreeNodeValidator,
  CSUM_XOR,
  getEntry,
  LEAF_NODE,
  maxEntriesFor,
  Node,
} from '../../../src/pdata/index.js';
import { decodeBlockTime, encodeBlockTime } from '../../../src/thin/index.js';
import {
  BadBlockError,
  ChecksumError,
  crc32c,
  crc32cRegister,
  MetadataCorruptError,
} from '../../../src/util/index.js';

describe('crc32c', () => {
  it('gives the standard check value and the raw register of the format document', () => {
    const ascii = Buffer.from('123456789');
    assert.equal(crc32c(ascii), 0xe3069283);
    assert.equal(crc32cRegister(ascii), 0x1cf96d7c);
    assert.equal(crc32cRegister(Buffer.alloc(4092)), 0x58cda791);
  });

  it('salts an all-zero block per kind as the format document lists', () => {
    const block = Buffer.alloc(4096);
    assert.equal(blockChecksum(block, CSUM_XOR.superblock), 0x58cfd397);
    assert.equal(blockChecksum(block, CSUM_XOR.btreeNode), 0x58cc7e82);
    assert.equal(blockChecksum(block, CSUM_XOR.bitmap), 0x58ce0b1a);
    assert.equal(blockChecksum(block, CSUM_XOR.index), 0x58cfd54f);
  });
});

describe('btree node layout', () => {
  it('has 3n slots for each value size', () => {
    assert.deepEqual([4, 8, 16, 24].map(maxEntriesFor), [336, 252, 168, 126]);
  });

  it('keeps keys sorted through inserts and removals and zeroes freed slots', () => {
    const node = new Node(Buffer.alloc(4096));
    node.init(LEAF_NODE, 8);
    const v = (n: number) => Buffer.from([n, 0, 0, 0, 0, 0, 0, 0]);
    node.insertAt(0, 10, v(1));
    node.insertAt(1, 30, v(3));
    node.insertAt(1, 20, v(2));
    assert.deepEqual([node.key(0), node.key(1), node.key(2)], [10, 20, 30]);
    assert.equal(node.lowerBound(25), 1);
    assert.equal(node.lowerBound(5), -1);
    node.removeAt(0);
    assert.equal(node.nrEntries, 2);
    assert.deepEqual([node.key(0), node.key(1)], [20, 30]);
    assert.equal(node.value(1)[0], 3);
    assert.equal(node.key(2), 0, 'the freed key slot is zeroed');
  });

  it('finds the lower bound among keys on both sides of 2^32, as a scan would', () => {
    const node = new Node(Buffer.alloc(4096));
    node.init(LEAF_NODE, 8);
    const keys = [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 5, 2 ** 33, 2 ** 40 + 7, 2 ** 53 - 1];
    for (const [i, k] of keys.entries()) node.insertAt(i, k, Buffer.alloc(8));
    const probes = [0, 1, 2, 2 ** 32 - 2, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 4, 2 ** 32 + 5];
    probes.push(2 ** 33 - 1, 2 ** 33, 2 ** 40, 2 ** 40 + 7, 2 ** 40 + 8, 2 ** 53 - 1);
    for (const k of probes) {
      const scan = keys.reduce((at, key, i) => (key <= k ? i : at), -1);
      assert.equal(node.lowerBound(k), scan, `lowerBound(${k})`);
    }
    const empty = new Node(Buffer.alloc(4096));
    empty.init(LEAF_NODE, 8);
    assert.equal(empty.lowerBound(5), -1);
  });

  it('stamps location and checksum on prepare and rejects a moved or flipped block', () => {
    const buf = Buffer.alloc(4096);
    const node = new Node(buf);
    node.init(LEAF_NODE, 8);
    btreeNodeValidator.prepare(buf, 7);
    btreeNodeValidator.check(buf, 7);
    assert.throws(() => btreeNodeValidator.check(buf, 8), BadBlockError);
    buf.writeUInt8(buf.readUInt8(100) ^ 1, 100);
    assert.throws(
      () => btreeNodeValidator.check(buf, 7),
      (err: unknown) => err instanceof ChecksumError && /metadata block 7/.test(err.message),
    );
  });

  it('rejects nodes that break the structural rules even with a valid checksum', () => {
    const cases: Array<[string, (b: Buffer) => void, RegExp]> = [
      ['both flags', (b) => b.writeUInt32LE(3, 4), /both internal and leaf/],
      ['no flags', (b) => b.writeUInt32LE(0, 4), /unknown node type/],
      ['too many entries', (b) => b.writeUInt32LE(253, 16), /bad nr_entries/],
      ['max not div 3', (b) => b.writeUInt32LE(250, 20), /not divisible by 3/],
      ['max too large', (b) => b.writeUInt32LE(400, 20), /max entries too large/],
    ];
    for (const [name, edit, message] of cases) {
      const buf = Buffer.alloc(4096);
      new Node(buf).init(LEAF_NODE, 8);
      edit(buf);
      btreeNodeValidator.prepare(buf, 3);
      assert.throws(
        () => btreeNodeValidator.check(buf, 3),
        (err: unknown) => err instanceof MetadataCorruptError && message.test(err.message),
        name,
      );
    }
  });

  it('rejects keys out of order', () => {
    const buf = Buffer.alloc(4096);
    const node = new Node(buf);
    node.init(LEAF_NODE, 8);
    node.insertAt(0, 5, Buffer.alloc(8));
    node.insertAt(1, 9, Buffer.alloc(8));
    node.setKey(1, 2);
    btreeNodeValidator.prepare(buf, 3);
    assert.throws(() => btreeNodeValidator.check(buf, 3), /keys are out of order, 2 <= 5/);
  });
});

describe('bitmap entries', () => {
  it('reads the byte examples of the format document', () => {
    assert.deepEqual(
      [0, 1, 2, 3].map((e) => getEntry(Buffer.from([0xaa]), e)),
      [1, 1, 1, 1],
    );
    assert.deepEqual(
      [0, 1, 2, 3].map((e) => getEntry(Buffer.from([0xbf]), e)),
      [3, 3, 3, 1],
    );
    assert.deepEqual(
      [0, 1, 2, 3].map((e) => getEntry(Buffer.from([0x77]), e)),
      [3, 2, 3, 2],
    );
    assert.equal(BITMAP_PAYLOAD_BYTES * 4, 16320);
  });
});

describe('block_time', () => {
  it('packs data block 10 at time 1 as the format document shows', () => {
    const buf = encodeBlockTime({ dataBlock: 10, time: 1 });
    assert.deepEqual([...buf], [0x01, 0, 0, 0x0a, 0, 0, 0, 0]);
    assert.deepEqual(decodeBlockTime(buf), { dataBlock: 10, time: 1 });
  });

  it('round-trips the extremes of 40-bit blocks and 24-bit times', () => {
    for (const v of [
      { dataBlock: 2 ** 40 - 1, time: 2 ** 24 - 1 },
      { dataBlock: 255, time: 0 },
      { dataBlock: 256, time: 0xabcdef },
      { dataBlock: 2 ** 32 + 5, time: 7 },
    ]) {
      assert.deepEqual(decodeBlockTime(encodeBlockTime(v)), v);
    }
    assert.throws(() => encodeBlockTime({ dataBlock: 2 ** 40, time: 0 }), RangeError);
  });
});
