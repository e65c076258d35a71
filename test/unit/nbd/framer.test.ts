import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
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
