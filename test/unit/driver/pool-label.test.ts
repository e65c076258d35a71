import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  decodeLabel,
  encodeLabel,
  LABEL,
  LABEL_AREA,
  LABEL_SLOT_SIZE,
  labelSlotOffset,
  type PoolLabel,
} from '../../../src/driver/pool-label.js';
import { crc32c } from '../../../src/util/index.js';

const MiB = 1024 * 1024;

const label: PoolLabel = {
  seqno: 7,
  poolUuid: '00112233445566778899aabbccddeeff',
  deviceUuid: 'ffeeddccbbaa99887766554433221100',
  dataBlockSize: 65536,
  devices: [
    { uuid: 'ffeeddccbbaa99887766554433221100', size: 256 * MiB },
    { uuid: '0123456789abcdef0123456789abcdef', size: 2 ** 40 },
  ],
  segments: [
    { kind: 'metadata', device: 0, offset: LABEL_AREA, length: 5 * MiB },
    { kind: 'data', device: 0, offset: 6 * MiB, length: 100 * MiB },
    { kind: 'data', device: 1, offset: LABEL_AREA, length: 2 ** 39 },
  ],
};

/** The label above, byte by byte, written without the encoder. */
function handBuilt(): Buffer {
  const buf = Buffer.alloc(LABEL_SLOT_SIZE);
  buf.write('THINPLBL', 0, 'latin1');
  buf.writeUInt32LE(1, 12);
  buf.writeUInt32LE(7, 16);
  Buffer.from(label.poolUuid, 'hex').copy(buf, 24);
  Buffer.from(label.deviceUuid, 'hex').copy(buf, 40);
  buf.writeUInt32LE(2, 56);
  buf.writeUInt32LE(3, 60);
  buf.writeUInt32LE(65536, 64);
  Buffer.from(label.devices[0]?.uuid ?? '', 'hex').copy(buf, 128);
  buf.writeUInt32LE(256 * MiB, 128 + 16);
  Buffer.from(label.devices[1]?.uuid ?? '', 'hex').copy(buf, 160);
  buf.writeUInt32LE(256, 160 + 20); // 2^40 = 256 × 2^32
  const seg = (
    i: number,
    kind: number,
    device: number,
    offset: number,
    lengthHi: number,
    lengthLo: number,
  ) => {
    const at = 640 + i * 24;
    buf.writeUInt32LE(kind, at);
    buf.writeUInt32LE(device, at + 4);
    buf.writeUInt32LE(offset, at + 8);
    buf.writeUInt32LE(lengthLo, at + 16);
    buf.writeUInt32LE(lengthHi, at + 20);
  };
  seg(0, 2, 0, LABEL_AREA, 0, 5 * MiB);
  seg(1, 1, 0, 6 * MiB, 0, 100 * MiB);
  seg(2, 1, 1, LABEL_AREA, 128, 0);
  buf.writeUInt32LE(crc32c(buf.subarray(12)), 8);
  return buf;
}

describe('pool label', () => {
  test('encodes the layout byte for byte and decodes it back', () => {
    const encoded = encodeLabel(label);
    assert.deepEqual(encoded, handBuilt());
    assert.deepEqual(decodeLabel(encoded), label);
  });

  test('names what is wrong: no magic, a flipped bit, a version, a segment past its device', () => {
    assert.equal(decodeLabel(Buffer.alloc(LABEL_SLOT_SIZE)), 'no thinp label');
    const flipped = encodeLabel(label);
    flipped[700] = (flipped[700] as number) ^ 1;
    assert.equal(decodeLabel(flipped), 'the label checksum does not match');
    const version = encodeLabel(label);
    version.writeUInt32LE(9, LABEL.version);
    version.writeUInt32LE(crc32c(version.subarray(LABEL.version)), LABEL.csum);
    assert.equal(decodeLabel(version), 'label version 9 is not supported');
    const past = encodeLabel({
      ...label,
      segments: [{ kind: 'data', device: 0, offset: 250 * MiB, length: 7 * MiB }],
    });
    assert.equal(decodeLabel(past), 'segment 0 lies past the end of its device');
  });

  test('alternates between its two slots', () => {
    assert.deepEqual([6, 7, 8].map(labelSlotOffset), [0, LABEL_SLOT_SIZE, 0]);
  });
});
