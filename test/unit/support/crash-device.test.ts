import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { FileDevice, MemoryDevice } from '../../../src/block/index.js';
import { IoError } from '../../../src/util/index.js';
import { CrashDevice } from '../../support/crash-device.js';
import { tempDir } from '../../support/temp.js';

const dir = await tempDir('thinp-crash-');

/** A deterministic rng (mulberry32), so that a random subset can be replayed. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function byteAt(device: { read(b: Uint8Array, o: number): Promise<void> }, offset: number) {
  const buf = new Uint8Array(1);
  await device.read(buf, offset);
  return buf[0];
}

function isIo(pattern: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof IoError, `expected an IoError, got ${String(err)}`);
    assert.match(err.message, pattern);
    return true;
  };
}

/** Writes byte `i + 1` at offset `i * 4096` for each i in [from, to). */
async function writeMarks(device: CrashDevice, from: number, to: number): Promise<void> {
  for (let i = from; i < to; i++) await device.write(Uint8Array.of(i + 1), i * 4096);
}

describe('CrashDevice', () => {
  test('holds writes back from the inner device until a flush', async () => {
    const inner = new MemoryDevice(64 * 1024);
    const device = new CrashDevice(inner);
    await device.write(Uint8Array.of(7), 10);
    assert.equal(await byteAt(inner, 10), 0);
    assert.equal(device.pendingWrites, 1);
    await device.flush();
    assert.equal(await byteAt(inner, 10), 7);
    assert.equal(device.pendingWrites, 0);
  });

  test('holds a write done at once like any other, and leaves the armed op to write', async () => {
    const inner = new MemoryDevice(64 * 1024);
    const device = new CrashDevice(inner);
    assert.equal(device.writeNow(Uint8Array.of(9), 20), true);
    assert.equal(device.opCount, 1);
    assert.equal(await byteAt(device, 20), 9, 'reads see it');
    assert.equal(await byteAt(inner, 20), 0, 'held until a flush');
    device.crashAfter(1, 'drop-all');
    assert.equal(device.writeNow(Uint8Array.of(8), 30), false, 'the armed op is not done');
    assert.equal(device.opCount, 1);
    await assert.rejects(device.write(Uint8Array.of(8), 30), isIo(/simulated crash/));
    assert.throws(() => device.writeNow(Uint8Array.of(8), 30), isIo(/device crashed/));
    assert.equal(await byteAt(inner, 20), 0, 'the unflushed write was lost');
  });

  test('shows writes not yet flushed to reads, the newest winning', async () => {
    const inner = new MemoryDevice(64 * 1024);
    const device = new CrashDevice(inner);
    await device.write(new Uint8Array(100).fill(1), 0);
    await device.flush();
    await device.write(new Uint8Array(10).fill(2), 5);
    await device.write(new Uint8Array(3).fill(3), 8);
    const buf = new Uint8Array(20);
    await device.read(buf, 0);
    assert.deepEqual([...buf], [1, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 1]);
  });

  test('loses every write not flushed when it crashes with drop-all', async () => {
    const inner = new MemoryDevice(64 * 1024);
    const device = new CrashDevice(inner);
    await writeMarks(device, 0, 3);
    await device.flush();
    await writeMarks(device, 3, 6);
    await device.crash('drop-all');
    assert.equal(device.crashed, true);
    const after = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => byteAt(inner, i * 4096)));
    assert.deepEqual(after, [1, 2, 3, 0, 0, 0]);
  });

  test('keeps the flushed writes and some subset of the others with random-subset', async () => {
    const seen = new Set<string>();
    for (let seed = 1; seed <= 20; seed++) {
      const inner = new MemoryDevice(64 * 1024);
      const device = new CrashDevice(inner);
      await writeMarks(device, 0, 2);
      await device.flush();
      await writeMarks(device, 2, 10);
      await device.crash('random-subset', seeded(seed));
      const after = await Promise.all(
        Array.from({ length: 10 }, (_, i) => byteAt(inner, i * 4096)),
      );
      assert.deepEqual(after.slice(0, 2), [1, 2]);
      after.slice(2).forEach((value, i) => {
        assert.ok(value === 0 || value === i + 3, `mark ${i + 2} reads ${value}`);
      });
      seen.add(after.map((value) => (value === 0 ? '-' : 'x')).join(''));
    }
    assert.ok(seen.size > 10, `only ${seen.size} different subsets in 20 crashes`);
  });

  test('applies a random subset in write order, so a kept later write wins', async () => {
    const inner = new MemoryDevice(4096);
    const device = new CrashDevice(inner);
    await device.write(Uint8Array.of(1), 0);
    await device.write(Uint8Array.of(2), 0);
    await device.crash('random-subset', () => 0);
    assert.equal(await byteAt(inner, 0), 2);
  });

  test('makes the armed write throw and not happen', async () => {
    const inner = new MemoryDevice(64 * 1024);
    const device = new CrashDevice(inner);
    device.crashAfter(3, 'drop-all');
    await device.write(Uint8Array.of(1), 0);
    await device.write(Uint8Array.of(2), 4096);
    await device.flush();
    assert.equal(device.opCount, 3);
    await assert.rejects(
      device.write(Uint8Array.of(3), 8192),
      isIo(/write failed: simulated crash/),
    );
    assert.equal(device.crashed, true);
    assert.equal(device.opCount, 3);
    assert.deepEqual(
      await Promise.all([0, 4096, 8192].map((offset) => byteAt(inner, offset))),
      [1, 2, 0],
    );
  });

  test('makes the armed flush throw before it applies anything', async () => {
    const inner = new MemoryDevice(64 * 1024);
    const device = new CrashDevice(inner);
    device.crashAfter(2, 'drop-all');
    await device.write(Uint8Array.of(1), 0);
    await device.write(Uint8Array.of(2), 4096);
    await assert.rejects(device.flush(), isIo(/flush failed: simulated crash/));
    assert.deepEqual(await Promise.all([0, 4096].map((o) => byteAt(inner, o))), [0, 0]);
  });

  test('fails every call after a crash', async () => {
    const device = new CrashDevice(new MemoryDevice(4096));
    await device.crash('drop-all');
    await assert.rejects(device.read(new Uint8Array(1), 0), isIo(/read failed: device crashed/));
    await assert.rejects(device.write(new Uint8Array(1), 0), isIo(/device crashed/));
    await assert.rejects(device.flush(), isIo(/flush failed: device crashed/));
    await assert.rejects(device.grow(8192), isIo(/device crashed/));
  });

  test('refuses to arm a crash at an op that has already happened', async () => {
    const device = new CrashDevice(new MemoryDevice(4096));
    await device.write(Uint8Array.of(1), 0);
    assert.throws(() => device.crashAfter(0, 'drop-all'), RangeError);
    device.crashAfter(1, 'drop-all');
  });

  test('refuses ranges outside the device without counting an op', async () => {
    const device = new CrashDevice(new MemoryDevice(4096));
    await assert.rejects(device.write(new Uint8Array(2), 4095), isIo(/offset 4095/));
    await assert.rejects(device.read(new Uint8Array(1), 4096), isIo(/offset 4096/));
    assert.equal(device.opCount, 0);
  });

  test('leaves a file device open on close, holding only what was flushed', async () => {
    const file = path.join(dir, 'crash.img');
    const inner = await FileDevice.open(file, { create: { size: 1024 * 1024 } });
    const device = new CrashDevice(inner);
    await device.write(Uint8Array.of(9), 100);
    await device.flush();
    await device.write(Uint8Array.of(8), 200);
    await device.close();
    await assert.rejects(device.read(new Uint8Array(1), 0), isIo(/closed/));
    assert.equal(await byteAt(inner, 100), 9);
    await inner.close();
    const reopened = await FileDevice.open(file, { readOnly: true });
    assert.deepEqual([await byteAt(reopened, 100), await byteAt(reopened, 200)], [9, 0]);
    await reopened.close();
  });

  test('runs flushes in turn, so writes land in the order they were made', async () => {
    const inner = new MemoryDevice(4096);
    const device = new CrashDevice(inner);
    const work: Promise<void>[] = [];
    for (let i = 1; i <= 20; i++) {
      work.push(device.write(Uint8Array.of(i), 0));
      work.push(device.flush());
    }
    await Promise.all(work);
    assert.equal(await byteAt(inner, 0), 20);
    assert.equal(device.pendingWrites, 0);
    assert.equal(device.opCount, 40);
  });

  test('holds a discard like a write: zeros once flushed, undone by a crash', async () => {
    const inner = new MemoryDevice(8192);
    const device = new CrashDevice(inner);
    await device.write(new Uint8Array(8192).fill(7), 0);
    await device.flush();
    await device.discard(0, 4096);
    assert.equal(await byteAt(device, 0), 0, 'reads see the held discard');
    assert.equal(await byteAt(inner, 0), 7, 'the inner device does not, yet');
    await device.crash('drop-all');
    assert.equal(await byteAt(inner, 0), 7);
    const again = new CrashDevice(inner);
    await again.discard(0, 4096);
    await again.flush();
    assert.equal(await byteAt(inner, 0), 0);
    assert.equal(await byteAt(inner, 4096), 7);
  });

  test('devices that crash together lose power at the same op', async () => {
    const a = new CrashDevice(new MemoryDevice(4096));
    const b = new CrashDevice(new MemoryDevice(4096));
    a.crashesWith(b);
    await b.write(Uint8Array.of(1), 0);
    a.crashAfter(a.opCount, 'drop-all');
    await assert.rejects(a.write(Uint8Array.of(2), 0), isIo(/simulated crash/));
    assert.equal(b.crashed, true);
    assert.equal(await byteAt(b.inner, 0), 0, 'the held write of the other device is lost');
    await assert.rejects(b.flush(), isIo(/device crashed/));
  });
});
