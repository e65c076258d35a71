import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MemoryDevice } from '../../src/block/index.js';
import {
  BlockManager,
  type BTreeInfo,
  btree,
  MetadataSpaceMap,
  plainValue,
  TransactionManager,
} from '../../src/pdata/index.js';

async function newTree(
  cacheBlocks = 64,
): Promise<{ info: BTreeInfo; root: number; sm: MetadataSpaceMap }> {
  const tm = new TransactionManager(new BlockManager(new MemoryDevice(64 << 20), { cacheBlocks }));
  const sm = await MetadataSpaceMap.create(tm, 16_384, 1);
  const info: BTreeInfo = { tm, valueType: plainValue(8) };
  const root = await btree.emptyTree(info);
  return { info, root, sm };
}

function value(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(n % 2 ** 32, 0);
  return b;
}

/**
 * The tree's shape obeys every rule of the format: sorted keys, keys inside the parent's
 * range, uniform depth, non-root nodes at least a third full, no empty internal node.
 * Returns the number of nodes.
 */
async function assertShape(info: BTreeInfo, root: number): Promise<number> {
  let leafDepth = -1;
  let nodes = 0;
  const visit = async (loc: number, lo: number, hi: number, depth: number, isRoot: boolean) => {
    nodes++;
    const node = await btree.readNode(info, loc);
    const n = node.nrEntries;
    if (!isRoot)
      assert.ok(n >= Math.floor(node.maxEntries / 3), `node ${loc} has only ${n} entries`);
    for (let i = 0; i < n; i++) {
      const k = node.key(i);
      assert.ok(k >= lo && k < hi, `key ${k} of node ${loc} outside [${lo}, ${hi})`);
      if (i > 0) assert.ok(k > node.key(i - 1), `keys out of order in node ${loc}`);
    }
    if (node.isLeaf) {
      if (leafDepth < 0) leafDepth = depth;
      assert.equal(depth, leafDepth, 'leaves at different depths');
      return;
    }
    assert.ok(n > 0, `internal node ${loc} is empty`);
    const children: Array<[number, number, number]> = [];
    for (let i = 0; i < n; i++) {
      children.push([node.valueU64(i), node.key(i), i + 1 < n ? node.key(i + 1) : hi]);
    }
    for (const [child, clo, chi] of children) await visit(child, clo, chi, depth + 1, false);
  };
  await visit(root, 0, Number.MAX_SAFE_INTEGER, 0, true);
  return nodes;
}

/** The value `lookup` returns for `key` under `model`. */
function modelValue(model: Map<number, number>, key: number): Buffer | undefined {
  const v = model.get(key);
  return v === undefined ? undefined : value(v);
}

async function contents(info: BTreeInfo, root: number): Promise<Array<[number, number]>> {
  const out: Array<[number, number]> = [];
  await btree.walk(info, root, (k, v) => {
    out.push([k, v.readUInt32LE(0)]);
  });
  return out;
}

type Op =
  | { kind: 'insert'; key: number; value: number }
  | { kind: 'insertNow'; key: number; value: number }
  | { kind: 'makeRoomNow'; key: number; value: number }
  | { kind: 'remove'; key: number }
  | { kind: 'removeRange'; key: number; length: number }
  | { kind: 'end' };

const arbOps = (keys: number): fc.Arbitrary<Op[]> =>
  fc.array(
    fc.oneof(
      {
        weight: 6,
        arbitrary: fc.record({
          kind: fc.constant('insert' as const),
          key: fc.nat(keys),
          value: fc.nat(),
        }),
      },
      {
        weight: 3,
        arbitrary: fc.record({
          kind: fc.constant('insertNow' as const),
          key: fc.nat(keys),
          value: fc.nat(),
        }),
      },
      {
        weight: 8,
        arbitrary: fc.record({
          kind: fc.constant('makeRoomNow' as const),
          key: fc.nat(keys),
          value: fc.nat(),
        }),
      },
      {
        weight: 3,
        arbitrary: fc.record({ kind: fc.constant('remove' as const), key: fc.nat(keys) }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant('removeRange' as const),
          key: fc.nat(keys),
          length: fc.integer({ min: 1, max: 2000 }),
        }),
      },
      { weight: 1, arbitrary: fc.constant({ kind: 'end' as const }) },
    ),
    { minLength: 100, maxLength: 3000, size: 'max' },
  );

describe('the btree against a Map', () => {
  it('agrees after random inserts, removals and range removals, keeping its shape', async () => {
    // insertNow: done at once (the root stays) or refused having changed nothing, then
    // inserted the usual way; both must happen.
    // makeRoomNow: room made at once (a full leaf shared out or split, the root unchanged),
    // or refused having allocated nothing; all three must happen.
    const now = { done: 0, refused: 0 };
    const room = { made: 0, had: 0, refused: 0 };
    await fc.assert(
      fc.asyncProperty(arbOps(20_000), async (ops) => {
        let { info, root, sm } = await newTree();
        const base = sm.nrAllocated;
        const model = new Map<number, number>();
        for (const op of ops) {
          if (op.kind === 'makeRoomNow') {
            const allocated = sm.nrAllocated;
            const had = btree.canInsertNow(info, root, op.key);
            const made = btree.makeRoomNow(info, root, op.key);
            assert.equal(btree.canInsertNow(info, root, op.key), made, 'room made means room');
            if (had) room.had++;
            else if (made) room.made++;
            else {
              assert.equal(sm.nrAllocated, allocated, 'refused: nothing allocated');
              room.refused++;
            }
            if (made) {
              assert.equal(btree.insertNow(info, root, op.key, value(op.value)), true);
            } else {
              root = (await btree.insert(info, root, op.key, value(op.value))).root;
            }
            model.set(op.key, op.value);
          } else if (op.kind === 'insertNow') {
            const can = btree.canInsertNow(info, root, op.key);
            const done = btree.insertNow(info, root, op.key, value(op.value));
            assert.equal(done, can, 'canInsertNow foretells insertNow');
            if (done) {
              assert.ok(!model.has(op.key), 'insertNow inserts only absent keys');
              now.done++;
            } else {
              assert.deepEqual(await btree.lookup(info, root, op.key), modelValue(model, op.key));
              now.refused++;
              root = (await btree.insert(info, root, op.key, value(op.value))).root;
            }
            model.set(op.key, op.value);
          } else if (op.kind === 'insert') {
            const r = await btree.insert(info, root, op.key, value(op.value));
            assert.equal(r.inserted, !model.has(op.key));
            root = r.root;
            model.set(op.key, op.value);
          } else if (op.kind === 'remove') {
            const r = await btree.remove(info, root, op.key);
            assert.equal(r.removed !== undefined, model.delete(op.key));
            root = r.root;
          } else if (op.kind === 'removeRange') {
            let expected = 0;
            for (const k of [...model.keys()]) {
              if (k >= op.key && k < op.key + op.length) expected += model.delete(k) ? 1 : 0;
            }
            const r = await btree.removeRange(info, root, op.key, op.key + op.length);
            assert.equal(r.count, expected);
            root = r.root;
          } else {
            await info.tm.endOperation();
          }
        }
        await info.tm.endOperation();
        const nodes = await assertShape(info, root);
        assert.equal(sm.nrAllocated, base + nodes - 1, 'every node counted once, none leaked');
        const want = [...model.entries()].sort((a, b) => a[0] - b[0]);
        assert.deepEqual(await contents(info, root), want);
      }),
      { numRuns: 25, seed: 99 },
    );
    assert.ok(now.done > 0 && now.refused > 0, `insertNow ${JSON.stringify(now)}`);
    assert.ok(room.made > 0 && room.had > 0 && room.refused > 0, JSON.stringify(room));
  });

  it('inserts at once only into an owned path with room, and only an absent key', async () => {
    let { info, root } = await newTree();
    const max = (await btree.readNode(info, root)).maxEntries;
    for (let k = 0; k < max - 1; k++) {
      assert.equal(btree.insertNow(info, root, 2 * k, value(k)), true, `key ${2 * k}`);
    }
    assert.equal(btree.insertNow(info, root, 2, value(9)), false, 'a present key');
    assert.deepEqual(await btree.lookup(info, root, 2), value(1), 'left as it was');
    assert.equal(btree.insertNow(info, root, 7, value(7)), true, 'the last free slot');
    assert.equal(btree.canInsertNow(info, root, 9), false, 'a full leaf must split');
    assert.equal(btree.insertNow(info, root, 9, value(9)), false);
    root = (await btree.insert(info, root, 9, value(9))).root;
    await info.tm.endOperation();
    assert.equal(btree.insertNow(info, root, 11, value(11)), true, 'split: room again');
    // Once committed, the nodes are no longer this transaction's: they must be shadowed.
    info.tm.forgetShadows();
    assert.equal(btree.canInsertNow(info, root, 13), false, 'a committed path');
    assert.equal(btree.insertNow(info, root, 13, value(13)), false);
    assert.equal(await btree.lookup(info, root, 13), undefined);
    root = (await btree.insert(info, root, 13, value(13))).root;
    assert.equal(btree.insertNow(info, root, 15, value(15)), true, 'shadowed: owned again');
    await info.tm.endOperation();
    await assertShape(info, root);
    assert.equal((await contents(info, root)).length, max + 4);
  });

  it('makes room at once in a full leaf below the root: shared with a neighbour, else split', async () => {
    let { info, root, sm } = await newTree();
    const base = sm.nrAllocated;
    const max = (await btree.readNode(info, root)).maxEntries;
    const model = new Map<number, number>();
    for (let k = 0; k <= max; k++) {
      root = (await btree.insert(info, root, 2 * k, value(k))).root;
      model.set(2 * k, k);
    }
    await info.tm.endOperation();
    assert.equal(await assertShape(info, root), 3, 'a root over two leaves');
    assert.equal(btree.makeRoomNow(info, root, 1), true, 'a leaf with room: nothing to do');
    // Appends at once into the right leaf: full, then shared with the left, then split.
    let key = 2 * max + 1;
    const append = () => {
      const made = btree.makeRoomNow(info, root, key);
      assert.equal(made, true, `room for ${key}`);
      assert.equal(btree.insertNow(info, root, key, value(key)), true);
      model.set(key, key);
      key += 2;
    };
    while (btree.canInsertNow(info, root, key)) append();
    const allocated = sm.nrAllocated;
    append();
    assert.equal(sm.nrAllocated, allocated, 'shared with its owned neighbour: no new node');
    assert.equal(await assertShape(info, root), 3);
    while (sm.nrAllocated === allocated) append();
    assert.equal(sm.nrAllocated, allocated + 1, 'no neighbour with room: split');
    assert.equal(await assertShape(info, root), 4);
    // Committed: the path is no longer this transaction's.
    info.tm.forgetShadows();
    const before = sm.nrAllocated;
    assert.equal(btree.makeRoomNow(info, root, key), false, 'a committed path');
    assert.equal(sm.nrAllocated, before, 'refused: nothing allocated');
    // The usual insert shadows the path to the last leaf; fill it at once: its neighbour is
    // still the committed one, so sharing copies it at once.
    root = (await btree.insert(info, root, key, value(key))).root;
    model.set(key, key);
    key += 2;
    const rootNode = async () => btree.readNode(info, root);
    const n = (await rootNode()).nrEntries;
    const neighbour = (await rootNode()).valueU64(n - 2);
    while (btree.canInsertNow(info, root, key)) append();
    append();
    const moved = (await rootNode()).valueU64(n - 2);
    assert.notEqual(moved, neighbour, 'the committed neighbour was shadowed at once');
    assert.equal(info.tm.refCount(neighbour), 0, 'and the original let go');
    await info.tm.endOperation();
    const nodes = await assertShape(info, root);
    assert.equal(sm.nrAllocated, base + nodes - 1, 'every node counted once, none leaked');
    const want = [...model.entries()].sort((a, b) => a[0] - b[0]);
    assert.deepEqual(await contents(info, root), want);
  });

  it('refuses to make room at once when a block would have to be read or written out', async () => {
    // A cache of 16 blocks, the smallest: a tree of many leaves cannot stay in it.
    let { info, root } = await newTree(16);
    for (let k = 0; k < 20_000; k++) root = (await btree.insert(info, root, k * 4, value(k))).root;
    await info.tm.endOperation();
    let refused = 0;
    for (let k = 0; k < 20_000; k += 97) {
      const key = k * 4 + 1;
      const full = !btree.canInsertNow(info, root, key);
      if (btree.makeRoomNow(info, root, key)) {
        assert.equal(btree.insertNow(info, root, key, value(key)), true);
      } else {
        if (full) refused++;
        root = (await btree.insert(info, root, key, value(key))).root;
        await info.tm.endOperation();
      }
    }
    assert.ok(refused > 0, 'some leaves or their neighbours were not cached');
    await assertShape(info, root);
  });

  it('grows to four levels, then shrinks back to one leaf, freeing every node', async () => {
    let { info, root, sm } = await newTree(256);
    const base = sm.nrAllocated;
    const n = 120_000;
    const order = (i: number) => (i * 7_919) % n;
    for (let i = 0; i < n; i++) {
      root = (await btree.insert(info, root, order(i) * 3, value(i))).root;
      if (i % 1000 === 0) await info.tm.endOperation();
    }
    await info.tm.endOperation();
    assert.ok((await btree.depth(info, root)) >= 3, 'the tree has at least three levels');
    const nodes = await assertShape(info, root);
    assert.equal(sm.nrAllocated, base + nodes - 1, 'every node is counted once, nothing leaked');
    for (let i = 0; i < n; i++) {
      root = (await btree.remove(info, root, order(i) * 3)).root;
      if (i % 1000 === 0) await info.tm.endOperation();
    }
    await info.tm.endOperation();
    assert.equal(await btree.depth(info, root), 1);
    assert.deepEqual(await contents(info, root), []);
    assert.equal(sm.nrAllocated, base, 'every node but the root leaf is free again');
  });

  it('packs sequential appends into nearly full leaves', async () => {
    let { info, root } = await newTree(256);
    const n = 50_000;
    for (let i = 0; i < n; i++) {
      root = (await btree.insert(info, root, i, value(i))).root;
      if (i % 1000 === 0) await info.tm.endOperation();
    }
    await info.tm.endOperation();
    const nodes = await assertShape(info, root);
    assert.ok(nodes < (n / 252) * 1.15, `${nodes} nodes for ${n} keys of 252 per leaf`);
  });
});
