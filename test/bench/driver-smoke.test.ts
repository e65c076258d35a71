/**
 * The driver benchmark's harness runs end to end on a small image and writes a complete
 * report. It times nothing: the numbers must only exist and be positive.
 */

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { runDriverBench } from '../../bench/driver.js';
import { assertNoLeaks } from '../support/mount-leaks.js';
import { tempDir } from '../support/temp.js';

const dir = await tempDir('thinp-bench-driver-smoke-');

describe('npm run bench -- driver', () => {
  it('loads, creates, mounts, commits and removes on thinp and on plain directories, and reports them', async () => {
    const resultsDir = path.join(dir, 'results');
    const result = await runDriverBench({ size: 1024 * 1024, resultsDir, tempDir: dir });
    assert.match(path.basename(result.reportPath), /^driver-\d{4}-\d{2}-\d{2}-\d{4}\.md$/);
    assert.ok(result.archiveBytes > 1024 * 1024);
    for (const times of [result.thinp, result.plain]) {
      for (const key of ['load', 'create', 'commit', 'remove'] as const) {
        assert.ok(times[key] > 0, `${key} took some time`);
      }
    }
    assert.ok((result.thinp.mount ?? 0) > 0 && (result.thinp.unmount ?? 0) > 0);
    const report = await readFile(result.reportPath, 'utf8');
    for (const row of [
      'image load (MB/s of tar)',
      'container create',
      'container mount',
      'container commit',
      'remove container and images',
    ]) {
      assert.match(
        report,
        new RegExp(`\\| ${row.replace(/[()]/g, '\\$&')} +\\| +[0-9.]+ (MB/s|s|ms|µs) +\\|`),
        row,
      );
    }
    assert.match(report, /## Notes/);
    await assertNoLeaks(dir);
  });
});
