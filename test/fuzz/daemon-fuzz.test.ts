/**
 * Protocol fuzzing of the daemon's real socket: thousands of connections to ROOT/nbd.sock
 * carrying random bytes, random bytes after a valid greeting, and plausible or mutated
 * sessions (bad magic, unknown options, oversized lengths, requests past the end, cut
 * short), sent in random pieces, several connections at a time; and clients that vanish
 * with requests in flight. Meanwhile a well-behaved client keeps writing and reading back
 * its own device, and qemu-io verifies patterns on another. Every fuzzing connection must be
 * closed by the daemon once its client has gone, the daemon must stay up (its control API
 * answers), and after a clean stop both `thinp check` and `thin_check` find the metadata
 * clean.
 *
 * The streams come from a seeded generator; a failure names the seed and the stream.
 */

import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { ApiClient } from '../../src/api/index.js';
import { wire } from '../../src/nbd/index.js';
import { thinp } from '../support/cli.js';
import {
  connectUnix,
  type InProcessDaemon,
  NbdClient,
  requireTool,
  runTool,
  startInProcess,
} from '../support/daemon.js';
import { mutated, randomBytesArb, sessionPrefix, split } from '../support/nbd-fuzz.js';
import { tempDir } from '../support/temp.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const dir = await tempDir('thinp-daemon-fuzz-');
const root = path.join(dir, 'root');
/** The well-behaved client's device: a name no mutation of the fuzzers' names reaches. */
const GOOD = 'well-behaved-client';
const SEED = Number(process.env.THINP_FUZZ_SEED ?? randomInt(2 ** 31));
/** Connections per 1000 in CI; THINP_FUZZ_SCALE=10 fuzzes ten times longer. */
const RUNS = 1000 * Number(process.env.THINP_FUZZ_SCALE ?? 1);
/** Fuzzing connections open at once. */
const PARALLEL = 8;

let daemon: InProcessDaemon;

/** Options of every kind, valid or not, with random data. */
const optionArb = fc
  .record({
    option: fc.oneof(fc.integer({ min: 1, max: 10 }), fc.integer({ min: 0, max: 2 ** 32 - 1 })),
    data: fc.uint8Array({ maxLength: 64 }),
  })
  .map(({ option, data }) => wire.encodeOption(option, Buffer.from(data)));

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
      fc.nat(300).map((n) => n * 4096),
      fc.nat(1200 * KiB),
      fc.constant(2 ** 53),
    ),
    length: fc.oneof(
      fc.nat(32).map((n) => n * 512),
      fc.nat(140 * KiB),
      fc.constant(32 * MiB + 512),
    ),
    handle: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  })
  .map((r) => {
    const header = wire.encodeRequest(r);
    const payload =
      r.type === wire.CMD.WRITE
        ? Buffer.alloc(Math.min(r.length, 160 * KiB), 0x25)
        : Buffer.alloc(0);
    return Buffer.concat([header, payload]);
  });

/** Export names: two devices (one not a whole number of pool blocks), none, an unknown one. */
const nameArb = fc.constantFrom('rw', 'odd', '', 'nope');

/** A valid session to a random export, perhaps after other options, then requests. */
const sessionArb = fc
  .tuple(nameArb, fc.array(optionArb, { maxLength: 3 }), fc.array(requestArb, { maxLength: 10 }))
  .map(([name, options, requests]) => {
    const prefix = sessionPrefix(name);
    const flags = prefix.subarray(0, 4);
    return Buffer.concat([flags, ...options, prefix.subarray(4), ...requests]);
  });

const mutatedArb = mutated(sessionArb);
const randomArb = randomBytesArb;

const afterGreetingArb = fc
  .tuple(nameArb, randomArb)
  .map(([name, tail]) => Buffer.concat([sessionPrefix(name), tail]));

const pointsArb = fc.array(fc.nat(), { maxLength: 6 });

/** Feeds one stream over a fresh connection, ends it, and waits for the daemon to close it. */
async function feed(bytes: Buffer, points: readonly number[]): Promise<void> {
  const socket = await connectUnix(daemon.handle.config.layout.nbdSocket);
  socket.on('data', () => {});
  socket.on('error', () => {});
  const closed = new Promise((resolve) => socket.once('close', resolve));
  for (const chunk of split(bytes, points)) {
    if (socket.destroyed) break;
    socket.write(chunk);
    if (chunk.length % 3 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  socket.end();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('the daemon did not close the connection after its client ended'));
    }, 5000);
  });
  await Promise.race([closed, timeout]).finally(() => clearTimeout(timer));
}

/** Runs `feed` over `count` samples of `arb`, PARALLEL at a time; a failure names its stream. */
async function fuzz(arb: fc.Arbitrary<Buffer>, count: number, seed: number): Promise<number> {
  const samples = fc.sample(fc.tuple(arb, pointsArb), { numRuns: count, seed });
  let next = 0;
  let bytes = 0;
  const lanes = Array.from({ length: PARALLEL }, async () => {
    while (next < samples.length) {
      const [stream, points] = samples[next++] as [Buffer, number[]];
      bytes += stream.length;
      try {
        await feed(stream, points);
      } catch (err) {
        const shown = stream.subarray(0, 256).toString('hex');
        throw new Error(
          `seed ${seed}: ${err instanceof Error ? err.message : String(err)}; stream (${stream.length} bytes) ${shown}`,
        );
      }
    }
  });
  await Promise.all(lanes);
  return bytes;
}

/** Writes a pattern, reads it back, over and over, with a flush now and then. */
class GoodClient {
  rounds = 0;
  private failure: unknown;
  private stopped = false;
  private done: Promise<void> | undefined;
  private client: NbdClient | undefined;

  async start(): Promise<void> {
    this.client = await NbdClient.connect(daemon.handle.config.layout.nbdSocket, GOOD);
    this.done = this.loop(this.client).catch((err: unknown) => {
      this.failure = err;
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
    await this.client?.close();
  }

  private async loop(client: NbdClient): Promise<void> {
    const slots = client.size / (4 * KiB);
    while (!this.stopped) {
      const offset = randomInt(slots) * 4 * KiB;
      const data = Buffer.alloc(4 * KiB, this.rounds % 251);
      data.writeUInt32LE(this.rounds, 0);
      await client.write(offset, data);
      assert.deepEqual(await client.read(offset, data.length), data, `round ${this.rounds}`);
      if (this.rounds % 50 === 0) await client.flush();
      this.rounds++;
    }
  }

  /** Throws what stopped the loop, if something did. */
  check(): void {
    if (this.failure !== undefined) throw this.failure;
  }
}

const good = new GoodClient();

before(async () => {
  await requireTool('qemu-io', 'qemu-utils');
  await requireTool('thin_check', 'thin-provisioning-tools');
  daemon = await startInProcess(root);
  const set = daemon.handle.deviceSet;
  await set.createDevice('rw', 1 * MiB);
  await set.createDevice('odd', 200 * KiB);
  await set.createDevice(GOOD, 4 * MiB);
  await set.createDevice('qemu', 8 * MiB);
  await good.start();
});

after(async () => {
  await good.stop().catch(() => {});
  await daemon?.stop();
});

describe('the daemon under protocol fuzzing', () => {
  test('random byte streams are refused and every connection closes', async (t) => {
    const bytes = await fuzz(randomArb, 2 * RUNS, SEED);
    t.diagnostic(`seed ${SEED}: ${2 * RUNS} connections, ${bytes} bytes`);
    good.check();
  });

  test('random bytes after a valid greeting are refused and every connection closes', async (t) => {
    const bytes = await fuzz(afterGreetingArb, 2 * RUNS, SEED + 1);
    t.diagnostic(`seed ${SEED + 1}: ${2 * RUNS} connections, ${bytes} bytes`);
    good.check();
  });

  test('plausible and mutated sessions get replies or a clean disconnect while qemu-io verifies patterns', async (t) => {
    const qemuIo = await requireTool('qemu-io', 'qemu-utils');
    const uri = daemon.uri('qemu');
    const writes = Array.from({ length: 64 }, (_, i) => ({
      offset: i * 128 * KiB + randomInt(16) * 4 * KiB,
      pattern: 1 + randomInt(255),
    }));
    const commands = (op: string) =>
      writes.flatMap((w) => ['-c', `${op} -P 0x${w.pattern.toString(16)} ${w.offset} 8192`]);
    const qemu = (async () => {
      const write = await runTool(qemuIo, ['-f', 'raw', ...commands('write'), uri]);
      assert.equal(write.status, 0, write.stdout + write.stderr);
      const read = await runTool(qemuIo, ['-f', 'raw', '-r', ...commands('read'), uri]);
      assert.equal(read.status, 0, read.stdout + read.stderr);
      assert.doesNotMatch(read.stdout, /Pattern verification failed/);
      return read.stdout.match(/^read 8192\/8192 bytes/gm)?.length ?? 0;
    })();
    const bytes = await fuzz(fc.oneof(sessionArb, mutatedArb), 4 * RUNS, SEED + 2);
    assert.equal(await qemu, writes.length);
    t.diagnostic(`seed ${SEED + 2}: ${4 * RUNS} connections, ${bytes} bytes`);
    good.check();
  });

  test('clients that vanish with large requests in flight do not disturb the daemon', async () => {
    const socketPath = daemon.handle.config.layout.nbdSocket;
    for (let i = 0; i < 60; i++) {
      const client = await NbdClient.connect(socketPath, i % 2 === 0 ? 'rw' : 'odd');
      const pending = [];
      for (let j = 0; j < 16; j++) {
        const offset = randomInt(client.size / 512 - 64) * 512;
        pending.push(client.request(wire.CMD.READ, offset, 32 * KiB).catch(() => undefined));
        const payload = Buffer.alloc(32 * KiB, j);
        pending.push(
          client
            .request(wire.CMD.WRITE, offset, payload.length, { payload })
            .catch(() => undefined),
        );
      }
      await client.close();
      await Promise.all(pending);
    }
    good.check();
  });

  test('the daemon is still up, its API answers and the well-behaved client kept working', async () => {
    const api = new ApiClient(daemon.handle.controlSocket);
    const status = await api.poolStatus();
    assert.equal(status.mode, 'rw');
    const names = (await api.listDevices()).map((d) => d.name).sort();
    assert.deepEqual(names, ['odd', 'qemu', 'rw', GOOD].sort());
    const before = good.rounds;
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.ok(good.rounds > before, 'the well-behaved client is still making progress');
    assert.ok(good.rounds > 200, `only ${good.rounds} rounds`);
    good.check();
    const records = daemon.logs.map(
      (l) => JSON.parse(l) as { level: string; event: string; device?: string },
    );
    const errors = records.filter((r) => r.level === 'error');
    assert.deepEqual(errors.slice(0, 5), [], `${errors.length} error lines in the daemon's log`);
    const opened = new Set(records.filter((r) => r.event === 'device-opened').map((r) => r.device));
    assert.deepEqual(
      [...opened].sort(),
      ['odd', 'qemu', 'rw', GOOD].sort(),
      'the fuzzers reached I/O',
    );
    const rejected = records.filter((r) => r.event === 'nbd-request-rejected').length;
    assert.ok(rejected > 100, `only ${rejected} requests were rejected`);
  });

  test('once the fuzzing clients are gone their devices are no longer busy', async () => {
    // Every connection that attached a device detached it, however it ended.
    const api = new ApiClient(daemon.handle.controlSocket);
    for (const name of ['rw', 'odd']) {
      let outcome: unknown;
      for (let attempt = 0; attempt < 20 && outcome === undefined; attempt++) {
        outcome = await api.removeDevice(name).catch(async (err: unknown) => {
          if (attempt === 19) throw err;
          await new Promise((resolve) => setTimeout(resolve, 50));
          return undefined;
        });
      }
      assert.equal(outcome, 'removed');
    }
  });

  test('after a clean stop thinp check and thin_check find the metadata clean', async () => {
    await good.stop();
    await daemon.stop();
    const check = await thinp(['--root', root, 'check'], { cwd: dir });
    assert.equal(check.status, 0, check.stdout + check.stderr);
    assert.match(check.stdout, /no problems found/);
    const thinCheck = await requireTool('thin_check', 'thin-provisioning-tools');
    const reference = await runTool(thinCheck, [path.join(root, 'devicemapper', 'metadata')]);
    assert.equal(reference.status, 0, reference.stdout + reference.stderr);
  });
});
