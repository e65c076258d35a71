import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { constants, readFileSync } from 'node:fs';
import { open, readFile, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { writeBatch } from '../../../src/block/batch-native.js';
import { FileDevice } from '../../../src/block/index.js';
import { tempDir } from '../../support/temp.js';

const dir = await tempDir('thinp-batch-');

function batch(
  fd: number,
  buffers: Uint8Array[],
  offsets: number[],
  align?: number,
): Promise<number[]> {
  const write = writeBatch;
  assert.ok(write !== undefined);
  return new Promise((resolve) => write(fd, buffers, offsets, resolve, align));
}

describe('the addon thinp_batch', () => {
  test('is built and loads (npm install builds it with node-gyp)', () => {
    assert.equal(typeof writeBatch, 'function', 'build/Release/thinp_batch.node did not load');
  });

  test('writes every buffer at its offset, in order, and reports each', async () => {
    const file = path.join(dir, 'order.img');
    const handle = await open(file, 'w+');
    after(() => handle.close());
    const a = randomBytes(5000);
    const b = randomBytes(3000);
    const view = Buffer.alloc(64, 7).subarray(10, 20);
    // The second write overlaps the first: in order, its bytes win.
    const results = await batch(handle.fd, [a, b, view, new Uint8Array(0)], [0, 4000, 9000, 3]);
    assert.deepEqual(results, [5000, 3000, 10, 0]);
    const expected = Buffer.alloc(9010);
    a.copy(expected, 0);
    b.copy(expected, 4000);
    expected.fill(7, 9000);
    assert.deepEqual(await readFile(file), expected);
  });

  test('reports a failed write as a negated errno', async () => {
    const results = await batch(2 ** 31 - 1, [Buffer.alloc(8)], [0]);
    assert.deepEqual(results, [-9]); // EBADF
  });

  test('throws a TypeError for bad arguments', () => {
    assert.ok(writeBatch !== undefined);
    const untyped = writeBatch as unknown as (...args: unknown[]) => void;
    const done = () => {};
    assert.throws(() => untyped(-1, [], [], done), /fd must be/);
    assert.throws(() => untyped(0, [Buffer.alloc(1)], [], done), /same length/);
    assert.throws(() => untyped(0, ['text'], [0], done), /Uint8Arrays/);
    assert.throws(() => untyped(0, [Buffer.alloc(1)], [-1], done), /offsets must/);
    assert.throws(() => untyped(0, [Buffer.alloc(1)], [2 ** 53], done), /offsets must/);
    assert.throws(() => untyped(0, [], [], 'nope'), /callback must be/);
    assert.throws(() => untyped(0, [], [], done, 3000), /align must be/);
    assert.throws(() => untyped(0, [], [], done, 2 * 1024 * 1024), /align must be/);
  });
});

describe('the addon thinp_batch through O_DIRECT', () => {
  const MiB = 1024 * 1024;

  test('writes runs of neighbours in any order, from memory off any alignment', async () => {
    const file = path.join(dir, 'direct.img');
    await writeFile(file, Buffer.alloc(0));
    await truncate(file, 8 * MiB);
    const handle = await open(file, constants.O_RDWR | constants.O_DIRECT);
    after(() => handle.close());
    const source = randomBytes(4 * MiB + 64);
    // Off alignment by 1, 7 and 64 bytes; neighbours given out of order, a run longer than
    // the thread's 1 MiB buffer, and one write of 1.5 MiB alone.
    const writes: Array<[number, number, number]> = [
      [1, 3 * 65_536, 65_536], // [memory offset, file offset, length]
      [7, 0, 65_536],
      [64, 65_536, 2 * 65_536],
      [65_536 * 5, 4 * 65_536, 960 * 1024],
      [0, 4 * 65_536, 0], // empty, inside the run
      [2 * MiB, 4 * MiB, MiB + 512 * 1024],
    ];
    const buffers = writes.map(([from, , length]) => source.subarray(from, from + length));
    const results = await batch(
      handle.fd,
      buffers,
      writes.map(([, at]) => at),
      4096,
    );
    assert.deepEqual(
      results,
      writes.map(([, , length]) => length),
    );
    const image = await readFile(file);
    for (const [i, [, at, length]] of writes.entries()) {
      assert.deepEqual(image.subarray(at, at + length), buffers[i], `write ${i}`);
    }
  });

  test('gives every write of a refused run its errno', async () => {
    const file = path.join(dir, 'direct-refused.img');
    await writeFile(file, Buffer.alloc(0));
    await truncate(file, MiB);
    const handle = await open(file, constants.O_RDWR | constants.O_DIRECT);
    after(() => handle.close());
    // Off the sector size: O_DIRECT refuses it (EINVAL), and its neighbour shares the run.
    const results = await batch(
      handle.fd,
      [Buffer.alloc(1000), Buffer.alloc(4096)],
      [0, 1000],
      4096,
    );
    assert.deepEqual(results, [-22, -22]);
  });
});

describe('FileDevice with batched writes', () => {
  test('lands many writes issued in one turn, each at its place, before flush resolves', async () => {
    const file = path.join(dir, 'turn.img');
    const device = await FileDevice.open(file, { create: { size: 4 << 20 }, nowait: false });
    after(() => device.close());
    const writes = Array.from({ length: 300 }, (_, i) => ({
      data: randomBytes(4096 + (i % 7) * 512),
      offset: i * 12_288,
    }));
    // Issued together: several batches (1 MiB each at most), all in flight at once.
    const pending = writes.map((w) => device.write(w.data, w.offset));
    const flushed = device.flush();
    await Promise.all([...pending, flushed]);
    const image = await readFile(file);
    for (const w of writes) {
      assert.deepEqual(image.subarray(w.offset, w.offset + w.data.length), w.data, `${w.offset}`);
    }
  });
});

describe('FileDevice writes on the spot', () => {
  test('a small page-aligned write to an idle device is in the file when write() returns', async () => {
    const file = path.join(dir, 'at-once.img');
    const device = await FileDevice.open(file, { create: { size: 1 << 20 }, nowait: false });
    after(() => device.close());
    const data = randomBytes(8192);
    const written = device.write(data, 65_536);
    // Not awaited yet: the bytes are already in the file.
    assert.deepEqual(readFileSync(file).subarray(65_536, 65_536 + 8192), data);
    await written;
  });

  test('a write that is unaligned, too large, or meets another in flight goes to the threadpool', async () => {
    const file = path.join(dir, 'batched.img');
    const device = await FileDevice.open(file, { create: { size: 1 << 20 }, nowait: false });
    after(() => device.close());
    const onFile = (offset: number, length: number) =>
      readFileSync(file).subarray(offset, offset + length);
    const unaligned = randomBytes(4096);
    const large = randomBytes(128 * 1024);
    const first = device.write(unaligned, 512);
    const second = device.write(Buffer.alloc(4096, 9), 8192);
    const third = device.write(large, 256 * 1024);
    assert.notDeepEqual(onFile(512, 4096), unaligned, 'an unaligned write is not done on the spot');
    assert.notDeepEqual(onFile(8192, 4096), Buffer.alloc(4096, 9), 'another write is in flight');
    assert.notDeepEqual(onFile(256 * 1024, large.length), large, 'a large write is not either');
    await Promise.all([first, second, third]);
    assert.deepEqual(onFile(512, 4096), unaligned);
    assert.deepEqual(onFile(8192, 4096), Buffer.alloc(4096, 9));
    assert.deepEqual(onFile(256 * 1024, large.length), large);
  });
});
