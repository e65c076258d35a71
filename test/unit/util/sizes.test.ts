import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  BadInputError,
  type Bytes,
  formatHumanSize,
  formatSize,
  parsePercent,
  parseSize,
  toSignificantDigits,
} from '../../../src/util/index.js';

const KiB = 1024;
const GiB = 1024 ** 3;
const TiB = 1024 ** 4;

describe('parseSize', () => {
  const valid: [string, number][] = [
    ['0', 0],
    ['4096', 4096],
    ['64K', 64 * KiB],
    ['64k', 64 * KiB],
    ['64KB', 64 * KiB],
    ['64KiB', 64 * KiB],
    ['64 kib', 64 * KiB],
    ['512b', 512],
    ['512B', 512],
    ['10G', 10 * GiB],
    ['1.5T', 1.5 * TiB],
    ['0.5K', 512],
    ['2M', 2 * 1024 ** 2],
    ['1P', 1024 ** 5],
    ['7E', 7 * 2 ** 60],
    [' 10G ', 10 * GiB],
    ['9007199254740991', Number.MAX_SAFE_INTEGER],
    ['8191P', 8191 * 2 ** 50],
  ];
  for (const [text, expected] of valid) {
    test(`reads '${text}' as ${expected} bytes`, () => {
      assert.equal(parseSize(text), expected);
    });
  }

  const invalid: [string, RegExp][] = [
    ['', /the size is empty/],
    ['   ', /the size is empty/],
    ['-1', /size '-1' is negative/],
    ['-64K', /is negative/],
    ['1.1K', /not a whole number of bytes/],
    ['0.3', /not a whole number of bytes/],
    ['8E', /too large.*below 2\^63/],
    ['9223372036854775808', /too large/],
    ['99999999999999999999999', /too large/],
    ['9007199254740993', /cannot be held exactly.*multiple of 1K/],
    ['10Q', /'10Q' is not a size/],
    ['G', /is not a size/],
    ['1e3', /is not a size/],
    ['0x10', /is not a size/],
    ['+5', /is not a size/],
    ['5ib', /is not a size/],
    ['1..5G', /is not a size/],
    ['10 G B', /is not a size/],
    ['ten', /is not a size/],
  ];
  for (const [text, message] of invalid) {
    test(`rejects '${text}' with a message that names the problem`, () => {
      assert.throws(
        () => parseSize(text),
        (error: unknown) =>
          error instanceof BadInputError &&
          message.test(error.describe()) &&
          error.hint !== undefined,
      );
    });
  }

  test('reads back what formatSize prints, for any byte count', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (n) => {
        assert.equal(parseSize(formatSize(n as Bytes)), n);
      }),
    );
  });

  test('reads back what formatSize prints, for multiples of large units', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 ** 23 - 1 }),
        fc.constantFrom(10, 20, 30, 40),
        (n, shift) => {
          const size = n * 2 ** shift;
          assert.equal(parseSize(formatSize(size as Bytes)), size);
        },
      ),
    );
  });
});

describe('formatSize', () => {
  const cases: [number, string][] = [
    [0, '0'],
    [1, '1'],
    [1000, '1000'],
    [1024, '1K'],
    [1536, '1536'],
    [64 * KiB, '64K'],
    [1536 * KiB, '1536K'],
    [10 * GiB, '10G'],
    [2 ** 60, '1E'],
  ];
  for (const [size, text] of cases) {
    test(`prints ${size} as ${text}`, () => {
      assert.equal(formatSize(size as Bytes), text);
    });
  }
});

describe('formatHumanSize (docker info style)', () => {
  const cases: [number, string][] = [
    [0, '0B'],
    [999, '999B'],
    [1000, '1kB'],
    [65536, '65.54kB'],
    [581632, '581.6kB'],
    [11800000, '11.8MB'],
    [10737418240, '10.74GB'],
    [107374182400, '107.4GB'],
    [2147483648, '2.147GB'],
    [7440000000, '7.44GB'],
    [999950, '1000kB'],
    [10125, '10.12kB'],
    [10375, '10.38kB'],
    [2 ** 62, '4.612EB'],
  ];
  for (const [size, text] of cases) {
    test(`prints ${size} bytes as ${text}`, () => {
      assert.equal(formatHumanSize(size as Bytes), text);
    });
  }
});

describe('toSignificantDigits', () => {
  test('rounds exact ties to even, as Go does', () => {
    assert.equal(toSignificantDigits(0.125, 2), '0.12');
    assert.equal(toSignificantDigits(0.375, 2), '0.38');
    assert.equal(toSignificantDigits(2.5, 1), '2');
    assert.equal(toSignificantDigits(3.5, 1), '4');
  });

  test('rounds values just above a tie up', () => {
    assert.equal(toSignificantDigits(0.1250001, 2), '0.13');
  });

  test('carries into a new digit', () => {
    assert.equal(toSignificantDigits(9.9996, 4), '10');
    assert.equal(toSignificantDigits(99.99, 2), '100');
  });

  test('writes small values in plain notation', () => {
    assert.equal(toSignificantDigits(0.0012345, 3), '0.00123');
  });

  test('agrees with toPrecision wherever no exact tie is involved', () => {
    fc.assert(
      fc.property(fc.double({ min: 0.001, max: 999.9, noNaN: true }), (x) => {
        fc.pre(!/5$/.test(x.toPrecision(5)));
        assert.equal(toSignificantDigits(x, 4), String(Number(x.toPrecision(4))));
      }),
    );
  });
});

describe('parsePercent', () => {
  const rule = { min: 0, max: 99, sign: 'optional' } as const;

  test('reads whole percentages with or without the sign', () => {
    assert.equal(parsePercent('10%', rule), 10);
    assert.equal(parsePercent('10', rule), 10);
    assert.equal(parsePercent('0%', rule), 0);
    assert.equal(parsePercent('99%', rule), 99);
  });

  const invalid: [string, RegExp][] = [
    ['100%', /out of range/],
    ['-1%', /negative/],
    ['10.5%', /not a whole percentage/],
    ['%', /not a percentage/],
    ['ten%', /not a percentage/],
    ['10%%', /not a percentage/],
    ['', /not a percentage/],
  ];
  for (const [text, message] of invalid) {
    test(`rejects '${text}'`, () => {
      assert.throws(() => parsePercent(text, rule), message);
    });
  }

  test('insists on the sign where the rule requires it', () => {
    assert.throws(
      () => parsePercent('10', { ...rule, sign: 'required' }),
      (error: unknown) =>
        error instanceof BadInputError &&
        /lacks its % sign/.test(error.message) &&
        error.hint === 'write 10%',
    );
  });
});
