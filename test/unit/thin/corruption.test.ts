import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryDevice } from '../../../src/block/index.js';
import { PoolMetadata } from '../../../src/thin/index.js';
import { MetadataCorruptError } from '../../../src/util/index.js';

const BLOCK = 4096;
const SIZE = 4 << 20;

/** A pool with snapshots, many mappings and a held metadata snapshot. */
async function buildImage(): Promise<MemoryDevice> {
  const dev = new MemoryDevice(SIZE);
  const md = await PoolMetadata.format(dev, { dataBlockSize: 128, nrDataBlocks: 40_000 });
  await md.createThin(0);
  for (let v = 0; v < 700; v++) await md.insertMapping(0, v * 2, await md.allocDataBlock());
  await md.createSnapshot(1, 0);
  for (let v = 0; v < 300; v++) await md.insertMapping(1, v * 5, await md.allocDataBlock());
  await md.createThin(7);
  await md.commit();
  await md.reserveMetadataSnap();
  await md.insertMapping(0, 5000, await md.allocDataBlock());
  await md.commit();
  return dev;
}

/** Everything the pool holds, read through the engine. */
async function readAll(dev: MemoryDevice): Promise<string> {
  const md = await PoolMetadata.open(dev);
  const lines: string[] = [`${md.transactionId} ${md.time} ${md.heldRoot}`];
  for (const id of await md.deviceIds()) {
    const d = await md.deviceDetails(id);
    lines.push(`dev ${id} ${JSON.stringify(d)}`);
    await md.walkMappings(id, (v, b, t) => {
      lines.push(`${v} ${b} ${t}`);
    });
  }
  const held = await md.heldRoots();
  for (const { id } of await md.devicesIn(held)) {
    await md.walkMappings(
      id,
      (v, b, t) => {
        lines.push(`held ${id} ${v} ${b} ${t}`);
      },
      held,
    );
  }
  // A change exercises the space maps and the shadowing of every tree.
  await md.insertMapping(1, 77_777, await md.allocDataBlock());
  await md.deleteDevice(7);
  await md.commit();
  return lines.join('\n');
}

async function copyOf(dev: MemoryDevice): Promise<MemoryDevice> {
  const copy = new MemoryDevice(SIZE);
  const buf = Buffer.alloc(BLOCK);
  for (let off = 0; off < SIZE; off += BLOCK) {
    await dev.read(buf, off);
    if (buf.some((b) => b !== 0)) await copy.write(buf, off);
  }
  return copy;
}

describe('damaged metadata', () => {
  it('is detected on read with an error naming the flipped block, or changes nothing', async () => {
    const original = await buildImage();
    const expected = await readAll(await copyOf(original));
    const buf = Buffer.alloc(BLOCK);
    let detected = 0;
    let unreachable = 0;
    for (let block = 0; block < SIZE / BLOCK; block++) {
      await original.read(buf, block * BLOCK);
      if (buf.every((b) => b === 0)) continue;
      const damaged = await copyOf(original);
      const offset = (block * 977 + 13) % BLOCK;
      buf.writeUInt8(buf.readUInt8(offset) ^ (1 << (block % 8)), offset);
      await damaged.write(buf, block * BLOCK);
      try {
        const got = await readAll(damaged);
        assert.equal(got, expected, `a flip in block ${block} went unnoticed and changed the pool`);
        unreachable++;
      } catch (err) {
        assert.ok(err instanceof MetadataCorruptError, `block ${block}: ${String(err)}`);
        assert.equal(
          err.block,
          block,
          `the error names block ${err.block}, not ${block}: ${err.message}`,
        );
        detected++;
      }
    }
    assert.ok(detected > 20, `only ${detected} blocks were in use`);
    assert.ok(unreachable > 0, 'expected some freed blocks whose damage does not matter');
  });
});
