/**
 * The tar codecs of the archive layer: PAX records both ways (byte-exact values, lengths
 * across digit boundaries), PAX times, the ustar header layout (checked against
 * hand-computed bytes and against tar-stream's reader) and its overflow into PAX.
 */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { extract } from 'tar-stream';
import { BadArchiveError } from '../../../src/archive/errors.js';
import { decodePaxRecords, paxTime } from '../../../src/archive/tar-entry.js';
import { detectCompression } from '../../../src/archive/tar-reader.js';
import {
  BLOCK,
  encodeHeader,
  overflowRecords,
  paxBody,
  USTAR,
  type WriteHeader,
} from '../../../src/archive/tar-writer.js';

const HEADER: WriteHeader = {
  name: 'etc/passwd',
  type: 'file',
  mode: 0o644,
  uid: 1000,
  gid: 100,
  size: 42,
  mtime: 1_600_000_000,
  linkname: '',
  devmajor: 0,
  devminor: 0,
};

describe('archive: PAX records', () => {
  it('writes "<length> key=value\\n" where length counts itself, across digit boundaries', () => {
    for (let size = 0; size < 1100; size += 1) {
      const body = paxBody([['k', 'v'.repeat(size)]]);
      const length = Number(body.toString('latin1').split(' ')[0]);
      assert.equal(length, body.length, `value of ${size} bytes`);
    }
  });

  it('reads back binary values byte for byte', () => {
    const value = Buffer.from([0, 1, 0x0a, 0x3d, 0x80, 0xff]).toString('latin1');
    const body = paxBody([
      ['path', 'dir/ünï'],
      ['SCHILY.xattr.user.bin', value],
      ['mtime', '1.5'],
    ]);
    assert.deepEqual(decodePaxRecords(body), {
      path: 'dir/ünï',
      'SCHILY.xattr.user.bin': value,
      mtime: '1.5',
    });
    assert.deepEqual(
      decodePaxRecords(Buffer.concat([body, Buffer.alloc(100)])),
      decodePaxRecords(body),
    );
  });

  for (const bad of ['9 k=v\n', '5 kv\n', 'x k=v\n', '99 k=v\n']) {
    it(`refuses the malformed record ${JSON.stringify(bad)}`, () => {
      assert.throws(() => decodePaxRecords(Buffer.from(bad)), BadArchiveError);
    });
  }

  it('reads PAX times to the nanosecond', () => {
    assert.deepEqual(paxTime('1600000000.123456789', 'e'), {
      sec: 1_600_000_000,
      nsec: 123_456_789,
    });
    assert.deepEqual(paxTime('1600000000.1', 'e'), { sec: 1_600_000_000, nsec: 100_000_000 });
    assert.deepEqual(paxTime('12', 'e'), { sec: 12, nsec: 0 });
    assert.deepEqual(paxTime('1.1234567891', 'e'), { sec: 1, nsec: 123_456_789 });
    assert.deepEqual(paxTime('-5.5', 'e'), { sec: 0, nsec: 0 });
    assert.equal(paxTime(undefined, 'e'), undefined);
    assert.throws(() => paxTime('soon', 'e'), BadArchiveError);
  });
});

describe('archive: ustar headers', () => {
  it('lays the fields out at their offsets, with a valid checksum', () => {
    const block = encodeHeader(HEADER);
    assert.equal(block.length, BLOCK);
    const field = (f: { offset: number; size: number }) =>
      block.toString('latin1', f.offset, f.offset + f.size);
    assert.equal(field(USTAR.name), `etc/passwd${'\0'.repeat(90)}`);
    assert.equal(field(USTAR.mode), '0000644\0');
    assert.equal(field(USTAR.uid), '0001750\0');
    assert.equal(field(USTAR.size), '00000000052\0');
    assert.equal(field(USTAR.mtime), '13727410000\0');
    assert.equal(field(USTAR.typeflag), '0');
    assert.equal(field(USTAR.magic), 'ustar\0');
    assert.equal(field(USTAR.version), '00');
    const stored = Number.parseInt(field(USTAR.chksum).slice(0, 6), 8);
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (block[i] as number);
    assert.equal(stored, sum);
  });

  it('splits a long name into prefix and name', () => {
    const name = `${'a'.repeat(120)}/${'b'.repeat(90)}`;
    const block = encodeHeader({ ...HEADER, name });
    assert.equal(
      block.toString('latin1', USTAR.prefix.offset, USTAR.prefix.offset + 120),
      'a'.repeat(120),
    );
    assert.equal(block.toString('latin1', 0, 90), 'b'.repeat(90));
    assert.deepEqual(overflowRecords({ ...HEADER, name }).records, []);
  });

  it('moves what does not fit into PAX records, with stand-ins in the header', () => {
    const name = `${'x'.repeat(300)}/f`;
    const { records, header } = overflowRecords({
      ...HEADER,
      name,
      linkname: 'é',
      uid: 3_000_000,
      gid: 0o7777777,
      mtime: 2 ** 40,
    });
    assert.deepEqual(records, [
      ['path', name],
      ['linkpath', 'é'],
      ['uid', '3000000'],
      ['mtime', String(2 ** 40)],
    ]);
    assert.equal(header.name.length, 100);
    assert.equal(header.linkname, '_');
    assert.deepEqual([header.uid, header.gid, header.mtime], [0, 0o7777777, 0]);
  });

  it('writes a size beyond 8 GiB in base-256', () => {
    const block = encodeHeader({ ...HEADER, size: 10 * 2 ** 30 });
    assert.equal(block[USTAR.size.offset], 0x80);
    assert.equal(block.readUIntBE(USTAR.size.offset + 6, 6), 10 * 2 ** 30);
  });

  it("is read back by tar-stream's reader", async () => {
    const tar = extract();
    tar.end(
      Buffer.concat([
        encodeHeader({ ...HEADER, type: 'block-device', size: 0, devmajor: 8, devminor: 17 }),
        Buffer.alloc(1024),
      ]),
    );
    for await (const entry of tar) {
      assert.equal(entry.header.name, 'etc/passwd');
      assert.equal(entry.header.type, 'block-device');
      assert.deepEqual(
        [entry.header.uid, entry.header.gid, entry.header.devmajor, entry.header.devminor],
        [1000, 100, 8, 17],
      );
      assert.equal(entry.header.mtime?.getTime(), 1_600_000_000_000);
      entry.resume();
    }
  });
});

describe('archive: compression magic', () => {
  it('recognises gzip, bzip2, xz and zstd, and nothing in a tar', () => {
    assert.equal(detectCompression(Buffer.from([0x1f, 0x8b, 8])), 'gzip');
    assert.equal(detectCompression(Buffer.from('BZh9')), 'bzip2');
    assert.equal(detectCompression(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0])), 'xz');
    assert.equal(detectCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])), 'zstd');
    assert.equal(detectCompression(encodeHeader(HEADER)), undefined);
    assert.equal(detectCompression(Buffer.alloc(0)), undefined);
  });
});
