import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readSync } from 'node:fs';
import { readFile, stat, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  BlockDevDevice,
  type BlockDevice,
  FileDevice,
  LinearDevice,
  MemoryDevice,
} from '../../src/block/index.js';
import { ExistsError, IoError, NotFoundError } from '../../src/util/index.js';
import { LoopDevices, refreshLoop } from '../support/loop-device.js';
import { residentBytes } from '../support/page-cache.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
const dir = await tempDir('thinp-block-');

/** Makes a new device of `size` bytes; with `readOnly`, one whose first byte is 0x5a. */
type Factory = (size: number, options?: { readOnly?: boolean }) => Promise<BlockDevice>;

let fileCount = 0;
const fileFactory: Factory = async (size, options = {}) => {
  const file = path.join(dir, `device-${fileCount++}.img`);
  const device = await FileDevice.open(file, { create: { size } });
  if (options.readOnly !== true) return device;
  await device.write(Uint8Array.of(0x5a), 0);
  await device.close();
  return FileDevice.open(file, { readOnly: true });
};

/** FileDevice with every transfer through the threadpool (no RWF_NOWAIT attempts). */
const threadpoolFileFactory: Factory = async (size, options = {}) => {
  const file = path.join(dir, `device-${fileCount++}.img`);
  const device = await FileDevice.open(file, { create: { size }, nowait: false, batch: false });
  if (options.readOnly !== true) return device;
  await device.write(Uint8Array.of(0x5a), 0);
  await device.close();
  return FileDevice.open(file, { readOnly: true, nowait: false, batch: false });
};

const memoryFactory: Factory = async (size, options = {}) => {
  if (options.readOnly !== true) return new MemoryDevice(size);
  // A read-only memory device can hold only zeros, so it reads back nothing written.
  return new MemoryDevice(size, 'memory', { readOnly: true });
};

/**
 * Regions of one loop device over a sparse file, each at a fresh place (so it reads zeros)
 * with room after it to grow into.
 */
const loops = new LoopDevices();
let loop = '';
let loopCursor = 0;
const LOOP_SIZE = 256 * MiB;
before(async () => {
  loop = await loops.attach(path.join(dir, 'loop.img'), LOOP_SIZE);
});
after(() => loops.detachAll());

const blockDevFactory: Factory = async (size, options = {}) => {
  const offset = loopCursor;
  loopCursor += Math.ceil(Math.max(4 * size, 64 * 1024) / 4096) * 4096;
  assert.ok(loopCursor <= LOOP_SIZE, 'the test loop device is too small');
  const device = await BlockDevDevice.open(loop, { offset, size });
  if (options.readOnly !== true) return device;
  await device.write(Uint8Array.of(0x5a), 0);
  await device.flush();
  await device.close();
  return BlockDevDevice.open(loop, { offset, size, readOnly: true });
};

/** Two memory devices end to end, split at an odd place. */
const linearFactory: Factory = async (size, options = {}) => {
  const first = Math.floor(size / 3) + 1;
  const segments = [first, size - first].map(
    (n, i) => new MemoryDevice(n, `memory-${i}`, { readOnly: options.readOnly === true }),
  );
  return new LinearDevice('linear', segments);
};

async function readBack(device: BlockDevice, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length, 0xee);
  await device.read(buf, offset);
  return buf;
}

/** The device's `discard`, bound to it: both implementations here must have one. */
function discarder(device: BlockDevice): (offset: number, length: number) => Promise<void> {
  const discard = device.discard;
  assert.ok(discard !== undefined, `${device.name} cannot discard`);
  return discard.bind(device);
}

async function rejectsIo(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof IoError, `expected an IoError, got ${String(err)}`);
    assert.match(err.message, pattern);
    return true;
  });
}

/** The BlockDevice contract, run over one implementation. */
function describeBlockDevice(name: string, make: Factory): void {
  describe(`BlockDevice contract: ${name}`, () => {
    test('reports the size it was made with and is writable by default', async () => {
      const device = await make(3 * MiB);
      assert.equal(device.size, 3 * MiB);
      assert.equal(device.readOnly, false);
      await device.close();
    });

    test('reads back writes at unaligned offsets and lengths', async () => {
      const device = await make(1 * MiB);
      const cases: [number, number][] = [
        [0, 1],
        [1, 4095],
        [4096, 1],
        [4097, 9000],
        [65_535, 131_073],
        [MiB - 7, 7],
      ];
      const written = cases.map(([offset, length]) => ({ offset, data: randomBytes(length) }));
      for (const { offset, data } of written) await device.write(data, offset);
      for (const { offset, data } of written) {
        assert.deepEqual(await readBack(device, offset, data.length), data);
      }
      await device.close();
    });

    test('lets a later write replace part of an earlier one', async () => {
      const device = await make(64 * 1024);
      await device.write(Buffer.alloc(10_000, 1), 100);
      await device.write(Buffer.alloc(3, 2), 4094);
      const expected = Buffer.alloc(10_000, 1);
      expected.fill(2, 3994, 3997);
      assert.deepEqual(await readBack(device, 100, 10_000), expected);
      await device.close();
    });

    test('reads zeros from ranges never written, also beside written ones', async () => {
      const device = await make(1 * MiB);
      assert.deepEqual(await readBack(device, 12_345, 70_000), Buffer.alloc(70_000));
      await device.write(Buffer.alloc(10, 0xff), 5000);
      const around = await readBack(device, 4990, 30);
      assert.deepEqual(
        around,
        Buffer.concat([Buffer.alloc(10), Buffer.alloc(10, 0xff), Buffer.alloc(10)]),
      );
      await device.close();
    });

    test('accepts an empty read or write at the very end', async () => {
      const device = await make(4096);
      await device.write(new Uint8Array(0), 4096);
      await device.read(new Uint8Array(0), 4096);
      await device.close();
    });

    test('refuses ranges outside the device, naming offset, length and size', async () => {
      const device = await make(8192);
      await rejectsIo(device.read(new Uint8Array(2), 8191), /2 bytes at offset 8191 .*8192 bytes/);
      await rejectsIo(device.write(new Uint8Array(1), 8192), /1 bytes at offset 8192/);
      await rejectsIo(device.read(new Uint8Array(1), -1), /offset -1/);
      await rejectsIo(device.write(new Uint8Array(1), 0.5), /offset 0.5/);
      assert.deepEqual(await readBack(device, 8190, 2), Buffer.alloc(2));
      await device.close();
    });

    test('grows, keeping the old contents and reading zeros in the new space', async () => {
      const device = await make(4096);
      await device.write(Buffer.alloc(4096, 7), 0);
      await device.grow(3 * 4096 + 5);
      assert.equal(device.size, 3 * 4096 + 5);
      assert.deepEqual(await readBack(device, 0, 4096), Buffer.alloc(4096, 7));
      assert.deepEqual(await readBack(device, 4096, 2 * 4096 + 5), Buffer.alloc(2 * 4096 + 5));
      await device.write(Buffer.alloc(5, 9), 3 * 4096);
      assert.deepEqual(await readBack(device, 3 * 4096, 5), Buffer.alloc(5, 9));
      await device.close();
    });

    test('never shrinks', async () => {
      const device = await make(8192);
      await rejectsIo(device.grow(4096), /cannot grow from 8192 bytes to 4096 bytes/);
      assert.equal(device.size, 8192);
      await device.grow(8192);
      assert.equal(device.size, 8192);
      await device.close();
    });

    test('refuses writes and growth when read-only, but reads', async () => {
      const device = await make(8192, { readOnly: true });
      assert.equal(device.readOnly, true);
      await rejectsIo(device.write(Uint8Array.of(1), 0), /read-only/);
      await rejectsIo(device.grow(16_384), /read-only/);
      await rejectsIo(discarder(device)(0, 4096), /read-only/);
      assert.equal(device.size, 8192);
      const first = (await readBack(device, 0, 1))[0];
      assert.ok(first === 0x5a || first === 0, `unexpected first byte ${first}`);
      await device.close();
    });

    test('discards exactly the range, at unaligned edges, which then reads zeros', async () => {
      const device = await make(64 * 1024);
      const discard = discarder(device);
      const data = randomBytes(64 * 1024);
      await device.write(data, 0);
      const expected = Buffer.from(data);
      // Inside one page, across a page boundary, whole pages with ragged edges, and the end.
      const ranges: [number, number][] = [
        [100, 200],
        [4000, 200],
        [8191, 3 * 4096 + 2],
        [64 * 1024 - 5, 5],
        [30_000, 0],
      ];
      for (const [offset, length] of ranges) {
        await discard(offset, length);
        expected.fill(0, offset, offset + length);
      }
      assert.deepEqual(await readBack(device, 0, 64 * 1024), expected);
      await device.write(Buffer.alloc(3, 0x77), 8192);
      expected.fill(0x77, 8192, 8195);
      assert.deepEqual(await readBack(device, 0, 64 * 1024), expected);
      await device.close();
    });

    test('discards after the overlapping writes in flight, and flush waits for it', async () => {
      const device = await make(1 * MiB);
      const write = device.write(Buffer.alloc(256 * 1024, 0x33), 0);
      const discard = discarder(device)(4096, 128 * 1024);
      await device.flush();
      await Promise.all([write, discard]);
      const expected = Buffer.alloc(256 * 1024, 0x33);
      expected.fill(0, 4096, 4096 + 128 * 1024);
      assert.deepEqual(await readBack(device, 0, 256 * 1024), expected);
      await device.close();
    });

    test('refuses to discard outside the device, or a negative length', async () => {
      const device = await make(8192);
      const discard = discarder(device);
      await device.write(Buffer.alloc(8192, 1), 0);
      await rejectsIo(discard(8000, 193), /discard failed: .*193 bytes at offset 8000/);
      await rejectsIo(discard(-1, 1), /offset -1/);
      await rejectsIo(discard(0, -1), /-1 bytes at offset 0/);
      await rejectsIo(discard(0, 1.5), /1.5 bytes/);
      assert.deepEqual(await readBack(device, 0, 8192), Buffer.alloc(8192, 1));
      await device.close();
    });

    test('flushes after writes in flight, and the writes stay readable', async () => {
      const device = await make(1 * MiB);
      const data = randomBytes(256 * 1024);
      const writes = [0, 1, 2, 3].map((i) =>
        device.write(data.subarray(i * 65_536, (i + 1) * 65_536), i * 65_536),
      );
      await device.flush();
      await Promise.all(writes);
      assert.deepEqual(await readBack(device, 0, data.length), data);
      await device.flush();
      await device.close();
    });

    test('writes uncached as write does: any range, over and under cached writes', async () => {
      const device = await make(4 * MiB);
      const writeUncached = device.writeUncached?.bind(device) ?? device.write.bind(device);
      const big = randomBytes(2 * MiB);
      const expected = Buffer.alloc(4 * MiB);
      // Cached bytes first, so the uncached write must replace what the cache holds.
      await device.write(Buffer.alloc(8192, 0x11), 65_536 + 4096);
      expected.fill(0x11, 65_536 + 4096, 65_536 + 4096 + 8192);
      // Written together: several batches in flight at once, neighbours and not.
      const pieces: [number, number][] = [
        [65_536, MiB],
        [65_536 + MiB, 256 * 1024],
        [2 * MiB, 512 * 1024],
        [3 * MiB + 4097, 9000], // off whole pages
      ];
      await Promise.all(
        pieces.map(([offset, length], i) => {
          const data = big.subarray(i * 16, i * 16 + length); // memory off any alignment
          data.copy(expected, offset);
          return writeUncached(data, offset);
        }),
      );
      assert.deepEqual(await readBack(device, 0, 4 * MiB), expected);
      // A cached write over part of it, and an uncached one over that: the last one wins.
      await device.write(Buffer.alloc(4096, 0x22), 2 * MiB + 4096);
      expected.fill(0x22, 2 * MiB + 4096, 2 * MiB + 8192);
      assert.deepEqual(
        await readBack(device, 2 * MiB, 65_536),
        expected.subarray(2 * MiB, 2 * MiB + 65_536),
      );
      await writeUncached(Buffer.alloc(65_536, 0x33), 2 * MiB);
      expected.fill(0x33, 2 * MiB, 2 * MiB + 65_536);
      await device.flush();
      assert.deepEqual(await readBack(device, 0, 4 * MiB), expected);
      const now = Buffer.alloc(65_536);
      if (device.readNow?.(now, 2 * MiB) === true) {
        assert.deepEqual(now, expected.subarray(2 * MiB, 2 * MiB + 65_536), 'read at once');
      }
      await device.close();
    });

    test('stopReadahead, where offered: reads and writes as before; false once closed', async () => {
      const device = await make(MiB);
      if (device.stopReadahead === undefined) {
        await device.close();
        return;
      }
      const data = randomBytes(256 * 1024);
      await device.write(data, 4096);
      device.stopReadahead();
      assert.deepEqual(await readBack(device, 4096, data.length), data);
      await device.write(data.subarray(0, 8192), 0);
      assert.deepEqual(await readBack(device, 0, 8192), data.subarray(0, 8192));
      await device.close();
      assert.equal(device.stopReadahead(), false, 'closed');
    });

    test('fails every call after close, and closing twice is harmless', async () => {
      const device = await make(8192);
      await device.close();
      await device.close();
      await rejectsIo(device.read(new Uint8Array(1), 0), /closed/);
      await rejectsIo(device.write(new Uint8Array(1), 0), /closed/);
      if (device.writeUncached !== undefined) {
        await rejectsIo(device.writeUncached(new Uint8Array(4096), 0), /closed/);
      }
      await rejectsIo(device.flush(), /closed/);
      await rejectsIo(device.grow(16_384), /closed/);
      await rejectsIo(discarder(device)(0, 1), /closed/);
    });
  });
}

describeBlockDevice('FileDevice', fileFactory);
describeBlockDevice('FileDevice (threadpool only)', threadpoolFileFactory);
describeBlockDevice('MemoryDevice', memoryFactory);
describeBlockDevice('BlockDevDevice (a loop device)', blockDevFactory);
describeBlockDevice('LinearDevice', linearFactory);

describe('FileDevice', () => {
  test('creates a sparse file of the given size', async () => {
    const file = path.join(dir, 'sparse.img');
    const device = await FileDevice.open(file, { create: { size: 16 * 1024 * MiB } });
    await device.write(Buffer.alloc(4096, 1), 8 * 1024 * MiB);
    await device.flush();
    await device.close();
    const info = await stat(file);
    assert.equal(info.size, 16 * 1024 * MiB);
    assert.ok(info.blocks * 512 <= MiB, `${info.blocks * 512} bytes allocated`);
  });

  test('refuses to create a file that exists', async () => {
    const file = path.join(dir, 'exists.img');
    await writeFile(file, 'x');
    await assert.rejects(FileDevice.open(file, { create: { size: 4096 } }), ExistsError);
    assert.equal(await readFile(file, 'utf8'), 'x');
  });

  test('reports a missing file as not found, with a hint', async () => {
    const file = path.join(dir, 'missing.img');
    await assert.rejects(FileDevice.open(file), (err: unknown) => {
      assert.ok(err instanceof NotFoundError);
      assert.match(err.message, /missing\.img: no such file/);
      assert.ok(err.hint !== undefined);
      return true;
    });
  });

  test('opens an existing file at its size and reads its contents', async () => {
    const file = path.join(dir, 'existing.img');
    await writeFile(file, Buffer.alloc(10_000, 3));
    const device = await FileDevice.open(file, { readOnly: true });
    assert.equal(device.size, 10_000);
    assert.deepEqual(await readBack(device, 9990, 10), Buffer.alloc(10, 3));
    await device.close();
  });

  test('makes flushed writes visible to other readers of the file', async () => {
    const file = path.join(dir, 'flushed.img');
    const device = await FileDevice.open(file, { create: { size: 8192 } });
    const write = device.write(Buffer.alloc(100, 0x42), 1000);
    await device.flush();
    assert.deepEqual((await readFile(file)).subarray(1000, 1100), Buffer.alloc(100, 0x42));
    await write;
    await device.close();
  });

  test('reads zeros past the physical end of a file shortened behind its back', async () => {
    const file = path.join(dir, 'shortened.img');
    const device = await FileDevice.open(file, { create: { size: 8192 } });
    await device.write(Buffer.alloc(8192, 0x11), 0);
    await truncate(file, 5000);
    const buf = await readBack(device, 4000, 4192);
    assert.deepEqual(buf, Buffer.concat([Buffer.alloc(1000, 0x11), Buffer.alloc(3192)]));
    await device.close();
  });
});

describe('FileDevice writes uncached', () => {
  test('around the page cache: written, read back, and never cached', async () => {
    const file = path.join(dir, 'uncached.img');
    const device = await FileDevice.open(file, { create: { size: 8 * MiB } });
    assert.equal(device.writesUncached, true, 'the file opened with O_DIRECT');
    const data = randomBytes(2 * MiB + 1);
    await device.writeUncached(data.subarray(1), MiB); // memory off any alignment
    assert.equal(residentBytes(file), 0, 'no page of it cached');
    await device.write(data.subarray(1, 65_537), 4 * MiB);
    assert.equal(residentBytes(file), 65_536, 'a cached write stays in the page cache');
    await device.flush();
    assert.deepEqual((await readFile(file)).subarray(MiB, 3 * MiB), data.subarray(1));
    await device.close();
  });

  test('as a cached write where asked not to, or off whole pages', async () => {
    const file = path.join(dir, 'cached.img');
    const device = await FileDevice.open(file, { create: { size: MiB }, uncached: false });
    assert.equal(device.writesUncached, false);
    await device.writeUncached(Buffer.alloc(65_536, 1), 0);
    assert.equal(residentBytes(file), 65_536);
    await device.close();
    const other = await FileDevice.open(file);
    await other.writeUncached(Buffer.alloc(65_536, 2), 65_536 + 512);
    assert.ok(residentBytes(file) > 65_536, 'off whole pages: through the page cache');
    assert.deepEqual(await readBack(other, 65_536 + 512, 65_536), Buffer.alloc(65_536, 2));
    await other.close();
  });
});

/**
 * Reads 64 KiB twice in a row from byte `at` of `device`, whose bytes there are not cached:
 * the bytes of `file` the page cache then holds.
 */
async function cachedAfterTwoReads(device: BlockDevice, file: string, at: number) {
  await readBack(device, at, 65_536);
  await readBack(device, at + 65_536, 65_536);
  return residentBytes(file);
}

describe('stopReadahead', () => {
  test('FileDevice: reads bring in what they asked for and no more', async () => {
    const file = path.join(dir, 'readahead.img');
    const device = await FileDevice.open(file, { create: { size: 16 * MiB } });
    await device.writeUncached(randomBytes(8 * MiB), 0);
    assert.equal(residentBytes(file), 0, 'written around the page cache');
    // The kernel's readahead, as it is here: the two reads bring in more than they ask.
    const ahead = await cachedAfterTwoReads(device, file, 0);
    assert.ok(ahead > 131_072, `the kernel reads ahead (read_ahead_kb > 0): ${ahead} bytes`);
    assert.equal(device.stopReadahead(), true);
    assert.equal((await cachedAfterTwoReads(device, file, 4 * MiB)) - ahead, 131_072);
    await device.close();
  });

  test('BlockDevDevice: the kernel takes the advice for the device', async () => {
    const device = await blockDevFactory(MiB);
    assert.equal(device.stopReadahead?.(), true);
    await device.close();
  });

  test('LinearDevice: every segment, and those appended later; false if one cannot', async () => {
    const files = [0, 1, 2].map((i) => path.join(dir, `linear-ra-${i}.img`));
    const [a, b, c] = await Promise.all(
      files.map((file) => FileDevice.open(file, { create: { size: 4 * MiB } })),
    );
    const linear = new LinearDevice('linear', [a as FileDevice, b as FileDevice]);
    assert.equal(linear.stopReadahead(), true);
    await (c as FileDevice).writeUncached(randomBytes(4 * MiB), 0);
    linear.append(c as FileDevice);
    assert.equal(await cachedAfterTwoReads(linear, files[2] as string, 8 * MiB), 131_072);
    await linear.close();
    const mixed = new LinearDevice('mixed', [new MemoryDevice(MiB), await fileFactory(MiB)]);
    assert.equal(mixed.stopReadahead(), false, 'a memory segment has no readahead to stop');
    await mixed.close();
  });
});

describe('MemoryDevice', () => {
  test('costs nothing until written, even when huge', async () => {
    const device = new MemoryDevice(16 * 1024 * MiB);
    assert.equal(device.allocatedPages, 0);
    assert.deepEqual(await readBack(device, 15 * 1024 * MiB, 8192), Buffer.alloc(8192));
    await device.write(Uint8Array.of(1, 2), 4095);
    assert.equal(device.allocatedPages, 2);
    await device.close();
  });

  test('frees the pages a discard covers whole, and keeps the partial ones', async () => {
    const device = new MemoryDevice(64 * 1024);
    await device.write(Buffer.alloc(64 * 1024, 1), 0);
    assert.equal(device.allocatedPages, 16);
    await device.discard(4095, 3 * 4096 + 2);
    assert.equal(device.allocatedPages, 13);
    await device.discard(0, 64 * 1024);
    assert.equal(device.allocatedPages, 0);
    await device.close();
  });

  test('keeps its own copy of written data', async () => {
    const device = new MemoryDevice(4096);
    const data = Buffer.alloc(16, 1);
    await device.write(data, 0);
    data.fill(2);
    assert.deepEqual(await readBack(device, 0, 16), Buffer.alloc(16, 1));
    await device.close();
  });

  test('names itself in errors', async () => {
    const device = new MemoryDevice(4096, 'scratch');
    await rejectsIo(device.read(new Uint8Array(1), 4096), /^scratch: read failed/);
  });
});

describe('BlockDevDevice', () => {
  test('takes its size from the device (BLKGETSIZE64)', async () => {
    const device = await BlockDevDevice.open(loop, { readOnly: true });
    assert.equal(device.size, LOOP_SIZE);
    assert.equal(device.deviceSize(), LOOP_SIZE);
    await device.close();
  });

  test('gives discarded space back: the loop file loses its blocks', async () => {
    const file = path.join(dir, 'discard.img');
    const own = new LoopDevices();
    try {
      const dev = await own.attach(file, 16 * MiB);
      const device = await BlockDevDevice.open(dev);
      await device.write(randomBytes(8 * MiB), 0);
      await device.flush();
      const before = (await stat(file)).blocks * 512;
      assert.ok(before >= 8 * MiB, `${before} bytes allocated after writing 8 MiB`);
      await device.discard(MiB + 100, 6 * MiB);
      await device.flush();
      assert.equal(device.punchesHoles, true);
      const afterDiscard = (await stat(file)).blocks * 512;
      assert.ok(afterDiscard <= before - 5 * MiB, `${afterDiscard} bytes still allocated`);
      assert.deepEqual(await readBack(device, MiB + 100, 6 * MiB), Buffer.alloc(6 * MiB));
      await device.close();
    } finally {
      await own.detachAll();
    }
  });

  test('grows only as far as the device reaches, and further once the device grew', async () => {
    const file = path.join(dir, 'grow.img');
    const own = new LoopDevices();
    try {
      const dev = await own.attach(file, 4 * MiB);
      const device = await BlockDevDevice.open(dev, { offset: MiB, size: MiB });
      await rejectsIo(device.grow(4 * MiB), /holds 4194304 bytes.*cannot grow to 4194304 bytes/);
      await device.grow(3 * MiB);
      await truncate(file, 8 * MiB);
      await refreshLoop(dev);
      await device.grow(7 * MiB);
      assert.equal(device.size, 7 * MiB);
      await device.close();
    } finally {
      await own.detachAll();
    }
  });

  test('refuses a regular file and a region outside the device', async () => {
    const file = path.join(dir, 'plain.img');
    await writeFile(file, Buffer.alloc(8192));
    await assert.rejects(BlockDevDevice.open(file), /plain\.img is not a block device/);
    await assert.rejects(
      BlockDevDevice.open(loop, { offset: LOOP_SIZE - 4096, size: 8192 }),
      /no region of 8192 bytes at byte 268431360/,
    );
  });
});

/**
 * The data path done at once, over the devices that read and write through a file
 * descriptor: a page written at once reads back through every way of reading it, and the
 * file a planned read reads from holds the device's bytes at `base` on.
 */
describe('reads and writes at once, and the file reads are planned from', () => {
  /** One page of random bytes written at once at `at`, then read back every way. */
  async function checkAtOnce(device: BlockDevice, at: number): Promise<void> {
    const page = randomBytes(4096);
    assert.equal(device.writeNow?.(page, at), true, `${device.name}: a page written at once`);
    assert.deepEqual(await readBack(device, at, page.length), page);
    const now = Buffer.alloc(page.length);
    assert.equal(device.readNow?.(now, at), true, `${device.name}: read at once`);
    assert.deepEqual(now, page);
    const file = device.readFile?.();
    assert.ok(file !== undefined, `${device.name} offers its file`);
    const direct = Buffer.alloc(page.length);
    assert.equal(readSync(file.fd, direct, 0, direct.length, file.base + at), direct.length);
    assert.deepEqual(direct, page);
  }

  test('FileDevice: at base 0', async () => {
    const device = await fileFactory(MiB);
    await checkAtOnce(device, 8192);
    assert.equal(device.readFile?.()?.base, 0);
    await device.close();
    assert.equal(device.readFile?.(), undefined, 'no file once closed');
    assert.equal(device.readNow?.(Buffer.alloc(16), 0), false);
  });

  test('BlockDevDevice: a region reads from the device at the region’s start', async () => {
    await blockDevFactory(MiB); // a region at the start, so the next one lies further in
    const device = await blockDevFactory(MiB);
    assert.ok(device instanceof BlockDevDevice && device.offset > 0);
    assert.equal(device.readFile?.()?.base, device.offset);
    await checkAtOnce(device, 12288);
    await device.close();
    assert.equal(device.readFile?.(), undefined, 'no file once closed');
  });

  test('LinearDevice: its one segment’s file; at once inside a segment only', async () => {
    const one = new LinearDevice('one', [await blockDevFactory(MiB)]);
    await checkAtOnce(one, 4096);
    await one.close();
    const segments = [await blockDevFactory(MiB), await blockDevFactory(MiB)];
    const two = new LinearDevice('two', segments);
    assert.equal(two.readFile?.(), undefined, 'no one file for two segments');
    const page = randomBytes(4096);
    assert.equal(two.writeNow?.(page, MiB - 2048), false, 'a page across the segments');
    assert.equal(two.writeNow?.(page, MiB + 4096), true);
    assert.deepEqual(await readBack(segments[1] as BlockDevice, 4096, 4096), page);
    const now = Buffer.alloc(4096);
    assert.equal(two.readNow?.(now, MiB + 4096), true);
    assert.deepEqual(now, page);
    assert.equal(two.readNow?.(Buffer.alloc(4096), MiB - 2048), false);
    await two.close();
  });
});
