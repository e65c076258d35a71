import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { preferredBlockSizeFor } from '../../../src/nbd/index.js';

const KiB = 1024;
const MiB = 1024 * KiB;

describe('preferredBlockSizeFor', () => {
  test('the largest power of two dividing the block size, within the bounds', () => {
    assert.equal(preferredBlockSizeFor(64 * KiB, 512, 32 * MiB), 64 * KiB);
    assert.equal(preferredBlockSizeFor(192 * KiB, 512, 32 * MiB), 64 * KiB, '3 × 64 KiB');
    assert.equal(preferredBlockSizeFor(1024 * MiB, 512, 32 * MiB), 32 * MiB, 'capped');
    assert.equal(preferredBlockSizeFor(1024 * KiB, 512, 64 * KiB), 64 * KiB, 'a lower cap');
    assert.equal(preferredBlockSizeFor(1000, 512, 32 * MiB), 512, 'never below the minimum');
  });
});
