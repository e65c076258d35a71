/**
 * The snapshotter's clock: wall-clock time finer than Date's millisecond, never behind it.
 * containerd's conformance suite reads its own clock before an Update and refuses an
 * `updated` time earlier than that, so a time rounded down to the millisecond fails it.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fromNs, nowNs } from '../../../src/plugin/index.js';

/** Waits for Date.now() to move to its next millisecond; returns that millisecond. */
function nextMillisecond(): number {
  const start = Date.now();
  let ms = Date.now();
  while (ms === start) ms = Date.now();
  return ms;
}

test('reads the time inside the millisecond, not its start', () => {
  let checked = 0;
  for (let attempt = 0; attempt < 200 && checked < 20; attempt++) {
    const ms = nextMillisecond();
    const edge = process.hrtime.bigint();
    while (process.hrtime.bigint() - edge < 600_000n) {
      // 0.6 ms into millisecond `ms`
    }
    const ns = nowNs();
    if (Date.now() !== ms) continue; // preempted past the millisecond: try again
    checked++;
    const intoMs = ns - BigInt(ms) * 1_000_000n;
    assert.ok(intoMs >= 500_000n, `${intoMs} ns into millisecond ${ms}: expected at least 0.5 ms`);
    assert.ok(intoMs < 1_000_000n, `${intoMs} ns into millisecond ${ms}: ahead of the wall clock`);
  }
  assert.equal(checked, 20, 'the machine preempted nearly every attempt');
});

test('never goes backwards and never repeats', () => {
  let last = nowNs();
  for (let i = 0; i < 100_000; i++) {
    const ns = nowNs();
    assert.ok(ns > last);
    last = ns;
  }
  assert.ok(last / 1_000_000n <= BigInt(Date.now()), 'not ahead of the wall clock');
});

test('splits nanoseconds into seconds and nanos', () => {
  assert.deepEqual(fromNs(1_796_172_782_415_907_678n), {
    seconds: 1_796_172_782,
    nanos: 415_907_678,
  });
});
