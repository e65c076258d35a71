import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeferredSet, KeyedLock, QuiesceGate } from '../../../src/util/index.js';

const tick = () => new Promise((resolve) => setImmediate(resolve));

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe('KeyedLock.runAll', () => {
  it('holds every key at once, and callers sharing keys in any order never deadlock', async () => {
    const lock = new KeyedLock<number>();
    const order: string[] = [];
    const a = lock.runAll([1, 2, 3], async () => {
      order.push('a');
      await tick();
      order.push('a done');
    });
    const b = lock.runAll([3, 1], async () => void order.push('b'));
    const c = lock.run(2, async () => void order.push('c'));
    const d = lock.run(9, async () => void order.push('d'));
    await Promise.all([a, b, c, d]);
    assert.deepEqual(order.slice(0, 2).sort(), ['a', 'd']);
    assert.ok(order.indexOf('b') > order.indexOf('a done'));
    assert.ok(order.indexOf('c') > order.indexOf('a done'));
    assert.equal(lock.size, 0);
  });
});

describe('DeferredSet', () => {
  it('drains the entries made before the call, not those made after', async () => {
    const set = new DeferredSet();
    const first = deferred();
    const early = set.run(() => first.promise);
    let drained = false;
    const wait = set.drained().then(() => {
      drained = true;
    });
    const second = deferred();
    const late = set.run(() => second.promise);
    await tick();
    assert.equal(drained, false);
    first.resolve();
    await early;
    await wait;
    assert.equal(drained, true, 'the later entry is still in flight');
    second.resolve();
    await late;
    await set.drained();
  });
});

describe('QuiesceGate', () => {
  it('waits for the changes inside, holds new ones, then lets them through', async () => {
    const gate = new QuiesceGate();
    const inside = deferred();
    const log: string[] = [];
    const change = gate.pass(async () => {
      await inside.promise;
      log.push('change');
    });
    const quiesced = gate.quiesce(async () => void log.push('quiesced'));
    await tick();
    const later = gate.pass(async () => void log.push('later'));
    await tick();
    assert.deepEqual(log, []);
    inside.resolve();
    await Promise.all([change, quiesced, later]);
    assert.deepEqual(log, ['change', 'quiesced', 'later']);
    assert.equal(gate.active, 0);
  });
});
