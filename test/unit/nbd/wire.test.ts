import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ProtocolError, wire } from '../../../src/nbd/index.js';

/** Bytes from a hex string with spaces, written by hand from doc/proto.md. */
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('NBD wire constants', () => {
  test('match the values in the protocol document', () => {
    assert.equal(wire.MAGIC.request, 0x25609513);
    assert.equal(wire.MAGIC.simpleReply, 0x67446698);
    assert.equal(wire.MAGIC.structuredReply, 0x668e33ef);
    assert.deepEqual(wire.MAGIC.optionReply, hex('0003e889045565a9'));
    assert.deepEqual(wire.MAGIC.ihaveopt, hex('49484156454F5054'));
    assert.deepEqual(wire.MAGIC.nbd, hex('4e42444d41474943'));
    assert.equal(wire.OPT.LIST_META_CONTEXT, 9);
    assert.equal(wire.OPT.SET_META_CONTEXT, 10);
    assert.equal(wire.REP.ERR_UNSUP, 0x80000001);
    assert.equal(wire.REP.ERR_TOO_BIG, 0x80000009);
    assert.equal(wire.REPLY_TYPE.ERROR, 0x8001);
    assert.equal(wire.TRANSMISSION_FLAG.sendFastZero, 0x800);
    assert.equal(wire.NBD_ERRNO.ENOTSUP, 95);
    assert.equal(wire.NBD_ERRNO.ESHUTDOWN, 108);
  });

  test('names commands, options and errors for logs', () => {
    assert.equal(wire.nameOfCmd(wire.CMD.BLOCK_STATUS), 'NBD_CMD_BLOCK_STATUS');
    assert.equal(wire.nameOfCmd(99), 'NBD_CMD_UNKNOWN(99)');
    assert.equal(wire.nameOfOpt(wire.OPT.GO), 'NBD_OPT_GO');
    assert.equal(wire.nameOfRep(wire.REP.ERR_UNKNOWN), 'NBD_REP_ERR_UNKNOWN');
    assert.equal(wire.nameOfErrno(28), 'NBD_ENOSPC');
    assert.equal(wire.nameOfInfo(3), 'NBD_INFO_BLOCK_SIZE');
    assert.equal(wire.nameOfReplyType(5), 'NBD_REPLY_TYPE_BLOCK_STATUS');
  });
});

describe('NBD handshake codecs', () => {
  test('the greeting is NBDMAGIC, IHAVEOPT and the handshake flags', () => {
    const expected = hex('4e42444d41474943 49484156454f5054 0003');
    assert.deepEqual(wire.encodeGreeting(3), expected);
    assert.equal(wire.decodeGreeting(expected), 3);
  });

  test('decodes an option header and rejects a bad magic', () => {
    const bytes = hex('49484156454f5054 00000007 0000000a');
    assert.deepEqual(wire.decodeOptionHeader(bytes), { option: 7, length: 10 });
    assert.deepEqual(wire.encodeOption(7, Buffer.alloc(10)).subarray(0, 16), bytes);
    assert.throws(
      () => wire.decodeOptionHeader(hex('49484156454f5055 00000007 00000000')),
      ProtocolError,
    );
  });

  test('encodes an option reply with its data', () => {
    const reply = wire.encodeOptionReply(wire.OPT.LIST, wire.REP.SERVER, hex('00000001 61'));
    assert.deepEqual(reply, hex('0003e889045565a9 00000003 00000002 00000005 00000001 61'));
    assert.deepEqual(wire.decodeOptionReplyHeader(reply), { option: 3, type: 2, length: 5 });
  });

  test('the NBD_OPT_EXPORT_NAME reply has 124 zeroes unless NO_ZEROES', () => {
    const short = wire.encodeExportNameReply(0x1_0000_0000, 0x0105, true);
    assert.deepEqual(short, hex('0000000100000000 0105'));
    const long = wire.encodeExportNameReply(512, 1, false);
    assert.equal(long.length, 134);
    assert.deepEqual(long.subarray(0, 10), hex('0000000000000200 0001'));
    assert.ok(long.subarray(10).every((b) => b === 0));
  });

  test('encodes the info replies', () => {
    assert.deepEqual(wire.encodeInfoExport(1 << 20, 0x4d), hex('0000 0000000000100000 004d'));
    assert.deepEqual(wire.encodeInfoString(wire.INFO.NAME, 'ab'), hex('0001 6162'));
    const sizes = { minimum: 512, preferred: 4096, maximum: 1 << 25 };
    assert.deepEqual(wire.encodeInfoBlockSize(sizes), hex('0003 00000200 00001000 02000000'));
    assert.deepEqual(wire.encodeServerData('d', 'x'), hex('00000001 64 78'));
    assert.deepEqual(
      wire.encodeMetaContextData(1, 'base:allocation'),
      Buffer.concat([hex('00000001'), Buffer.from('base:allocation')]),
    );
  });
});

describe('NBD transmission codecs', () => {
  const requestBytes = hex('25609513 0001 0001 0102030405060708 0000000100000200 00001000');

  test('decodes a request and encodes it back', () => {
    const req = wire.decodeRequest(requestBytes);
    assert.deepEqual(req, {
      flags: 1,
      type: wire.CMD.WRITE,
      handle: 0x0102030405060708n,
      offset: 2 ** 32 + 512,
      length: 4096,
    });
    assert.deepEqual(wire.encodeRequest(req), requestBytes);
  });

  test('rejects a request with a bad magic', () => {
    const bad = Buffer.from(requestBytes);
    bad[0] = 0x26;
    assert.throws(() => wire.decodeRequest(bad), /bad request magic 0x26609513/);
  });

  test('reads an offset beyond 2^53 as a number larger than any export', () => {
    const bytes = hex('25609513 0000 0000 0000000000000000 ffffffffffffffff 00000001');
    assert.ok(wire.decodeRequest(bytes).offset > Number.MAX_SAFE_INTEGER);
  });

  test('encodes simple replies', () => {
    const bytes = hex('67446698 0000001c 00000000000000ff');
    assert.deepEqual(wire.encodeSimpleReply(255n, 28), bytes);
    assert.deepEqual(wire.decodeSimpleReply(bytes), { error: 28, handle: 255n });
  });

  test('encodes an error chunk with its message', () => {
    const chunk = wire.encodeErrorChunk(7n, 22, 'no');
    assert.deepEqual(chunk, hex('668e33ef 0001 8001 0000000000000007 00000008 00000016 0002 6e6f'));
    assert.deepEqual(wire.decodeChunkHeader(chunk), {
      flags: 1,
      type: 0x8001,
      handle: 7n,
      length: 8,
    });
  });

  test('encodes an OFFSET_DATA chunk header in front of the data', () => {
    const chunk = wire.allocOffsetDataChunk(2n, 4096, 3);
    chunk.fill(0xaa, wire.OFFSET_DATA_PAYLOAD);
    assert.deepEqual(
      chunk,
      hex('668e33ef 0001 0001 0000000000000002 0000000b 0000000000001000 aaaaaa'),
    );
  });

  test('encodes a block status chunk', () => {
    const chunk = wire.encodeBlockStatusChunk(3n, 1, [
      { length: 65536, flags: 0 },
      { length: 512, flags: 3 },
    ]);
    assert.deepEqual(
      chunk,
      hex(
        '668e33ef 0001 0005 0000000000000003 00000014 00000001 00010000 00000000 00000200 00000003',
      ),
    );
  });

  test('encodes a NONE chunk', () => {
    assert.deepEqual(wire.encodeNoneChunk(1n), hex('668e33ef 0001 0000 0000000000000001 00000000'));
  });

  test('the layouts agree with their sizes', () => {
    assert.equal(wire.REQUEST.length + 4, wire.REQUEST.size);
    assert.equal(wire.CHUNK.length + 4, wire.CHUNK.size);
    assert.equal(wire.SIMPLE_REPLY.handle + 8, wire.SIMPLE_REPLY.size);
    assert.equal(wire.OPTION_REPLY.length + 4, wire.OPTION_REPLY.size);
  });
});
