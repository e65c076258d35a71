import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, test } from 'node:test';
import { BufferPool, MIN_POOLED } from '../../../src/nbd/buffer-pool.js';
import { ReplyWriter } from '../../../src/nbd/reply-writer.js';

const MiB = 1024 * 1024;

function overlap(a: Buffer, b: Buffer): boolean {
  return (
    a.buffer === b.buffer &&
    a.byteOffset < b.byteOffset + b.length &&
    b.byteOffset < a.byteOffset + a.length
  );
}

describe('BufferPool', () => {
  test('gives buffers of the exact size asked, and reuses a given-back one of its class', () => {
    const pool = new BufferPool();
    const a = pool.take(MiB + 16);
    assert.equal(a.length, MiB + 16);
    pool.give(a);
    const b = pool.take(MiB + 100);
    assert.equal(b.length, MiB + 100);
    assert.equal(b.buffer, a.buffer, 'the same backing memory, reused');
    const c = pool.take(MiB + 100);
    assert.notEqual(c.buffer, a.buffer, 'a buffer in use is never handed out twice');
  });

  test('takes back small buffers cut from its slabs, by size, and only its own buffers', () => {
    const pool = new BufferPool();
    const small = pool.take(MIN_POOLED - 1);
    const other = pool.take(MIN_POOLED - 1);
    assert.ok(!overlap(small, other));
    pool.give(small);
    assert.equal(pool.take(MIN_POOLED - 2).length, MIN_POOLED - 2);
    assert.equal(pool.take(MIN_POOLED - 1), small, 'reused, for its size only');
    assert.ok(!overlap(pool.take(MIN_POOLED - 1), small), 'once only');
    const tiny = pool.take(100);
    pool.give(tiny);
    assert.notEqual(pool.take(100), tiny, "Node's own small buffers are not taken back");
    const foreign = Buffer.allocUnsafeSlow(2 * MiB);
    pool.give(foreign);
    assert.notEqual(pool.take(2 * MiB).buffer, foreign.buffer);
  });

  test('cuts small replies from shared slabs: never overlapping, aligned, a new slab when full', () => {
    const pool = new BufferPool();
    const reply = 4096 + 16;
    const cut = Array.from({ length: 300 }, () => pool.take(reply));
    for (const b of cut) assert.equal(b.length, reply);
    for (const [i, b] of cut.entries()) {
      assert.equal(b.byteOffset % 8, 0, 'aligned');
      if (i > 0) assert.ok(!overlap(cut[i - 1] as Buffer, b), `${i} overlaps the one before`);
    }
    const slabs = new Set(cut.map((b) => b.buffer));
    assert.ok(slabs.size >= 2 && slabs.size < 10, `300 replies of 4 KiB share ${slabs.size} slabs`);
    const tiny = pool.take(100);
    assert.ok(!slabs.has(tiny.buffer), "below Node's own pool size, Node's pool serves it");
  });

  test('rounds large buffers to 64 KiB, and keeps 32 replies of 1 MiB by default', () => {
    const pool = new BufferPool();
    const replies = Array.from({ length: 32 }, () => pool.take(MiB + 16));
    for (const b of replies) assert.equal(b.buffer.byteLength, MiB + 64 * 1024);
    for (const b of replies) pool.give(b);
    const again = new Set(Array.from({ length: 32 }, () => pool.take(MiB + 16).buffer));
    assert.equal(replies.filter((b) => again.has(b.buffer)).length, 32, 'every one reused');
  });

  test('keeps at most its idle bound', () => {
    const pool = new BufferPool(2 * MiB);
    const taken = [pool.take(MiB), pool.take(MiB), pool.take(MiB)];
    for (const b of taken) pool.give(b);
    const again = [pool.take(MiB), pool.take(MiB), pool.take(MiB)].map((b) => b.buffer);
    const reused = again.filter((x) => taken.some((t) => t.buffer === x));
    assert.equal(reused.length, 2);
  });
});

/** A reply whose buffer the caller wants back (`written`), as a promise either way. */
const sendOwned = (writer: ReplyWriter, buf: Buffer, written: () => void): Promise<void> =>
  writer.sendAtOnce(buf, written) ?? Promise.resolve();

describe('ReplyWriter.sendAtOnce with a buffer to give back', () => {
  test('says a buffer is free only once the stream has written it', async () => {
    const stream = new PassThrough({ highWaterMark: 16 });
    const writer = new ReplyWriter(stream);
    const first = Buffer.alloc(1024, 1);
    const second = Buffer.alloc(1024, 2);
    const freed: number[] = [];
    const a = sendOwned(writer, first, () => freed.push(1));
    const b = sendOwned(writer, second, () => freed.push(2));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(freed, [], 'nothing consumed yet');
    const out: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => out.push(chunk));
    await Promise.all([a, b]);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(freed, [1, 2]);
    assert.deepEqual(Buffer.concat(out), Buffer.concat([first, second]));
  });

  test('frees the buffer of a reply dropped because the stream closed', async () => {
    const stream = new PassThrough();
    stream.destroy();
    const writer = new ReplyWriter(stream);
    let freed = false;
    await sendOwned(writer, Buffer.alloc(8), () => {
      freed = true;
    });
    assert.equal(freed, true);
  });
});
