/**
 * The layer rules bite: dependency-cruiser, with the project's own configuration, flags each
 * kind of forbidden import in a small tree made for the purpose; and docs/ARCHITECTURE.md
 * states the same rules as scripts/layers.cjs.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access, copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { tempDir } from '../support/temp.js';

const { layers } = createRequire(import.meta.url)('../../scripts/layers.cjs') as {
  layers: Record<string, string[]>;
};
const project = path.resolve('.');

/** Files of the made-up tree, each importing what its name says. */
const TREE: Record<string, string> = {
  'src/config/index.ts': 'export const c = 1;\n',
  'src/config/load.ts': 'export const l = 1;\n',
  'src/pdata/index.ts': 'export const p = 1;\n',
  'src/pool/index.ts': 'export const q = 1;\n',
  'src/widgets/index.ts': 'export const w = 1;\n',
  'src/util/index.ts': "import { c } from '../config/index.js';\nexport const u = c;\n",
  'src/block/index.ts': "import { p } from '../pdata/index.js';\nexport const b = p;\n",
  'src/nbd/index.ts': "import { q } from '../pool/index.js';\nexport const n = q;\n",
  'src/cli/index.ts': [
    "import { c } from '../config/index.js';",
    "import { l } from '../config/load.js';",
    "import { w } from '../widgets/index.js';",
    'export const x = [c, l, w];',
    '',
  ].join('\n'),
};

interface Violation {
  from: string;
  to: string;
  rule: { name: string };
}

test('dependency-cruiser flags every kind of forbidden import, and nothing else', async () => {
  const dir = await tempDir();
  for (const [file, text] of Object.entries(TREE)) {
    await mkdir(path.dirname(path.join(dir, file)), { recursive: true });
    await writeFile(path.join(dir, file), text);
  }
  await mkdir(path.join(dir, 'scripts'));
  await copyFile(
    path.join(project, '.dependency-cruiser.cjs'),
    path.join(dir, '.dependency-cruiser.cjs'),
  );
  await copyFile(path.join(project, 'scripts/layers.cjs'), path.join(dir, 'scripts/layers.cjs'));
  await copyFile(path.join(project, 'tsconfig.json'), path.join(dir, 'tsconfig.json'));
  const depcruise = path.join(project, 'node_modules/.bin/depcruise');
  const result = await promisify(execFile)(
    depcruise,
    ['src', '--config', '.dependency-cruiser.cjs', '--output-type', 'json'],
    { cwd: dir },
  ).catch((error: { stdout: string }) => error);
  const violations = (JSON.parse(result.stdout).summary.violations as Violation[])
    .map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`)
    .sort();
  assert.deepEqual(violations, [
    'layer-block: src/block/index.ts -> src/pdata/index.ts',
    'layer-nbd: src/nbd/index.ts -> src/pool/index.ts',
    'layer-unknown: src/cli/index.ts -> src/widgets/index.ts',
    'layer-util: src/util/index.ts -> src/config/index.ts',
    'public-index-only: src/cli/index.ts -> src/config/load.ts',
  ]);
});

test('docs/ARCHITECTURE.md states the rules of scripts/layers.cjs', async () => {
  const doc = await readFile('docs/ARCHITECTURE.md', 'utf8');
  const rows = [...doc.matchAll(/^\| `(\w+)\/`\s*\|[^|]+\|\s*([^|]+?)\s*\|$/gm)];
  const documented = Object.fromEntries(
    rows.map(([, layer, imports = '']) => [
      layer,
      imports.trim() === 'nothing' ? [] : imports.split(',').map((name) => name.trim()),
    ]),
  );
  assert.deepEqual(documented, layers);
});

test('the folders under src/ are exactly the layers, each with an index.ts', async () => {
  const folders = (await readdir('src', { withFileTypes: true }))
    .filter((e) => e.isDirectory())
    .map((e) => e.name);
  assert.deepEqual(folders.sort(), Object.keys(layers).sort());
  for (const layer of folders) {
    await access(path.join('src', layer, 'index.ts'));
  }
});
