import assert from 'node:assert/strict';
import { test } from 'node:test';
import { serveConnection, staticRegistry, wire } from '../../../src/nbd/index.js';
import { MemoryExport } from '../../support/nbd-memory-export.js';
import { duplexPair, infoData, metaContextData } from './harness.js';

const { CMD, OPT } = wire;

/** A whole client session written up front: handshake, requests with payloads, DISC. */
function clientStream(): Buffer {
  const request = (type: number, handle: bigint, offset: number, length: number, flags = 0) =>
    wire.encodeRequest({ type, handle, offset, length, flags });
  return Buffer.concat([
    wire.encodeClientFlags(wire.CLIENT_FLAG.fixedNewstyle | wire.CLIENT_FLAG.noZeroes),
    wire.encodeOption(OPT.LIST),
    wire.encodeOption(OPT.STRUCTURED_REPLY),
    wire.encodeOption(OPT.SET_META_CONTEXT, metaContextData('d', [wire.BASE_ALLOCATION])),
    wire.encodeOption(OPT.GO, infoData('d', [wire.INFO.BLOCK_SIZE])),
    request(CMD.WRITE, 1n, 512, 1024),
    Buffer.alloc(1024, 0x61),
    request(CMD.WRITE, 2n, 1 << 20, 512), // past the end: rejected, payload skipped
    Buffer.alloc(512, 0x25),
    request(CMD.BLOCK_STATUS, 3n, 0, 128 * 1024),
    request(CMD.FLUSH, 4n, 0, 0),
    request(CMD.WRITE_ZEROES, 5n, 0, 512),
    request(CMD.DISC, 6n, 0, 0),
  ]);
}

/** Everything the server sent for `chunks`; replies after GO are ordered by handle. */
async function serve(chunks: readonly Buffer[]): Promise<{ bytes: Buffer; contents: Buffer }> {
  const disk = new MemoryExport({ name: 'd', size: 256 * 1024 });
  const [serverEnd, clientEnd] = duplexPair();
  const connection = serveConnection(serverEnd, { registry: staticRegistry([disk]) });
  const received: Buffer[] = [];
  clientEnd.on('data', (chunk: Buffer) => received.push(chunk));
  for (const chunk of chunks) {
    clientEnd.write(chunk);
    await new Promise((resolve) => setImmediate(resolve));
  }
  await connection.closed;
  return { bytes: inHandleOrder(Buffer.concat(received)), contents: disk.contents() };
}

/**
 * The server's output with its transmission replies sorted by handle: replies to concurrent
 * requests may legitimately complete in a different order (this stream has no reads, so a
 * simple reply is always 16 bytes).
 */
function inHandleOrder(out: Buffer): Buffer {
  let at = wire.GREETING.size;
  for (;;) {
    const header = wire.decodeOptionReplyHeader(out.subarray(at));
    at += wire.OPTION_REPLY.size + header.length;
    if (header.option === OPT.GO && header.type === wire.REP.ACK) break;
  }
  const replies: Buffer[] = [];
  while (at < out.length) {
    const simple = out.readUInt32BE(at) === wire.MAGIC.simpleReply;
    const size = simple
      ? wire.SIMPLE_REPLY.size
      : wire.CHUNK.size + out.readUInt32BE(at + wire.CHUNK.length);
    replies.push(out.subarray(at, at + size));
    at += size;
  }
  replies.sort((a, b) => Buffer.compare(a.subarray(8, 16), b.subarray(8, 16)));
  return Buffer.concat([
    out.subarray(0, out.length - replies.reduce((n, r) => n + r.length, 0)),
    ...replies,
  ]);
}

test('the server answers the same whatever byte the stream is split at', async () => {
  const stream = clientStream();
  const whole = await serve([stream]);
  assert.equal(whole.contents.subarray(512, 1536).toString(), 'a'.repeat(1024));
  for (let i = 1; i < stream.length; i++) {
    const split = await serve([stream.subarray(0, i), stream.subarray(i)]);
    assert.deepEqual(split.bytes, whole.bytes, `split at byte ${i}`);
    assert.deepEqual(split.contents, whole.contents, `split at byte ${i}`);
  }
});
