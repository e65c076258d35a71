/**
 * The relay's client against a server that can crash: a real NBD server (serveConnection) on
 * a UNIX socket over an export that, on `crash()`, forgets every write not yet flushed, as a
 * killed daemon forgets what it had not committed. Acknowledged writes come back after the
 * crash (the journal), requests sent while the server is away complete once it returns,
 * a flush empties the journal, overlapping writes keep their order, and a server that never
 * returns fails the pending requests with EIO after the reconnect window.
 */

import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  type Export,
  RelayClient,
  serveConnection,
  staticRegistry,
  wire,
} from '../../../src/nbd/index.js';
import { tempDir } from '../../support/temp.js';

const SIZE = 1024 * 1024;
const dir = await tempDir('thinp-relay-client-');

/** Contents that survive a crash only once flushed. */
class CrashyExport implements Export {
  readonly name = 'vol';
  readonly size = SIZE;
  readonly readOnly = false;
  readonly canFlush = true;
  readonly canTrim = false;
  readonly canWriteZeroes = false;
  readonly canMultiConn = false;
  readonly minBlockSize = 1;
  readonly preferredBlockSize = 4096;
  readonly maxBlockSize = 65536;
  data = Buffer.alloc(SIZE);
  durable = Buffer.alloc(SIZE);
  writes = 0;

  async read(buf: Buffer, offset: number): Promise<void> {
    this.data.copy(buf, 0, offset, offset + buf.length);
  }
  async write(buf: Buffer, offset: number): Promise<void> {
    this.writes++;
    buf.copy(this.data, offset);
  }
  async flush(): Promise<void> {
    this.durable = Buffer.from(this.data);
  }
  async trim(): Promise<void> {}
  async writeZeroes(): Promise<void> {}
  async blockStatus(_offset: number, length: number) {
    return [{ length, hole: false, zero: false }];
  }
  crash(): void {
    this.data = Buffer.from(this.durable);
  }
}

/** A server that can be killed (connections cut, unflushed writes lost) and started again. */
class Server {
  readonly export = new CrashyExport();
  private listener: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();

  constructor(readonly socketPath: string) {}

  /** Serves the export, or (`refusing`) answers but has no export by that name. */
  async start(o: { refusing?: boolean } = {}): Promise<void> {
    const exports = o.refusing === true ? [] : [this.export];
    const listener = net.createServer((socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      socket.on('error', () => {});
      serveConnection(socket, { registry: staticRegistry(exports) });
    });
    await new Promise<void>((resolve) => listener.listen(this.socketPath, resolve));
    this.listener = listener;
  }

  async kill(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const listener = this.listener;
    this.listener = undefined;
    if (listener !== undefined) await new Promise((resolve) => listener.close(resolve));
    this.export.crash();
  }
}

let serial = 0;
async function setup(reconnectMs = 10_000, refusedMs = 30_000) {
  const server = new Server(path.join(dir, `nbd-${serial++}.sock`));
  await server.start();
  const events: string[] = [];
  const client = await RelayClient.open(server.socketPath, 'vol', 1000, {
    reconnectMs,
    refusedMs,
    log: (event) => events.push(event),
  });
  return { server, client, events };
}

const pattern = (byte: number, length = 4096) => Buffer.alloc(length, byte);

async function write(client: RelayClient, offset: number, data: Buffer): Promise<number> {
  return client.request({
    type: wire.CMD.WRITE,
    flags: 0,
    offset,
    length: data.length,
    payload: data,
  });
}

async function read(client: RelayClient, offset: number, length: number): Promise<Buffer> {
  const into = Buffer.alloc(length);
  const error = await client.request({ type: wire.CMD.READ, flags: 0, offset, length, into });
  assert.equal(error, 0);
  return into;
}

const flush = (client: RelayClient) =>
  client.request({ type: wire.CMD.FLUSH, flags: 0, offset: 0, length: 0 });

describe('the relay client across a crashing server', () => {
  test('acknowledged writes lost by the crash are written again', async () => {
    const { server, client, events } = await setup();
    try {
      assert.equal(await write(client, 0, pattern(1)), 0);
      assert.equal(await write(client, 8192, pattern(2)), 0);
      await server.kill();
      assert.ok(server.export.data.subarray(0, 4096).equals(pattern(0)), 'the crash lost it');
      await server.start();
      assert.ok((await read(client, 0, 4096)).equals(pattern(1)));
      assert.ok((await read(client, 8192, 4096)).equals(pattern(2)));
      assert.ok(events.includes('replayed'), events.join(','));
    } finally {
      await client.close();
      await server.kill();
    }
  });

  test('requests sent while the server is away complete when it returns', async () => {
    const { server, client } = await setup();
    try {
      await server.kill();
      const pending = [write(client, 4096, pattern(7)), flush(client)];
      await new Promise((resolve) => setTimeout(resolve, 300));
      await server.start();
      assert.deepEqual(await Promise.all(pending), [0, 0]);
      assert.ok(server.export.durable.subarray(4096, 8192).equals(pattern(7)));
    } finally {
      await client.close();
      await server.kill();
    }
  });

  test('a flush empties the journal; later writes are replayed in order', async () => {
    const { server, client } = await setup();
    try {
      await write(client, 0, pattern(1));
      assert.equal(await flush(client), 0);
      const before = server.export.writes;
      await write(client, 0, pattern(2));
      await write(client, 0, pattern(3));
      await server.kill();
      await server.start();
      assert.ok((await read(client, 0, 4096)).equals(pattern(3)));
      // Two writes after the flush, twice each (sent, then replayed): the flushed one is not.
      assert.equal(server.export.writes - before, 4);
    } finally {
      await client.close();
      await server.kill();
    }
  });

  test('a server that comes back without the export fails the requests once refusedMs passed', async () => {
    const { server, client, events } = await setup(60_000, 600);
    try {
      await server.kill();
      await server.start({ refusing: true });
      const began = Date.now();
      assert.equal(await write(client, 0, pattern(4)), wire.NBD_ERRNO.EIO);
      const took = Date.now() - began;
      assert.ok(took >= 500 && took < 10_000, `gave up after ${took} ms`);
      assert.ok(events.includes('gave-up'));
    } finally {
      await server.kill();
      await client.close();
    }
  });

  test('a server that refuses the export for a moment, then serves it, loses nothing', async () => {
    const { server, client } = await setup(60_000, 5_000);
    try {
      assert.equal(await write(client, 0, pattern(5)), 0);
      await server.kill();
      await server.start({ refusing: true });
      const writing = write(client, 8192, pattern(6));
      await new Promise((resolve) => setTimeout(resolve, 400));
      await server.kill();
      await server.start();
      assert.equal(await writing, 0);
      assert.deepEqual(await read(client, 0, 4096), pattern(5));
      assert.deepEqual(await read(client, 8192, 4096), pattern(6));
    } finally {
      await server.kill();
      await client.close();
    }
  });

  test('a server that does not return fails the pending requests with EIO', async () => {
    const { server, client, events } = await setup(500);
    try {
      await server.kill();
      assert.equal(await write(client, 0, pattern(9)), wire.NBD_ERRNO.EIO);
      assert.ok(events.includes('gave-up'));
    } finally {
      await client.close();
    }
  });
});
