import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import { NbdServer, staticRegistry, wire } from '../../../src/nbd/index.js';
import { MemoryExport } from '../../support/nbd-memory-export.js';
import { tempDir } from '../../support/temp.js';
import { RawClient } from './harness.js';

const dir = await tempDir('thinp-nbd-server-');

async function connected(options: net.NetConnectOpts): Promise<RawClient> {
  const socket = net.connect(options);
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  return new RawClient(socket);
}

describe('NbdServer', () => {
  test('serves clients on a UNIX socket and on TCP', async () => {
    const disk = new MemoryExport({ name: 'disk', size: 1 << 20 });
    const server = new NbdServer({ registry: staticRegistry([disk]) });
    const socketPath = path.join(dir, 'a.sock');
    await server.listen({ path: socketPath });
    const tcp = await server.listen({ host: '127.0.0.1', port: 0 });
    assert.ok('port' in tcp && tcp.port > 0);
    const viaUnix = await connected({ path: socketPath });
    const viaTcp = await connected({ host: '127.0.0.1', port: 'port' in tcp ? tcp.port : 0 });
    for (const client of [viaUnix, viaTcp]) {
      assert.equal((await client.connect('disk')).size, 1 << 20);
    }
    viaUnix.request(
      { type: wire.CMD.WRITE, flags: 0, handle: 1n, offset: 0, length: 512 },
      Buffer.alloc(512, 7),
    );
    assert.equal((await viaUnix.reply()).error, 0);
    viaTcp.request({ type: wire.CMD.READ, flags: 0, handle: 2n, offset: 0, length: 512 });
    assert.deepEqual((await viaTcp.reply()).data, Buffer.alloc(512, 7));
    assert.equal(server.connectionCount, 2);
    await server.close();
    await Promise.all([viaUnix.waitClosed(), viaTcp.waitClosed()]);
    await assert.rejects(stat(socketPath), { code: 'ENOENT' });
  });

  test('close() stops accepting, waits for in-flight requests, then closes connections', async () => {
    const disk = new MemoryExport({ name: 'disk', size: 1 << 20 });
    const server = new NbdServer({ registry: staticRegistry([disk]) });
    const socketPath = path.join(dir, 'b.sock');
    await server.listen({ path: socketPath });
    const client = await connected({ path: socketPath });
    await client.connect('disk');
    disk.delayMs = 50;
    client.request(
      { type: wire.CMD.WRITE, flags: 0, handle: 9n, offset: 0, length: 512 },
      Buffer.alloc(512, 1),
    );
    await new Promise((resolve) => setTimeout(resolve, 10));
    const closing = server.close();
    await assert.rejects(connected({ path: socketPath }));
    const reply = await client.reply();
    assert.deepEqual([reply.handle, reply.error], [9n, 0]);
    await closing;
    await client.waitClosed();
    assert.equal(disk.contents()[0], 1);
    assert.equal(server.connectionCount, 0);
  });

  test('one misbehaving client does not disturb another', async () => {
    const disk = new MemoryExport({ name: 'disk', size: 1 << 20 });
    const server = new NbdServer({ registry: staticRegistry([disk]) });
    const socketPath = path.join(dir, 'c.sock');
    await server.listen({ path: socketPath });
    const good = await connected({ path: socketPath });
    await good.connect('disk');
    const bad = await connected({ path: socketPath });
    await bad.connect('disk');
    bad.send(Buffer.alloc(64, 0xff));
    await bad.waitClosed();
    good.request({ type: wire.CMD.READ, flags: 0, handle: 1n, offset: 0, length: 512 });
    assert.equal((await good.reply()).error, 0);
    await server.close();
  });
});

describe('read replies on a socket', () => {
  // A reply spoilt by a reused buffer throws the client off the wire: it would wait forever.
  test('reuse their buffers only once the kernel has the bytes: every reply stays whole', {
    timeout: 30_000,
  }, async () => {
    // Reads done at once, so their replies are taken back and used again at once.
    class AtOnce extends MemoryExport {
      readNow(buf: Buffer, offset: number): boolean {
        this.contents().copy(buf, 0, offset, offset + buf.length);
        return true;
      }
    }
    const size = 1 << 20;
    const disk = new AtOnce({ name: 'disk', size });
    const content = Buffer.alloc(size);
    for (let i = 0; i < size; i += 4) content.writeUInt32LE(i, i);
    const server = new NbdServer({ registry: staticRegistry([disk]) });
    const socketPath = path.join(dir, 'reuse.sock');
    await server.listen({ path: socketPath });
    const client = await connected({ path: socketPath });
    await client.connect('disk', { structured: true });
    client.request(
      { type: wire.CMD.WRITE, flags: 0, handle: 1n, offset: 0, length: size },
      content,
    );
    assert.equal((await client.reply()).error, 0);
    // Many in flight at once, a reply of each size class, read back in a slow trickle so
    // that the socket's buffer fills and some replies must wait in the stream.
    const reads = Array.from({ length: 600 }, (_, i) => ({
      type: wire.CMD.READ,
      flags: 0,
      handle: BigInt(100 + i),
      offset: ((i * 7919) % 256) * 4096,
      length: 4096,
    }));
    for (const r of reads) client.request(r);
    const seen = new Map<bigint, Buffer | undefined>();
    for (let i = 0; i < reads.length; i++) {
      const reply = await client.reply();
      seen.set(reply.handle, reply.data);
      if (i % 50 === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    for (const r of reads) {
      assert.deepEqual(seen.get(r.handle), content.subarray(r.offset, r.offset + r.length));
    }
    await server.close();
    await client.waitClosed();
  });
});
