/**
 * Sizes and percentages as users write them, and sizes as thinp prints them.
 *
 * Input: a byte count (`4096`) or a number with a binary unit (`64K`, `64k`, `64KiB`,
 * `10G`, `1.5T`), as Docker's `RAMInBytes` reads them, up to E (2^60). The value must be a
 * whole number of bytes below 2^63. Output: exact binary units for configuration (`64K`),
 * and Docker's decimal style with 4 significant digits for `info` (`65.54kB`, `10.74GB`).
 */

import { BadInputError } from './errors.js';
import type { Bytes } from './units.js';

const UNIT_SHIFTS = { '': 0, b: 0, k: 10, m: 20, g: 30, t: 40, p: 50, e: 60 } as const;
type UnitLetter = keyof typeof UNIT_SHIFTS;

const BINARY_UNITS: readonly (readonly [string, number])[] = [
  ['E', 60],
  ['P', 50],
  ['T', 40],
  ['G', 30],
  ['M', 20],
  ['K', 10],
];

/** number, optional fraction, optional space, optional unit: `1.5 GiB`, `64k`, `512b`. */
const SIZE_PATTERN = /^(\d+)(?:\.(\d+))?\s?(?:([kmgtpe])(?:i?b)?|(b))?$/i;
const SIZE_LIMIT = 1n << 63n;
const SIZE_FORMS =
  'give bytes (4096) or a number with a binary unit K, M, G, T, P or E (64K, 10G, 1.5T)';

/** Parses a size such as `4096`, `64K` or `1.5T` into bytes. Throws BadInputError. */
export function parseSize(text: string): Bytes {
  const trimmed = text.trim();
  if (trimmed === '') {
    throw new BadInputError('the size is empty', { hint: SIZE_FORMS });
  }
  if (trimmed.startsWith('-')) {
    throw new BadInputError(`size '${text}' is negative`, { hint: 'sizes are 0 or more bytes' });
  }
  const match = SIZE_PATTERN.exec(trimmed);
  if (match === null) {
    throw new BadInputError(`'${text}' is not a size`, { hint: SIZE_FORMS });
  }
  const [, whole = '', fraction = '', letter = ''] = match;
  return exactBytes(text, whole, fraction, letter.toLowerCase() as UnitLetter);
}

function exactBytes(text: string, whole: string, fraction: string, letter: UnitLetter): Bytes {
  const scaled = BigInt(whole + fraction) << BigInt(UNIT_SHIFTS[letter]);
  const divisor = 10n ** BigInt(fraction.length);
  if (scaled % divisor !== 0n) {
    throw new BadInputError(`size '${text}' is not a whole number of bytes`, {
      hint: 'use fewer decimals or a smaller unit (1.5K, not 1.1K)',
    });
  }
  const value = scaled / divisor;
  if (value >= SIZE_LIMIT) {
    throw new BadInputError(`size '${text}' is too large`, {
      hint: 'sizes must be below 2^63 bytes (8E)',
    });
  }
  const result = Number(value);
  if (BigInt(result) !== value) {
    throw new BadInputError(`size '${text}' cannot be held exactly`, {
      hint: 'above 2^53 bytes, give a multiple of 1K',
    });
  }
  return result as Bytes;
}

export interface PercentRule {
  min: number;
  max: number;
  /** Whether the `%` sign must be written (`10%`) or may be left out (`10`). */
  sign: 'required' | 'optional';
}

/** Parses a whole percentage such as `10%` within `rule`'s range. Throws BadInputError. */
export function parsePercent(text: string, rule: PercentRule): number {
  const trimmed = text.trim();
  const range = `give a whole percentage from ${rule.min}% to ${rule.max}%`;
  if (trimmed.startsWith('-')) {
    throw new BadInputError(`percentage '${text}' is negative`, { hint: range });
  }
  const match = /^(\d+)(%?)$/.exec(trimmed);
  if (match === null) {
    const fractional = /^\d*\.\d+%?$/.test(trimmed);
    const problem = fractional ? 'is not a whole percentage' : 'is not a percentage';
    throw new BadInputError(`'${text}' ${problem}`, { hint: `${range}, such as 10%` });
  }
  const [, digits = '', sign = ''] = match;
  if (rule.sign === 'required' && sign === '') {
    throw new BadInputError(`percentage '${text}' lacks its % sign`, { hint: `write ${digits}%` });
  }
  const value = Number(digits);
  if (value < rule.min || value > rule.max) {
    throw new BadInputError(`percentage '${text}' is out of range`, { hint: range });
  }
  return value;
}

/** Formats bytes exactly in the largest binary unit that divides them: `65536` → `64K`. */
export function formatSize(size: Bytes): string {
  for (const [unit, shift] of BINARY_UNITS) {
    const unitBytes = 2 ** shift;
    if (size >= unitBytes && size % unitBytes === 0) {
      return `${size / unitBytes}${unit}`;
    }
  }
  return String(size);
}

const DECIMAL_UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB'] as const;

/**
 * Formats bytes as Docker's `units.HumanSize` does (`docker info`): decimal units, 4
 * significant digits, trailing zeros dropped: `65536` → `65.54kB`, `10737418240` → `10.74GB`.
 */
export function formatHumanSize(size: Bytes): string {
  let value: number = size;
  let unit = 0;
  while (value >= 1000 && unit < DECIMAL_UNITS.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${toSignificantDigits(value, 4)}${DECIMAL_UNITS[unit]}`;
}

/**
 * `value` (0 ≤ value < 10^digits) rounded to `digits` significant digits, ties to even on
 * the exact binary value as Go's `%g` does, in plain notation without trailing zeros.
 */
export function toSignificantDigits(value: number, digits: number): string {
  if (value === 0) {
    return '0';
  }
  const [mantissa = '', exponentText = '0'] = value.toExponential(99).split('e');
  const all = mantissa.replace('.', '');
  let kept = BigInt(all.slice(0, digits));
  if (roundsUp(all.slice(digits), kept)) {
    kept += 1n;
  }
  let exponent = Number(exponentText);
  let keptDigits = kept.toString();
  if (keptDigits.length > digits) {
    keptDigits = keptDigits.slice(0, digits);
    exponent++;
  }
  return plainNotation(keptDigits, exponent);
}

function roundsUp(rest: string, kept: bigint): boolean {
  const first = rest[0] ?? '0';
  if (first !== '5') {
    return first > '5';
  }
  const exactTie = /^50*$/.test(rest);
  return !exactTie || kept % 2n === 1n;
}

/** Places the decimal point: digits `6554`, exponent 1 → `65.54`. */
function plainNotation(digits: string, exponent: number): string {
  const padded = exponent < 0 ? '0'.repeat(-exponent) + digits : digits.padEnd(exponent + 1, '0');
  const point = Math.max(exponent, 0) + 1;
  const integer = padded.slice(0, point);
  const fraction = padded.slice(point).replace(/0+$/, '');
  return fraction === '' ? integer : `${integer}.${fraction}`;
}
