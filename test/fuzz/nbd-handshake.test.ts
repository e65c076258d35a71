/**
 * Protocol fuzzing in the spirit of nbdkit's AFL-over-stdin: thousands of random and mutated
 * handshakes and request streams, split at random points, fed to the connection handler over
 * in-memory Duplex pairs. The handler must never throw, every connection must end once its
 * client goes away, a read-only export must never change, and a well-behaved client served
 * by the same registry all along must keep reading back what it wrote.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { serveConnection, staticRegistry, wire } from '../../src/nbd/index.js';
import { mutated, randomBytesArb, sessionPrefix, split } from '../support/nbd-fuzz.js';
import { MemoryExport } from '../support/nbd-memory-export.js';
import { duplexPair, RawClient } from '../unit/nbd/harness.js';

const KiB = 1024;
const readOnly = new MemoryExport({ name: 'ro', size: 256 * KiB, readOnly: true });
const writable = new MemoryExport({ name: 'rw', size: 256 * KiB, maxBlockSize: 64 * KiB });
const good = new MemoryExport({ name: 'good', size: 1024 * KiB });
const registry = staticRegistry([readOnly, writable, good]);
const readOnlyBefore = readOnly.contents();

/** A plausible request (often valid, sometimes not) with its write payload. */
const requestArb = fc
  .record({
    type: fc.oneof(fc.constantFrom(0, 1, 3, 4, 5, 6, 7), fc.integer({ min: 0, max: 0xffff })),
    flags: fc.oneof(
      fc.constant(0),
      fc.integer({ min: 0, max: 0x1f }),
      fc.integer({ min: 0, max: 0xffff }),
    ),
    offset: fc.oneof(
      fc.nat(64).map((n) => n * 4096),
      fc.nat(300 * KiB),
      fc.constant(2 ** 53),
    ),
    length: fc.oneof(
      fc.nat(16).map((n) => n * 512),
      fc.nat(70 * KiB),
    ),
    handle: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  })
  .map((r) => {
    const header = wire.encodeRequest(r);
    const payload =
      r.type === wire.CMD.WRITE
        ? Buffer.alloc(Math.min(r.length, 80 * KiB), 0x25)
        : Buffer.alloc(0);
    return Buffer.concat([header, payload]);
  });

/** A valid session to a random export, then requests. */
const sessionArb = fc
  .tuple(fc.constantFrom('ro', 'rw', '', 'nope'), fc.array(requestArb, { maxLength: 8 }))
  .map(([name, requests]) => Buffer.concat([sessionPrefix(name), ...requests]));

const mutatedArb = mutated(sessionArb);
const randomArb = randomBytesArb;

/** Feeds one stream to a fresh connection, ends the client, and waits for the server to close. */
async function feed(bytes: Buffer, points: readonly number[]): Promise<void> {
  const [serverEnd, clientEnd] = duplexPair();
  const connection = serveConnection(serverEnd, { registry });
  clientEnd.on('data', () => {});
  clientEnd.on('error', () => {});
  for (const chunk of split(bytes, points)) {
    clientEnd.write(chunk);
    if (chunk.length % 3 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  clientEnd.end();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('the connection did not close')), 5000);
  });
  await Promise.race([connection.closed, timeout]).finally(() => clearTimeout(timer));
}

/** The well-behaved client: writes a pattern, reads it back, over and over. */
class GoodClient {
  private stopped = false;
  rounds = 0;
  private done: Promise<void> | undefined;

  start(): void {
    this.done = this.loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }

  private async loop(): Promise<void> {
    const [serverEnd, clientEnd] = duplexPair();
    serveConnection(serverEnd, { registry });
    const client = new RawClient(clientEnd);
    await client.connect('good', { structured: true, allocation: true });
    for (let handle = 1n; !this.stopped; handle += 2n) {
      const offset = Number(handle % 200n) * 4096;
      const data = Buffer.alloc(4096, Number(handle % 251n));
      client.request({ type: wire.CMD.WRITE, flags: 0, handle, offset, length: 4096 }, data);
      assert.equal((await client.reply()).error, 0);
      client.request({ type: wire.CMD.READ, flags: 0, handle: handle + 1n, offset, length: 4096 });
      const reply = await client.reply();
      assert.deepEqual(reply.data, data);
      this.rounds++;
      // Everything here is nextTicks and microtasks: yield so the fuzzer's connections run.
      await new Promise((resolve) => setImmediate(resolve));
    }
    client.request({ type: wire.CMD.DISC, flags: 0, handle: 0n, offset: 0, length: 0 });
  }
}

const goodClient = new GoodClient();
before(() => goodClient.start());
after(() => goodClient.stop());

const points = fc.array(fc.nat(), { maxLength: 6 });

describe('NBD protocol fuzzing', () => {
  test('random byte streams never crash the handler', async () => {
    await fc.assert(fc.asyncProperty(randomArb, points, feed), { numRuns: 1500 });
  });

  test('random bytes after a valid greeting never crash the handler', async () => {
    const arb = fc
      .tuple(fc.constantFrom('rw', 'ro'), randomArb)
      .map(([name, tail]) => Buffer.concat([sessionPrefix(name), tail]));
    await fc.assert(fc.asyncProperty(arb, points, feed), { numRuns: 1500 });
  });

  test('plausible and mutated sessions never crash the handler', async () => {
    await fc.assert(fc.asyncProperty(fc.oneof(sessionArb, mutatedArb), points, feed), {
      numRuns: 2000,
    });
  });

  test('the read-only export never changed', () => {
    assert.deepEqual(readOnly.contents(), readOnlyBefore);
    assert.equal(readOnly.calls.write + readOnly.calls.trim + readOnly.calls.writeZeroes, 0);
    assert.ok(
      readOnly.calls.read > 0 && writable.calls.write > 0,
      'the fuzzers reached transmission',
    );
  });

  test('the well-behaved client kept working throughout', async () => {
    const before = goodClient.rounds;
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(goodClient.rounds > before, 'still making progress');
    assert.ok(goodClient.rounds > 100, `only ${goodClient.rounds} rounds`);
  });
});
