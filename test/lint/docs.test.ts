import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { OPTION_FIELDS, OPTIONS } from '../../src/config/index.js';

test('docs/configuration.md describes every storage option', async () => {
  const doc = await readFile('docs/configuration.md', 'utf8');
  const missing = OPTION_FIELDS.map((field) => OPTIONS[field].key).filter(
    (key) => !doc.includes(`\`${key}\``),
  );
  assert.deepEqual(missing, []);
});

test('the README gives the two commands a newcomer runs', async () => {
  const readme = await readFile('README.md', 'utf8');
  assert.match(readme, /^npm ci && npm start\b/m);
  assert.match(readme, /^npm ci && npm test\b/m);
});
