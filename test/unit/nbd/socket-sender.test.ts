/**
 * The native reply sender over a real Unix socket: every reply arrives whole and unmixed
 * whichever thread wrote it, also when the client reads slowly (the writer thread takes
 * over) and when replies are gathered by cork; read replies carry the bytes of the files
 * they name (holes and the end of a file as zeros); failures and closes are reported.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { senderAddon } from '../../../src/nbd/sender-native.js';
import {
  GATHER_LIMIT,
  READ_COPIED,
  READ_CORKED,
  READ_QUEUED,
  SEND_CANCELED,
  SocketSender,
} from '../../../src/nbd/socket-sender.js';
import { ReadPlan } from '../../../src/util/index.js';

const MiB = 1024 * 1024;
const FILE_SIZE = 3 * MiB;
/** awaitInput's answer when nothing came in time. */
const EAGAIN = -constants.errno.EAGAIN;

let dir: string;
let filePath: string;
let fileBytes: Buffer;
let fd: number;
let closeFile: () => Promise<void>;

before(async () => {
  assert.ok(senderAddon, 'the thinp_sender addon must be built (npm install builds it)');
  dir = await mkdtemp(join(tmpdir(), 'thinp-sender-'));
  filePath = join(dir, 'data');
  fileBytes = Buffer.alloc(FILE_SIZE);
  for (let i = 0; i < FILE_SIZE; i += 4) fileBytes.writeUInt32LE((i * 2654435761) >>> 0, i);
  const handle = await open(filePath, 'w+');
  await handle.write(fileBytes, 0, FILE_SIZE, 0);
  fd = handle.fd;
  closeFile = () => handle.close();
});

after(async () => {
  await closeFile?.();
  await rm(dir, { recursive: true, force: true });
});

/** A connected pair of Unix sockets: the server's side (to send on) and the client's. */
async function socketPair(): Promise<{
  server: Socket;
  client: Socket;
  done: () => Promise<void>;
}> {
  const path = join(dir, `s${Math.random().toString(36).slice(2)}.sock`);
  const listener = createServer();
  await new Promise<void>((resolve) => listener.listen(path, resolve));
  const accepted = new Promise<Socket>((resolve) => listener.once('connection', resolve));
  const client = connect(path);
  const server = await accepted;
  await new Promise<void>((resolve) =>
    client.connecting ? client.once('connect', resolve) : resolve(),
  );
  return {
    server,
    client,
    done: async () => {
      client.destroy();
      server.destroy();
      await new Promise<void>((resolve) => listener.close(() => resolve()));
    },
  };
}

/** A reply of the test protocol: length (u32) and id (u32), then the body. */
function frame(id: number, body: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(body.length, 0);
  head.writeUInt32BE(id, 4);
  return Buffer.concat([head, body]);
}

/** Collects the client's bytes and cuts them into frames as they come. */
function frames(client: Socket): { got: Map<number, Buffer>; ended: Promise<void> } {
  const got = new Map<number, Buffer>();
  let pending = Buffer.alloc(0);
  client.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 8) {
      const length = pending.readUInt32BE(0);
      if (pending.length < 8 + length) break;
      const id = pending.readUInt32BE(4);
      assert.ok(!got.has(id), `frame ${id} arrived twice`);
      got.set(id, Buffer.from(pending.subarray(8, 8 + length)));
      pending = pending.subarray(8 + length);
    }
  });
  const ended = new Promise<void>((resolve) => {
    client.on('end', resolve);
    client.on('close', resolve);
  });
  return { got, ended };
}

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** The header of a read reply of the test protocol for `length` bytes of pieces. */
function readHeader(id: number, length: number): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(length, 0);
  head.writeUInt32BE(id, 4);
  return head;
}

describe('SocketSender (native reply sender)', () => {
  test('widens the send buffer of a Unix socket, so that a 1 MiB reply fits whole', async () => {
    const { server, done } = await socketPair();
    const addon = senderAddon as NonNullable<typeof senderAddon>;
    const fdOf = (socket: Socket) => (socket as unknown as { _handle: { fd: number } })._handle.fd;
    try {
      const handle = addon.open(fdOf(server), () => {});
      // Forced as root (the kernel doubles what it is given), else up to net.core.wmem_max.
      assert.equal(addon.sendBuffer(handle), 2 * 1024 * 1024);
      addon.close(handle, true);
    } finally {
      await done();
    }
  });

  test('leaves the buffer of a TCP socket to the kernel’s tuning', async () => {
    const listener = createServer();
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const accepted = new Promise<Socket>((resolve) => listener.once('connection', resolve));
    const client = connect((listener.address() as { port: number }).port, '127.0.0.1');
    const server = await accepted;
    const addon = senderAddon as NonNullable<typeof senderAddon>;
    try {
      const fdOf = (socket: Socket) =>
        (socket as unknown as { _handle: { fd: number } })._handle.fd;
      const handle = addon.open(fdOf(server), () => {});
      assert.notEqual(addon.sendBuffer(handle), 2 * 1024 * 1024, 'not the widened size');
      addon.close(handle, true);
    } finally {
      client.destroy();
      server.destroy();
      await new Promise<void>((resolve) => listener.close(() => resolve()));
    }
  });
  test('sends replies whole and unmixed from every thread, with a slow reader', async () => {
    const { server, client, done } = await socketPair();
    try {
      const sender = SocketSender.open(server);
      assert.ok(sender, 'a sender for a Unix socket');
      const { got } = frames(client);
      client.pause();
      const expected = new Map<number, Buffer>();
      const plan = new ReadPlan();
      let id = 0;
      const settled: Array<Promise<number>> = [];
      const codes = new Set<number>();
      for (let round = 0; round < 80; round++) {
        // Plain replies of many sizes, enough to fill the socket's widened buffer.
        const body = Buffer.alloc(1 + ((round * 7919) % (300 * 1024)), round);
        expected.set(++id, body);
        sender.send(frame(id, body));
        // A read reply of three pieces: file bytes, a hole, file bytes across the end.
        const at = (round * 104729) % (FILE_SIZE - 70_000);
        plan.reset(3);
        plan.add(fd, at, 5000 + round);
        plan.add(-1, 0, 4096);
        plan.add(fd, FILE_SIZE - 100, 300);
        const want = Buffer.concat([
          fileBytes.subarray(at, at + 5000 + round),
          Buffer.alloc(4096),
          fileBytes.subarray(FILE_SIZE - 100),
          Buffer.alloc(200),
        ]);
        expected.set(++id, want);
        const r = sender.sendRead(
          readHeader(id, want.length),
          plan.pieces,
          plan.count,
          round % 2 === 0,
        );
        codes.add(r);
        // The plain sends of this turn corked the sender: a read at once is gathered too.
        assert.ok([READ_CORKED, READ_QUEUED, READ_COPIED].includes(r), `sendRead gave ${r}`);
        if (r === READ_QUEUED || r === READ_COPIED) settled.push(sender.settled(sender.lastTag));
      }
      assert.ok(sender.outstanding > 0, 'a paused client leaves replies waiting');
      assert.ok(codes.has(READ_QUEUED), 'reads queued for the reader threads');
      client.resume();
      await until(() => got.size === expected.size, 'every reply');
      for (const result of await Promise.all(settled)) assert.equal(result, 0);
      await sender.idle();
      assert.equal(sender.outstanding, 0);
      for (const [n, body] of expected) assert.ok(got.get(n)?.equals(body), `reply ${n} intact`);
      sender.close();
    } finally {
      await done();
    }
  });

  test('reuses the buffers of large replies: 400 replies of 1 MiB fault few pages in', async () => {
    // The client is a process of its own, so that only the sender's page faults count here.
    const path = join(dir, 'faults.sock');
    const listener = createServer();
    await new Promise<void>((resolve) => listener.listen(path, resolve));
    const accepted = new Promise<Socket>((resolve) => listener.once('connection', resolve));
    const drain = spawn(process.execPath, [
      '-e',
      `let n = 0; require('node:net').connect(${JSON.stringify(path)})` +
        `.on('data', (c) => { n += c.length; }).on('end', () => { console.log(n); });`,
    ]);
    let counted = '';
    drain.stdout.on('data', (chunk: Buffer) => {
      counted += chunk.toString();
    });
    const exited = new Promise((resolve) => drain.once('exit', resolve));
    const server = await accepted;
    const sender = SocketSender.open(server);
    try {
      assert.ok(sender, 'a sender for a Unix socket');
      const plan = new ReadPlan();
      const replies = 400;
      const inFlight = 8;
      const before = process.resourceUsage().minorPageFault;
      const pending: Array<Promise<number>> = [];
      for (let id = 1; id <= replies; id++) {
        plan.reset(1);
        plan.add(fd, (id * 4096) % (FILE_SIZE - MiB), MiB);
        const r: number = sender.sendRead(readHeader(id, MiB), plan.pieces, plan.count, false);
        assert.equal(r, READ_QUEUED);
        pending.push(sender.settled(sender.lastTag));
        if (pending.length === inFlight) {
          for (const result of await Promise.all(pending.splice(0))) assert.equal(result, 0);
        }
      }
      for (const result of await Promise.all(pending)) assert.equal(result, 0);
      await sender.idle();
      const faults = process.resourceUsage().minorPageFault - before;
      // A fresh buffer per reply faults up to its 257 pages in: 53,508 faults in all here,
      // where glibc happened to reuse some of the freed memory.
      assert.ok(faults < (replies * 256) / 4, `${faults} page faults for ${replies} replies`);
      server.end();
      await exited;
      assert.equal(Number(counted.trim()), replies * (8 + MiB), 'every byte reached the client');
    } finally {
      sender?.close();
      drain.kill();
      server.destroy();
      await new Promise<void>((resolve) => listener.close(() => resolve()));
    }
  });

  test('cork gathers the replies of a burst; uncork sends them, the rest later', async () => {
    const { server, client, done } = await socketPair();
    try {
      const sender = SocketSender.open(server) as SocketSender;
      const { got } = frames(client);
      const plan = new ReadPlan();
      sender.cork();
      for (let n = 1; n <= 50; n++) {
        if (n % 2 === 0) {
          sender.send(frame(n, Buffer.alloc(100, n)));
          continue;
        }
        plan.reset(1);
        plan.add(fd, n * 4096, 4096);
        const r = sender.sendRead(readHeader(n, 4096), plan.pieces, plan.count, true);
        assert.equal(r, READ_CORKED, 'a cached read while corked is gathered');
      }
      assert.equal(sender.outstanding, 0, 'gathered replies are not counted until uncork');
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(got.size, 0, 'nothing is written while corked');
      sender.uncork();
      await sender.idle();
      await until(() => got.size === 50, 'the burst');
      for (let n = 1; n <= 50; n++) {
        const want =
          n % 2 === 0 ? Buffer.alloc(100, n) : fileBytes.subarray(n * 4096, n * 4096 + 4096);
        assert.ok(got.get(n)?.equals(want), `reply ${n}`);
      }
      sender.close();
    } finally {
      await done();
    }
  });

  test('replies sent outside a cork are gathered until the end of the turn', async () => {
    const { server, client, done } = await socketPair();
    try {
      const sender = SocketSender.open(server) as SocketSender;
      const { got } = frames(client);
      for (let n = 1; n <= 10; n++) sender.send(frame(n, Buffer.alloc(64, n)));
      assert.ok(sender.corked, 'the first send corked the sender for this turn');
      await Promise.resolve();
      assert.ok(sender.corked, "still gathering while the turn's microtasks run");
      await new Promise((resolve) => process.nextTick(resolve));
      assert.ok(!sender.corked, 'uncorked at the end of the turn');
      await sender.idle();
      await until(() => got.size === 10, 'the ten replies');
      for (let n = 1; n <= 10; n++) assert.ok(got.get(n)?.equals(Buffer.alloc(64, n)));
      sender.close();
    } finally {
      await done();
    }
  });

  test('a cork holds at most about GATHER_LIMIT bytes: past it the burst is written', async () => {
    const { server, client, done } = await socketPair();
    try {
      const sender = SocketSender.open(server) as SocketSender;
      const { got } = frames(client);
      client.pause();
      const body = Buffer.alloc(256 * 1024, 7);
      const count = Math.ceil((2 * GATHER_LIMIT) / body.length);
      sender.cork();
      for (let n = 1; n <= count; n++) sender.send(frame(n, body));
      assert.ok(sender.outstanding > 0, 'replies past the limit went to the socket (waiting)');
      sender.uncork();
      client.resume();
      await sender.idle();
      await until(() => got.size === count, 'every reply');
      for (const reply of got.values()) assert.ok(reply.equals(body));
      sender.close();
    } finally {
      await done();
    }
  });

  test('a read that fails sends nothing and reports its errno', async () => {
    const { server, client, done } = await socketPair();
    const directory = await open(dir, 'r');
    const writeOnly = await open(join(dir, 'write-only'), 'w');
    try {
      const sender = SocketSender.open(server) as SocketSender;
      const { got } = frames(client);
      const plan = new ReadPlan();
      plan.reset(1);
      plan.add(writeOnly.fd, 0, 4096);
      const now = sender.sendRead(readHeader(1, 4096), plan.pieces, plan.count, true);
      assert.equal(now, -9, 'EBADF at once');
      plan.reset(1);
      plan.add(directory.fd, 0, 4096);
      const queued = sender.sendRead(readHeader(2, 4096), plan.pieces, plan.count, false);
      assert.equal(queued, READ_QUEUED);
      assert.equal(await sender.settled(sender.lastTag), -21, 'EISDIR from a reader thread');
      sender.send(frame(3, Buffer.from('after')));
      await until(() => got.size === 1, 'the reply after the failures');
      assert.deepEqual([...got.keys()], [3], 'no bytes of the failed reads reached the socket');
      sender.close();
    } finally {
      await directory.close();
      await writeOnly.close();
      await done();
    }
  });

  test('close drops what waits (ECANCELED), and the client sees the end', async () => {
    const { server, client, done } = await socketPair();
    try {
      const sender = SocketSender.open(server) as SocketSender;
      const { ended } = frames(client);
      client.pause();
      const results: Array<Promise<number>> = [];
      const plan = new ReadPlan();
      for (let n = 1; n <= 20; n++) {
        plan.reset(1);
        plan.add(fd, 0, 1024 * 1024);
        const r = sender.sendRead(readHeader(n, 1024 * 1024), plan.pieces, plan.count, false);
        if (r === READ_QUEUED || r === READ_COPIED) results.push(sender.settled(sender.lastTag));
      }
      assert.ok(results.length > 0);
      // The paused client takes a few of them at most: the rest wait when the sender closes.
      await new Promise((resolve) => setTimeout(resolve, 100));
      server.destroy();
      sender.close();
      const outcomes = await Promise.all(results);
      assert.ok(
        outcomes.every((r) => r === 0 || r === SEND_CANCELED),
        `results ${outcomes}`,
      );
      assert.ok(outcomes.includes(SEND_CANCELED), 'replies still waiting were dropped');
      await sender.idle();
      client.resume();
      await ended;
      assert.equal(sender.usable, false);
      sender.send(frame(99, Buffer.from('late')));
      assert.equal(sender.outstanding, 0, 'a closed sender takes nothing');
    } finally {
      await done();
    }
  });

  test('a client that goes away breaks the sender once', async () => {
    const { server, client, done } = await socketPair();
    try {
      const sender = SocketSender.open(server) as SocketSender;
      let broken = 0;
      sender.onBroken = () => broken++;
      client.destroy();
      const body = Buffer.alloc(256 * 1024);
      await until(() => {
        sender.send(frame(1, body));
        return broken > 0 || !sender.usable;
      }, 'the broken socket to be noticed');
      await sender.idle();
      assert.equal(broken, 1);
      sender.close();
    } finally {
      await done();
    }
  });

  test('bad arguments are TypeErrors', async () => {
    const { server, done } = await socketPair();
    try {
      const sender = SocketSender.open(server) as SocketSender;
      const plan = new ReadPlan();
      plan.reset(1);
      plan.add(fd, -1, 10);
      assert.throws(() => sender.sendRead(Buffer.alloc(8), plan.pieces, 1, true), TypeError);
      assert.throws(() => sender.sendRead(Buffer.alloc(100), plan.pieces, 0, true), TypeError);
      assert.throws(() => sender.sendRead(Buffer.alloc(8), plan.pieces, 1000, true), TypeError);
      assert.throws(() => senderAddon?.open(-1, () => {}), TypeError);
      sender.close();
    } finally {
      await done();
    }
  });

  test('awaitInput reads what waits, spins until bytes come, and stops at its budget or the end', async () => {
    const { server, client, done } = await socketPair();
    try {
      // The server side has no 'data' listener: Node does not read it, the poll does.
      const sender = SocketSender.open(server) as SocketSender;
      const buf = Buffer.alloc(64);
      await new Promise<void>((resolve) => client.write('ready', () => resolve()));
      await until(() => sender.awaitInput(buf, 0) !== EAGAIN, 'the bytes to reach the socket');
      // Consumed by the successful poll above: nothing waits now.
      let started = performance.now();
      assert.equal(sender.awaitInput(buf, 3000), EAGAIN, 'nothing comes');
      assert.ok(performance.now() - started >= 2.5, 'the poll spun for its budget');

      // Bytes written by another thread while this one spins are read by the spin.
      const gate = new Int32Array(new SharedArrayBuffer(4));
      const clientFd = (client as unknown as { _handle: { fd: number } })._handle.fd;
      const worker = new Worker(
        `const { workerData: { gate, fd } } = require('node:worker_threads');
         Atomics.wait(gate, 0, 0);
         require('node:fs').writeSync(fd, Buffer.from('during'));`,
        { eval: true, workerData: { gate, fd: clientFd } },
      );
      await new Promise((resolve) => worker.once('online', resolve));
      await new Promise((resolve) => setTimeout(resolve, 20));
      Atomics.store(gate, 0, 1);
      Atomics.notify(gate, 0);
      started = performance.now();
      const n = sender.awaitInput(buf, 10_000);
      assert.equal(buf.subarray(0, n).toString(), 'during', `read ${n} within the budget`);
      await new Promise((resolve) => worker.once('exit', resolve));

      await new Promise<void>((resolve) => client.end(() => resolve()));
      await until(() => sender.awaitInput(buf, 1000) === 0, 'the end of the input');
      assert.throws(() => sender.awaitInput(Buffer.alloc(0), 10), TypeError);
      assert.throws(() => sender.awaitInput(buf, -1), TypeError);
      assert.throws(() => sender.awaitInput(buf, 1e9), TypeError);
      sender.close();
      assert.equal(sender.awaitInput(buf, 10), SEND_CANCELED, 'a closed sender does not poll');
    } finally {
      await done();
    }
  });
});
