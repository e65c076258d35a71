import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runLocked } from '../../../src/graph/keyed-locks.js';
import { checkLayerId, isScratchName, scratchName } from '../../../src/graph/layer-ids.js';
import { MountCounts } from '../../../src/graph/mount-counts.js';
import type { MountedFs } from '../../../src/mount/index.js';
import { KeyedLock } from '../../../src/util/index.js';

/** A mount as a value: MountCounts only keeps it and hands it back. */
const mount = (target: string) => ({ target }) as unknown as MountedFs;

describe('MountCounts', () => {
  it('counts gets and hands back the mount at the last put', () => {
    const counts = new MountCounts();
    assert.equal(counts.references('a'), 0);
    counts.add('a', mount('/m/a'), '/m/a/rootfs');
    assert.equal(counts.acquire('a'), '/m/a/rootfs');
    assert.equal(counts.references('a'), 2);
    assert.equal(counts.release('a'), undefined);
    const last = counts.release('a');
    assert.equal(last?.mounted.target, '/m/a');
    assert.equal(counts.references('a'), 0);
    assert.deepEqual(counts.ids(), []);
  });

  it('refuses a put without a get, and a second add', () => {
    const counts = new MountCounts();
    assert.throws(() => counts.release('a'), /layer a is not mounted/);
    assert.throws(() => counts.acquire('a'), /layer a is not mounted/);
    counts.add('a', mount('/m/a'), '/m/a/rootfs');
    assert.throws(() => counts.add('a', mount('/m/a'), '/m/a/rootfs'), /mounted already/);
  });

  it('drains every mount whatever its count', () => {
    const counts = new MountCounts();
    counts.add('b', mount('/m/b'), '/m/b/rootfs');
    counts.add('a', mount('/m/a'), '/m/a/rootfs');
    counts.acquire('a');
    assert.deepEqual(
      counts.drain().map(([id, m]) => [id, m.references]),
      [
        ['b', 1],
        ['a', 2],
      ],
    );
    assert.equal(counts.references('a'), 0);
  });
});

describe('runLocked', () => {
  it('takes several keys in sorted order, so crossing callers cannot deadlock', async () => {
    const lock = new KeyedLock<string>();
    const order: string[] = [];
    const slow = (tag: string) => async () => {
      order.push(`${tag}+`);
      await new Promise((r) => setTimeout(r, 10));
      order.push(`${tag}-`);
    };
    await Promise.all([
      runLocked(lock, ['child', 'parent'], slow('one')),
      runLocked(lock, ['parent', 'child'], slow('two')),
      runLocked(lock, ['other'], slow('three')),
    ]);
    assert.deepEqual(order.slice(0, 2).sort(), ['one+', 'three+']);
    assert.ok(order.indexOf('one-') < order.indexOf('two+'), order.join(' '));
    assert.equal(lock.size, 0);
  });
});

describe('layer ids', () => {
  it('refuses what cannot be a layer id, naming why', () => {
    checkLayerId('a'.repeat(64));
    checkLayerId('abc-init');
    assert.throws(() => checkLayerId(''), /is empty/);
    assert.throws(() => checkLayerId('base'), /names the base device/);
    assert.throws(() => checkLayerId('a~b'), /contains '\/' or '~'/);
    assert.throws(() => checkLayerId('a/b'), /contains '\/' or '~'/);
    assert.throws(() => checkLayerId('.hidden'), /starts with '\.'/);
    assert.throws(() => checkLayerId('x'.repeat(201)), /201 bytes long/);
  });

  it('names scratch devices so that no layer id can be one', () => {
    assert.equal(scratchName('l1'), 'l1~apply');
    assert.ok(isScratchName(scratchName('l1')));
    assert.ok(!isScratchName('l1'));
  });
});
