import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import { lendingSocket } from '../../../src/nbd/lending-socket.js';
import { tempDir } from '../../support/temp.js';

const dir = tempDir('thinp-lending-');

/** A server accepting paused, handing each accepted socket to `lendingSocket`. */
async function serve(onSocket: (s: ReturnType<typeof lendingSocket>) => void) {
  const sock = path.join(await dir, `s${Math.random().toString(36).slice(2)}.sock`);
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (accepted) =>
    onSocket(lendingSocket(accepted)),
  );
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  return { server, sock };
}

function connect(sock: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const c = net.createConnection(sock, () => resolve(c));
    c.once('error', reject);
  });
}

function closed(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

describe('lendingSocket', () => {
  test('lends every byte sent, in order, from one reused buffer; then ends', async () => {
    const got: Buffer[] = [];
    const memories = new Set<ArrayBufferLike>();
    let ended!: () => void;
    const end = new Promise<void>((resolve) => {
      ended = resolve;
    });
    const { server, sock } = await serve(({ socket, lend }) => {
      assert.ok(lend !== undefined, 'a socket with a handle lends its input');
      lend((chunk) => {
        memories.add(chunk.buffer);
        got.push(Buffer.from(chunk));
      });
      socket.on('end', () => {
        socket.end();
        ended();
      });
    });
    const client = await connect(sock);
    const sent = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < sent.length; i++) sent[i] = (i * 7 + (i >> 12)) & 0xff;
    client.end(sent);
    await end;
    assert.equal(Buffer.concat(got).compare(sent), 0);
    assert.equal(memories.size, 1, 'every chunk is a view of the one buffer');
    client.destroy();
    // The accepted socket, let go, no longer counts: the server closes.
    await closed(server);
  });

  test('pause() stops the lending and resume() carries on', async () => {
    const got: Buffer[] = [];
    let accepted!: (socket: net.Socket) => void;
    const socketReady = new Promise<net.Socket>((resolve) => {
      accepted = resolve;
    });
    const { server, sock } = await serve(({ socket, lend }) => {
      lend?.((chunk) => got.push(Buffer.from(chunk)));
      socket.pause();
      accepted(socket);
    });
    const client = await connect(sock);
    const socket = await socketReady;
    client.write('first');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(got.length, 0, 'nothing is lent while paused');
    const end = new Promise<void>((resolve) => socket.once('end', () => resolve()));
    socket.resume();
    client.end('second');
    await end;
    assert.equal(Buffer.concat(got).toString(), 'firstsecond');
    socket.destroy();
    client.destroy();
    await closed(server);
  });
});
