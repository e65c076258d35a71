/**
 * The archive benchmark's harness runs end to end on a 1 MiB tree and writes a complete
 * report. It times nothing: the numbers must only exist and be positive.
 */

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { runArchiveBench } from '../../bench/archive.js';
import { tempDir } from '../support/temp.js';

const dir = await tempDir('thinp-bench-archive-smoke-');

describe('npm run bench -- archive', () => {
  it('runs on a 1 MiB tree and writes a report with every row', { timeout: 300_000 }, async () => {
    const result = await runArchiveBench({
      size: 1024 * 1024,
      resultsDir: path.join(dir, 'results'),
      tempDir: dir,
    });
    const report = await readFile(result.reportPath, 'utf8');
    for (const heading of ['## Machine', '## Commands', '## Results', '## Notes'])
      assert.ok(report.includes(heading), heading);
    for (const row of ['applyLayer', 'exportDiff', 'listChanges', 'diffSize']) {
      const line = report.split('\n').find((l) => l.startsWith(`| ${row}`));
      assert.ok(line !== undefined, `a row for ${row}`);
      const time = /\| +([0-9.]+) (s|ms|µs) +\|/.exec(line);
      assert.ok(time !== null && Number(time[1]) > 0, `a positive time in ${line}`);
    }
    assert.match(result.text, /applyLayer: [0-9.]+ [KMG]?i?B\/s of tar/);
  });
});
