import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DeferredSet, KeyedLock, Mutex, QuiesceGate } from '../../../src/util/index.js';

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

describe('Mutex', () => {
  it('runs holders one at a time, first come first served, and releases on a throw', async () => {
    const lock = new Mutex();
    const order: string[] = [];
    const gate = deferred();
    const a = lock.run(async () => {
      order.push('a');
      await gate.promise;
      order.push('a done');
    });
    assert.equal(lock.locked, true, 'taken at once when free');
    const b = lock.run(async () => {
      order.push('b');
      throw new Error('b fails');
    });
    const c = lock.run(async () => void order.push('c'));
    await tick();
    assert.deepEqual(order, ['a']);
    gate.resolve();
    await a;
    await assert.rejects(b, /b fails/);
    await c;
    assert.deepEqual(order, ['a', 'a done', 'b', 'c']);
    assert.equal(lock.locked, false);
  });

  it('hands the lock to the next waiter: a caller that comes at the release waits its turn', async () => {
    const lock = new Mutex();
    const order: string[] = [];
    let late: Promise<void> | undefined;
    const a = lock.run(async () => {
      order.push('a');
      await tick();
    });
    const b = lock.run(async () => void order.push('b'));
    // Queued in the same turn as the release of `a`, before `b` has run.
    void a.then(() => {
      late = lock.run(async () => void order.push('late'));
      assert.equal(lock.locked, true);
    });
    await Promise.all([a, b]);
    await late;
    assert.deepEqual(order, ['a', 'b', 'late']);
  });

  it('never lets two holders overlap, and keeps arrival order (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.nat(3), { minLength: 1, maxLength: 12 }), async (yields) => {
        const lock = new Mutex();
        let inside = 0;
        const ran: number[] = [];
        await Promise.all(
          yields.map((n, i) =>
            lock.run(async () => {
              inside++;
              assert.equal(inside, 1);
              ran.push(i);
              for (let k = 0; k < n; k++) await tick();
              inside--;
            }),
          ),
        );
        assert.deepEqual(
          ran,
          yields.map((_, i) => i),
        );
        assert.equal(lock.locked, false);
      }),
      { numRuns: 50 },
    );
  });
});

describe('KeyedLock', () => {
  it('serializes work on one key in arrival order, runs other keys beside it', async () => {
    const lock = new KeyedLock<string>();
    const order: string[] = [];
    const gate = deferred();
    const a = lock.run('k', async () => {
      order.push('a');
      await gate.promise;
    });
    const b = lock.run('k', async () => {
      order.push('b');
      throw new Error('b fails');
    });
    const other = lock.run('x', async () => void order.push('x'));
    const c = lock.run('k', async () => void order.push('c'));
    await other;
    assert.deepEqual(order, ['a', 'x']);
    assert.equal(lock.size, 1);
    gate.resolve();
    await a;
    await assert.rejects(b, /b fails/);
    await c;
    assert.deepEqual(order, ['a', 'x', 'b', 'c']);
    assert.equal(lock.size, 0);
  });

  it('matches one-key-at-a-time FIFO queues for any mix of run and runAll (property)', async () => {
    const callArb = fc.record({
      keys: fc.uniqueArray(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 3 }),
      yields: fc.nat(2),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(callArb, { minLength: 1, maxLength: 10 }), async (calls) => {
        const lock = new KeyedLock<number>();
        const holder = new Map<number, number>();
        const started: number[] = [];
        await Promise.all(
          calls.map((call, i) => {
            const body = async () => {
              for (const k of call.keys) {
                assert.equal(holder.get(k), undefined, `key ${k} held twice`);
                holder.set(k, i);
              }
              started.push(i);
              for (let n = 0; n < call.yields; n++) await tick();
              for (const k of call.keys) holder.delete(k);
            };
            const [only] = call.keys;
            return call.keys.length === 1 && only !== undefined
              ? lock.run(only, body)
              : lock.runAll(call.keys, body);
          }),
        );
        // A call starts after every earlier call that shares a key with it.
        for (const [i, call] of calls.entries()) {
          for (let j = 0; j < i; j++) {
            if (calls[j]?.keys.some((k) => call.keys.includes(k))) {
              assert.ok(started.indexOf(j) < started.indexOf(i), `${j} before ${i}`);
            }
          }
        }
        assert.equal(lock.size, 0);
      }),
      { numRuns: 100 },
    );
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
