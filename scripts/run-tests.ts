/**
 * Runs the test suite with Node's own test runner (whose summary CI reads), loading
 * TypeScript through tsx. Node 20's --test takes no globs, so this finds the files.
 *
 *     tsx scripts/run-tests.ts            every test/**\/*.test.ts
 *     tsx scripts/run-tests.ts test/unit  only those under test/unit
 */

import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import path from 'node:path';

async function testFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((entry) => entry.isFile() && entry.name.endsWith('.test.ts'))
    .map((entry) => path.join(entry.parentPath, entry.name))
    .sort();
}

const roots = process.argv.slice(2);
const files = (await Promise.all((roots.length > 0 ? roots : ['test']).map(testFiles))).flat();
if (files.length === 0) {
  console.error(`thinp: no test files under ${roots.join(', ') || 'test'}`);
  process.exit(1);
}
const child = spawn(process.execPath, ['--import', 'tsx', '--test', ...files], {
  stdio: 'inherit',
});
child.on('exit', (code, signal) => {
  process.exitCode = code ?? (signal ? 1 : 0);
});
