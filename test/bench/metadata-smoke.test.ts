/**
 * The metadata benchmark's harness runs end to end on a small pool and writes a complete
 * report. It times nothing: the numbers must only exist and be positive.
 */

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { runMetadataBench } from '../../bench/metadata.js';
import { tempDir } from '../support/temp.js';

const dir = tempDir('thinp-bench-smoke-');

/** The first number in the table row that starts with `label`. */
function firstNumber(report: string, label: string): number {
  const row = report.split('\n').find((line) => line.startsWith(`| ${label} `));
  assert.ok(row !== undefined, `a table row for "${label}"`);
  const cells = row.split('|').slice(2);
  for (const cell of cells) {
    const match = /^\s*([0-9][0-9,]*(?:\.[0-9]+)?)/.exec(cell);
    if (match?.[1] !== undefined) return Number(match[1].replaceAll(',', ''));
  }
  assert.fail(`no number in the row "${row}"`);
}

describe('npm run bench -- metadata', () => {
  it('runs with 2,000 mappings and writes a report with every section', async () => {
    const root = await dir;
    const resultsDir = path.join(root, 'results');
    const result = await runMetadataBench({ mappings: 2000, resultsDir, tempDir: root });

    assert.equal(path.dirname(result.reportPath), resultsDir);
    assert.match(path.basename(result.reportPath), /^metadata-\d{4}-\d{2}-\d{2}-\d{4}\.md$/);
    const report = await readFile(result.reportPath, 'utf8');
    for (const heading of [
      '# thinp metadata benchmark: 2,000 mappings',
      '## Machine',
      '## Commands',
      '## Results',
      '### Engine throughput',
      '### Commit latency',
      '### Snapshots of the big device',
      '### Memory and metadata file after each phase',
      '### thinp vs thin-provisioning-tools',
      '### Restored metadata files',
      '## Notes',
    ]) {
      assert.ok(report.includes(heading), `the report has "${heading}"`);
    }
    for (const fact of ['CPU: ', 'RAM: ', 'kernel: ', 'Node: v', 'disk: ']) {
      assert.ok(report.includes(fact), `the machine section names "${fact}"`);
    }
    for (const command of [
      'npm run bench -- metadata --mappings 2000',
      'thin_restore -i ',
      'thin_dump ',
      'thin_check ',
    ]) {
      assert.ok(report.includes(command), `the commands include "${command}"`);
    }
    assert.doesNotMatch(report, /NaN|Infinity|undefined/);

    for (const label of [
      'insert, sequential',
      'insert, random order',
      'lookup, random order',
      'lookup, sequential',
      'restore',
      'dump',
      'check',
      '10,000',
      'format',
      'commit latency',
    ]) {
      assert.ok(firstNumber(report, label) > 0, `"${label}" has a positive number`);
    }

    assert.equal(result.throughput.length, 4);
    for (const t of result.throughput) {
      assert.equal(t.count, 2000, t.operation);
      assert.ok(t.seconds > 0 && t.perSecond > 0, t.operation);
    }
    assert.deepEqual(
      result.commits.map((c) => c.changes),
      [1, 100, 10_000],
    );
    for (const c of result.commits) {
      assert.ok(c.commits >= 3 && c.p50 > 0 && c.p99 >= c.p50 && c.max >= c.p99, `${c.changes}`);
    }
    assert.deepEqual(
      result.snapshots.map((s) => s.snapshots),
      [1, 100, 10_000],
    );
    for (const s of result.snapshots) assert.ok(s.seconds > 0 && s.commitSeconds > 0);
    for (const m of result.memory) {
      assert.ok(m.maxRssBytes > 0 && m.heapUsedBytes > 0, m.after);
      assert.ok(m.fileAllocatedBytes > 0 && m.fileApparentBytes > 0, m.after);
    }
    assert.deepEqual(
      result.peer.map((p) => p.operation),
      ['restore', 'dump', 'check'],
    );
    for (const p of result.peer) {
      assert.ok(p.thinpSeconds > 0 && p.peerSeconds > 0 && p.ratio > 0, p.operation);
    }
    assert.equal(result.xml.mappings, 2000);
    assert.ok(result.dumpsIdentical, "thin_dump and thinp's dump agree byte for byte");
    assert.ok(result.roundTripIdentical, 'the dump of the restored file is the generated XML');
    assert.ok(result.thinpRestorePassesThinCheck, "thin_check accepts thinp's restore");
  });
});
