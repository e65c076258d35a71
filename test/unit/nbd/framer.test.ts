import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { Framer, type FrameSink, type Need } from '../../../src/nbd/index.js';

/** A sink that walks through `script`, recording each frame (as hex) and each skip. */
function recordingSink(script: readonly Need[]): { sink: FrameSink; seen: string[]; first: Need } {
  const seen: string[] = [];
  let step = 1;
  const next = (): Need => script[step++] ?? 'stop';
  return {
    seen,
    first: script[0] ?? 'stop',
    sink: {
      frame: (data) => {
        seen.push(data.toString('hex'));
        return next();
      },
      skipped: () => {
        seen.push('skipped');
        return next();
      },
    },
  };
}

const SCRIPT: Need[] = [
  { take: 4 },
  { take: 0 },
  { take: 6 },
  { skip: 5 },
  { take: 3 },
  { skip: 0 },
  { take: 2 },
];
const STREAM = Buffer.from('0001020304050607080910111213141516171819', 'hex');
const EXPECTED = ['00010203', '', '040506070809', 'skipped', '151617', 'skipped', '1819'];

function frameAll(chunks: readonly Buffer[]): string[] {
  const { sink, seen, first } = recordingSink(SCRIPT);
  const framer = new Framer(sink, first);
  for (const chunk of chunks) framer.push(chunk);
  return seen;
}

describe('Framer', () => {
  test('frames a stream delivered in one chunk', () => {
    assert.deepEqual(frameAll([STREAM]), EXPECTED);
  });

  test('frames the same at every split point', () => {
    for (let i = 0; i <= STREAM.length; i++) {
      assert.deepEqual(
        frameAll([STREAM.subarray(0, i), STREAM.subarray(i)]),
        EXPECTED,
        `split at ${i}`,
      );
    }
  });

  test('frames the same at every pair of split points', () => {
    for (let i = 0; i <= STREAM.length; i++) {
      for (let j = i; j <= STREAM.length; j++) {
        const chunks = [STREAM.subarray(0, i), STREAM.subarray(i, j), STREAM.subarray(j)];
        assert.deepEqual(frameAll(chunks), EXPECTED, `split at ${i} and ${j}`);
      }
    }
  });

  test('frames the same one byte at a time', () => {
    assert.deepEqual(frameAll([...STREAM].map((b) => Buffer.of(b))), EXPECTED);
  });

  test('keeps the remainder between pushes', () => {
    const { sink, first } = recordingSink([{ take: 4 }, { take: 4 }]);
    const framer = new Framer(sink, first);
    framer.push(STREAM.subarray(0, 6));
    assert.equal(framer.buffered, 2);
  });

  test('a frame inside one chunk is a view of it, not a copy', () => {
    const chunk = Buffer.from('aabbccdd', 'hex');
    let frame: Buffer | undefined;
    const sink: FrameSink = {
      frame: (data) => {
        frame = data;
        return 'stop';
      },
      skipped: () => 'stop',
    };
    const framer = new Framer(sink, { take: 2 });
    framer.push(chunk);
    assert.equal(frame?.buffer, chunk.buffer);
  });

  test('holds frames while held and carries on when released', () => {
    const { sink, seen, first } = recordingSink(SCRIPT);
    const framer = new Framer(sink, first);
    framer.hold();
    framer.push(STREAM);
    assert.deepEqual(seen, []);
    framer.release();
    assert.deepEqual(seen, EXPECTED);
  });

  test('drops everything once stopped', () => {
    const { sink, seen, first } = recordingSink([{ take: 2 }]);
    const framer = new Framer(sink, first);
    framer.push(STREAM);
    assert.deepEqual(seen, ['0001']);
    assert.ok(framer.stopped);
    assert.equal(framer.buffered, 0);
    framer.push(STREAM);
    assert.deepEqual(seen, ['0001']);
  });
});

/**
 * Pushes `chunks` lent, as a socket's reusable read buffer does: each is copied into one
 * buffer, pushed, and the buffer scribbled over once `push` returns. Records every frame
 * as seen during `frame()`, and keeps the frames not lent to check them at the end.
 */
function frameLent(script: readonly Need[], chunks: readonly Buffer[]) {
  const seen: string[] = [];
  const kept: { frame: Buffer; hex: string }[] = [];
  const lentFlags: boolean[] = [];
  let step = 1;
  const next = (): Need => script[step++] ?? 'stop';
  const sink: FrameSink = {
    frame: (data, lent) => {
      const hex = data.toString('hex');
      seen.push(hex);
      lentFlags.push(lent);
      if (!lent) kept.push({ frame: data, hex });
      return next();
    },
    skipped: () => {
      seen.push('skipped');
      return next();
    },
  };
  const allocs: number[] = [];
  const framer = new Framer(sink, script[0] ?? 'stop', (size) => {
    allocs.push(size);
    return Buffer.alloc(size);
  });
  const reused = Buffer.allocUnsafeSlow(64);
  for (const chunk of chunks) {
    chunk.copy(reused);
    framer.push(reused.subarray(0, chunk.length), true);
    reused.fill(0xee);
  }
  return { seen, kept, lentFlags, allocs, framer };
}

describe('Framer, lent chunks', () => {
  test('frames a lent stream the same at every pair of split points, keeping nothing lent', () => {
    for (let i = 0; i <= STREAM.length; i++) {
      for (let j = i; j <= STREAM.length; j++) {
        const chunks = [STREAM.subarray(0, i), STREAM.subarray(i, j), STREAM.subarray(j)];
        const { seen, kept } = frameLent(SCRIPT, chunks);
        assert.deepEqual(seen, EXPECTED, `split at ${i} and ${j}`);
        for (const k of kept) assert.equal(k.frame.toString('hex'), k.hex, `split ${i}/${j}`);
      }
    }
  });

  test('a frame inside one lent chunk is lent; one that spans chunks is not', () => {
    const whole = frameLent([{ take: 4 }, { take: 4 }], [STREAM.subarray(0, 8)]);
    assert.deepEqual(whole.lentFlags, [true, true]);
    const split = frameLent(
      [{ take: 4 }, { take: 4 }],
      [STREAM.subarray(0, 6), STREAM.subarray(6, 8)],
    );
    assert.deepEqual(split.lentFlags, [true, false]);
  });

  test('a large frame is gathered straight into one buffer of its size', () => {
    const big = Buffer.from([...Array(40).keys()]);
    const chunks = [big.subarray(0, 10), big.subarray(10, 25), big.subarray(25, 40)];
    const { seen, kept, allocs } = frameLent([{ take: 40 }], chunks);
    assert.deepEqual(seen, [big.toString('hex')]);
    assert.deepEqual(allocs, [40]);
    assert.equal(kept[0]?.frame.toString('hex'), big.toString('hex'));
    // From the first lent push on: the bytes go to the frame's buffer, not to copies of
    // the chunks that are copied again once the frame is complete.
    const early = frameLent([{ take: 40 }], chunks.slice(0, 1));
    assert.deepEqual(early.allocs, [40]);
    assert.equal(early.framer.buffered, 10);
  });

  test('bytes held back while framing is held are copied, not kept as views', () => {
    const { sink, seen, first } = recordingSink(SCRIPT);
    const framer = new Framer(sink, first);
    const reused = Buffer.from(STREAM);
    framer.hold();
    framer.push(reused, true);
    reused.fill(0xee);
    framer.release();
    assert.deepEqual(seen, EXPECTED);
  });

  test('any script and chunking frames as unlent chunks do, frames intact', () => {
    const need = fc.oneof(
      fc.nat({ max: 40 }).map((take): Need => ({ take })),
      fc.nat({ max: 20 }).map((skip): Need => ({ skip })),
    );
    fc.assert(
      fc.property(
        fc.array(need, { minLength: 1, maxLength: 12 }),
        fc.uint8Array({ minLength: 0, maxLength: 300 }),
        fc.array(fc.nat({ max: 64 }), { maxLength: 20 }),
        (script, bytes, cuts) => {
          const stream = Buffer.from(bytes);
          const chunks: Buffer[] = [];
          let at = 0;
          for (const cut of cuts) {
            const end = Math.min(stream.length, at + cut);
            chunks.push(stream.subarray(at, end));
            at = end;
          }
          while (at < stream.length) {
            chunks.push(stream.subarray(at, at + 64));
            at += 64;
          }
          const plain = recordingSink(script);
          const framer = new Framer(plain.sink, plain.first);
          for (const c of chunks) framer.push(c);
          const lent = frameLent(script, chunks);
          assert.deepEqual(lent.seen, plain.seen);
          assert.equal(lent.framer.buffered, framer.buffered);
          for (const k of lent.kept) assert.equal(k.frame.toString('hex'), k.hex);
        },
      ),
      { numRuns: 500 },
    );
  });
});
