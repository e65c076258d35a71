import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { STATUS, staticRegistry, wire } from '../../../src/nbd/index.js';
import { NoSpaceError } from '../../../src/util/index.js';
import { MemoryExport, type MemoryExportOptions } from '../../support/nbd-memory-export.js';
import { connectPair, type RawClient } from './harness.js';

const { CMD, CMD_FLAG, NBD_ERRNO: E, STATE } = wire;
const MiB = 1024 * 1024;

let nextHandle = 1n;
const req = (type: number, offset = 0, length = 0, flags = 0): wire.Request => ({
  type,
  offset,
  length,
  flags,
  handle: nextHandle++,
});

async function open(
  options: Partial<MemoryExportOptions> = {},
  connect: { structured?: boolean; allocation?: boolean; maxInFlight?: number } = {},
) {
  const disk = new MemoryExport({ name: 'disk', size: 4 * MiB, ...options });
  const { client, connection } = connectPair(
    staticRegistry([disk]),
    connect.maxInFlight === undefined ? {} : { maxInFlight: connect.maxInFlight },
  );
  await client.connect('disk', connect);
  return { disk, client, connection };
}

/** Sends one request and returns its reply. */
async function roundTrip(client: RawClient, request: wire.Request, payload?: Buffer) {
  client.request(request, payload);
  const reply = await client.reply();
  assert.equal(reply.handle, request.handle);
  return reply;
}

for (const structured of [false, true]) {
  describe(`NBD transmission with ${structured ? 'structured' : 'simple'} replies`, () => {
    test('writes and reads back', async () => {
      const { client } = await open({}, { structured });
      const data = Buffer.alloc(8192, 0x5a);
      assert.equal((await roundTrip(client, req(CMD.WRITE, 4096, 8192), data)).error, 0);
      const reply = await roundTrip(client, req(CMD.READ, 4096, 8192));
      assert.equal(reply.error, 0);
      assert.deepEqual(reply.data, data);
    });

    test('rejects a read past the end with EINVAL and keeps serving', async () => {
      const { client } = await open({}, { structured });
      assert.equal((await roundTrip(client, req(CMD.READ, 4 * MiB - 512, 1024))).error, E.EINVAL);
      assert.equal((await roundTrip(client, req(CMD.READ, 0, 512))).error, 0);
    });

    test('rejects a write past the end with ENOSPC and skips its payload', async () => {
      const { client, disk } = await open({}, { structured });
      const payload = Buffer.alloc(1024, 0x25); // bytes that would look like request magic
      assert.equal(
        (await roundTrip(client, req(CMD.WRITE, 4 * MiB - 512, 1024), payload)).error,
        E.ENOSPC,
      );
      assert.equal((await roundTrip(client, req(CMD.READ, 0, 512))).error, 0);
      assert.equal(disk.calls.write, 0);
    });

    test('maps export failures through toNbdErrno', async () => {
      const { client, disk } = await open({}, { structured });
      disk.failNext.set('write', new NoSpaceError('data', 'the pool is full'));
      const reply = await roundTrip(client, req(CMD.WRITE, 0, 512), Buffer.alloc(512));
      assert.equal(reply.error, E.ENOSPC);
      if (structured) {
        assert.equal(reply.chunks[0]?.type, wire.REPLY_TYPE.ERROR);
        assert.match(reply.chunks[0]?.payload.subarray(6).toString() ?? '', /the pool is full/);
      }
      disk.failNext.set('read', new Error('disk on fire'));
      assert.equal((await roundTrip(client, req(CMD.READ, 0, 512))).error, E.EIO);
    });
  });
}

describe('NBD request validation on the wire', () => {
  test('rejects unaligned requests and payloads over the maximum, skipping write payloads', async () => {
    const { client, disk } = await open({ maxBlockSize: 64 * 1024 });
    assert.equal((await roundTrip(client, req(CMD.READ, 100, 512))).error, E.EINVAL);
    assert.equal(
      (await roundTrip(client, req(CMD.WRITE, 0, 700), Buffer.alloc(700))).error,
      E.EINVAL,
    );
    const big = 128 * 1024;
    assert.equal(
      (await roundTrip(client, req(CMD.WRITE, 0, big), Buffer.alloc(big))).error,
      E.EINVAL,
    );
    assert.equal((await roundTrip(client, req(CMD.READ, 0, big))).error, E.EINVAL);
    assert.equal((await roundTrip(client, req(CMD.TRIM, 0, big))).error, 0, 'trim has no maximum');
    assert.equal(disk.calls.write, 0);
  });

  test('never refuses zeroes, trims, caches or status queries for their length alone', async () => {
    const { client, disk } = await open(
      { maxBlockSize: 64 * 1024 },
      { structured: true, allocation: true },
    );
    const big = 4 * MiB;
    await roundTrip(client, req(CMD.WRITE, 0, 64 * 1024), Buffer.alloc(64 * 1024, 5));
    assert.equal((await roundTrip(client, req(CMD.WRITE_ZEROES, 0, big))).error, 0);
    assert.equal(
      (await roundTrip(client, req(CMD.WRITE_ZEROES, 0, big, CMD_FLAG.NO_HOLE))).error,
      0,
    );
    assert.equal((await roundTrip(client, req(CMD.TRIM, 0, big))).error, 0);
    assert.equal((await roundTrip(client, req(CMD.CACHE, 0, big))).error, 0);
    const status = await roundTrip(client, req(CMD.BLOCK_STATUS, 0, big));
    assert.equal(status.chunks[0]?.type, wire.REPLY_TYPE.BLOCK_STATUS);
    assert.deepEqual([disk.calls.cache, disk.calls.write], [1, 1]);
  });

  test('rejects unknown commands and flags, and flush with a range', async () => {
    const { client } = await open();
    assert.equal((await roundTrip(client, req(42, 0, 512))).error, E.EINVAL);
    assert.equal((await roundTrip(client, req(CMD.READ, 0, 512, 1 << 9))).error, E.EINVAL);
    assert.equal(
      (await roundTrip(client, req(CMD.READ, 0, 512, CMD_FLAG.DF))).error,
      E.EINVAL,
      'DF needs structured replies',
    );
    assert.equal((await roundTrip(client, req(CMD.FLUSH, 0, 512))).error, E.EINVAL);
    assert.equal((await roundTrip(client, req(CMD.FLUSH))).error, 0);
    assert.equal((await roundTrip(client, req(CMD.READ, 0, 0))).error, E.EINVAL);
  });

  test('rejects changes to a read-only export with EPERM', async () => {
    const { client } = await open({ readOnly: true });
    assert.equal(
      (await roundTrip(client, req(CMD.WRITE, 0, 512), Buffer.alloc(512))).error,
      E.EPERM,
    );
    assert.equal((await roundTrip(client, req(CMD.TRIM, 0, 512))).error, E.EPERM);
    assert.equal((await roundTrip(client, req(CMD.WRITE_ZEROES, 0, 512))).error, E.EPERM);
    assert.equal((await roundTrip(client, req(CMD.READ, 0, 512))).error, 0);
  });

  test('rejects block status without a selected metadata context', async () => {
    const { client } = await open({}, { structured: true });
    assert.equal((await roundTrip(client, req(CMD.BLOCK_STATUS, 0, 512))).error, E.EINVAL);
  });
});

describe('NBD commands', () => {
  test('block status reports holes for unwritten blocks and merges equal extents', async () => {
    const { client } = await open({}, { structured: true, allocation: true });
    await roundTrip(client, req(CMD.WRITE, 64 * 1024, 512), Buffer.alloc(512, 1));
    const reply = await roundTrip(client, req(CMD.BLOCK_STATUS, 0, 4 * MiB));
    const chunk = reply.chunks[0];
    assert.equal(chunk?.type, wire.REPLY_TYPE.BLOCK_STATUS);
    assert.deepEqual(
      chunk?.payload,
      wire
        .encodeBlockStatusChunk(0n, 1, [
          { length: 64 * 1024, flags: STATE.HOLE | STATE.ZERO },
          { length: 64 * 1024, flags: 0 },
          { length: 4 * MiB - 128 * 1024, flags: STATE.HOLE | STATE.ZERO },
        ])
        .subarray(wire.CHUNK.size),
    );
    const one = await roundTrip(client, req(CMD.BLOCK_STATUS, 0, 4 * MiB, CMD_FLAG.REQ_ONE));
    assert.equal(one.chunks[0]?.payload.length, 4 + 8);
  });

  test('write zeroes, trim, cache and flush reach the export', async () => {
    const { client, disk } = await open({}, { structured: true, allocation: true });
    await roundTrip(client, req(CMD.WRITE, 0, 128 * 1024), Buffer.alloc(128 * 1024, 7));
    assert.equal(
      (await roundTrip(client, req(CMD.WRITE_ZEROES, 0, 64 * 1024, CMD_FLAG.FUA))).error,
      0,
    );
    assert.equal((await roundTrip(client, req(CMD.TRIM, 64 * 1024, 64 * 1024))).error, 0);
    assert.equal(disk.allocatedBytes, 0);
    assert.equal(
      (await roundTrip(client, req(CMD.WRITE_ZEROES, 0, 512, CMD_FLAG.NO_HOLE))).error,
      0,
    );
    assert.equal(disk.allocatedBytes, 64 * 1024);
    const fast = req(CMD.WRITE_ZEROES, 0, 512, CMD_FLAG.NO_HOLE | CMD_FLAG.FAST_ZERO);
    assert.equal((await roundTrip(client, fast)).error, E.ENOTSUP);
    assert.equal((await roundTrip(client, req(CMD.CACHE, 0, 4096))).error, 0);
    assert.equal((await roundTrip(client, req(CMD.FLUSH))).error, 0);
    assert.deepEqual([disk.calls.cache, disk.calls.flush], [1, 1]);
  });

  test('runs many requests at once and replies out of order', async () => {
    const { client, disk } = await open();
    disk.delayMs = 20;
    const slow = req(CMD.READ, 0, 512);
    client.request(slow);
    await new Promise((resolve) => setTimeout(resolve, 5));
    disk.delayMs = 0;
    const fast = req(CMD.READ, 512, 512);
    client.request(fast);
    assert.equal((await client.reply()).handle, fast.handle);
    assert.equal((await client.reply()).handle, slow.handle);
  });

  test('holds input at maxInFlight requests', async () => {
    const { client, disk, connection } = await open({}, { maxInFlight: 2 });
    disk.delayMs = 10;
    let most = 0;
    const requests = Array.from({ length: 10 }, (_, i) => req(CMD.READ, i * 512, 512));
    for (const r of requests) client.request(r);
    const poll = setInterval(() => {
      most = Math.max(most, connection.requestsInFlight);
    }, 1);
    for (const _ of requests) assert.equal((await client.reply()).error, 0);
    clearInterval(poll);
    assert.ok(most <= 2, `at most 2 in flight, saw ${most}`);
  });
});

describe('NBD session endings', () => {
  test('NBD_CMD_DISC finishes in-flight requests, replies, then closes', async () => {
    const { client, disk, connection } = await open();
    disk.delayMs = 20;
    const read = req(CMD.READ, 0, 512);
    client.request(read);
    client.request(req(CMD.DISC));
    assert.equal((await client.reply()).handle, read.handle);
    await client.waitClosed();
    await connection.closed;
    assert.equal(connection.status, STATUS.DEAD);
  });

  test('a bad request magic disconnects; in-flight requests still finish', async () => {
    const { client, disk, connection } = await open();
    disk.delayMs = 20;
    client.request(req(CMD.WRITE, 0, 512), Buffer.alloc(512, 9));
    client.send(Buffer.alloc(28, 0xee));
    await client.waitClosed();
    await connection.closed;
    assert.equal(connection.requestsInFlight, 0);
    assert.equal(disk.contents()[0], 9);
  });

  test('a client that disconnects mid-payload leaves the export untouched', async () => {
    const { client, disk, connection } = await open();
    client.request(req(CMD.WRITE, 0, 4096), Buffer.alloc(1000, 3));
    await new Promise((resolve) => setImmediate(resolve));
    client.stream.destroy();
    await connection.closed;
    assert.equal(disk.calls.write, 0);
  });

  test('a client that disconnects with requests in flight: they finish, nothing leaks', async () => {
    const { client, disk, connection } = await open();
    disk.delayMs = 20;
    for (let i = 0; i < 5; i++) client.request(req(CMD.WRITE, i * 512, 512), Buffer.alloc(512, 1));
    await new Promise((resolve) => setTimeout(resolve, 5));
    client.stream.destroy();
    await connection.closed;
    assert.equal(connection.requestsInFlight, 0);
    assert.equal(disk.calls.write, 5);
  });

  test('shutdown lets in-flight requests reply before closing', async () => {
    const { client, disk, connection } = await open();
    disk.delayMs = 20;
    const read = req(CMD.READ, 0, 512);
    client.request(read);
    await new Promise((resolve) => setTimeout(resolve, 5));
    const closing = connection.shutdown();
    assert.equal((await client.reply()).handle, read.handle);
    await closing;
    await client.waitClosed();
  });
});

/** A memory export that can also read at once, as the daemon's does when blocks are cached. */
class AtOnceExport extends MemoryExport {
  atOnce = 0;
  /** What the next `readNow` calls do: read, refuse (false) or throw. */
  mode: 'read' | 'refuse' | 'throw' = 'read';

  readNow(buf: Buffer, offset: number): boolean {
    if (this.mode === 'refuse') return false;
    if (this.mode === 'throw') throw new Error('not at once');
    this.atOnce++;
    this.contents().copy(buf, 0, offset, offset + buf.length);
    return true;
  }
}

describe('NBD reads done at once (Export.readNow)', () => {
  for (const structured of [false, true]) {
    test(`reply with the data and no call of read, else read the usual way (${structured ? 'structured' : 'simple'})`, async () => {
      const disk = new AtOnceExport({ name: 'disk', size: 4 * MiB });
      const { client, connection } = connectPair(staticRegistry([disk]));
      await client.connect('disk', { structured });
      const data = Buffer.alloc(8192, 0x3c);
      assert.equal((await roundTrip(client, req(CMD.WRITE, 4096, 8192), data)).error, 0);

      const now = await roundTrip(client, req(CMD.READ, 4096, 8192));
      assert.deepEqual(now.data, data);
      assert.equal(disk.atOnce, 1);
      assert.equal(disk.calls.read, 0, 'read at once: the export was not asked again');
      assert.equal(connection.requestsInFlight, 0);

      disk.mode = 'refuse';
      assert.deepEqual(
        (await roundTrip(client, req(CMD.READ, 4096, 4096))).data,
        data.subarray(0, 4096),
      );
      assert.equal(disk.calls.read, 1, 'refused at once: read the usual way');

      disk.mode = 'throw';
      disk.failNext.set('read', new Error('disk on fire'));
      assert.equal(
        (await roundTrip(client, req(CMD.READ, 0, 512))).error,
        E.EIO,
        'read reports it',
      );
      assert.equal(disk.calls.read, 2);
    });
  }

  test('many reads at once in one chunk: every reply whole, in order of the requests', async () => {
    const disk = new AtOnceExport({ name: 'disk', size: 4 * MiB });
    const { client } = connectPair(staticRegistry([disk]));
    await client.connect('disk', { structured: true });
    const data = Buffer.alloc(64 * 1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    await roundTrip(client, req(CMD.WRITE, 0, data.length), data);
    const requests = Array.from({ length: 16 }, (_, i) => req(CMD.READ, i * 4096, 4096));
    for (const r of requests) client.request(r);
    for (const [i, r] of requests.entries()) {
      const reply = await client.reply();
      assert.equal(reply.handle, r.handle);
      assert.deepEqual(reply.data, data.subarray(i * 4096, (i + 1) * 4096));
    }
    assert.equal(disk.calls.read, 0);
  });
});
