import assert from 'node:assert/strict';
import { test } from 'node:test';
import { matchesAny, parseFilters } from '../../../src/plugin/index.js';

const snapshot = (fields: Record<string, string>) => (path: readonly string[]) =>
  fields[path.join('.')];

const a = snapshot({
  name: 'a',
  parent: 'p',
  kind: 'active',
  'labels.containerd.io/gc.root': 'x',
  'labels.l': '2',
});
const b = snapshot({ name: 'b', parent: '', kind: 'committed' });

const cases: Array<[string[], boolean, boolean]> = [
  [[], true, true],
  [['kind==active'], true, false],
  [['name==b'], false, true],
  [['parent==p'], true, false],
  [['parent!=""'], true, false],
  [['labels."containerd.io/gc.root"==x'], true, false],
  [['labels.l'], true, false],
  [['labels.l==2'], true, false],
  [['labels.l==3'], false, false],
  [['kind==active,name==b'], false, false],
  [['kind==active', 'name==b'], true, true],
  [['name~=^[ab]$'], true, true],
  [['name~=/^b/'], false, true],
  [[' name == a , kind == active '], true, false],
];

for (const [filters, matchA, matchB] of cases) {
  test(`filter ${JSON.stringify(filters)}`, () => {
    const parsed = parseFilters(filters);
    assert.equal(matchesAny(parsed, a), matchA, 'a');
    assert.equal(matchesAny(parsed, b), matchB, 'b');
  });
}

test('malformed filters name the column', () => {
  assert.throws(() => parseFilters(['name==']), /a value is expected at column 7/);
  assert.throws(() => parseFilters(['labels."open']), /not closed/);
  assert.throws(() => parseFilters(['==a']), /a field name is expected at column 1/);
  assert.throws(() => parseFilters(['name~=(']), /regular expression/);
  assert.throws(() => parseFilters(['name==a,']), /a field name is expected at column 9/);
});
