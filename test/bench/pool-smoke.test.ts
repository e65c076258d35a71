/**
 * The pool benchmark's harness runs end to end on tiny devices and short phases and writes
 * a complete report. It times nothing: the numbers must only exist and be positive.
 */

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { CHAIN_DEPTH, runPoolBench, SNAPSHOT_BATCHES } from '../../bench/pool.js';
import { tempDir } from '../support/temp.js';

const dir = tempDir('thinp-bench-pool-smoke-');

/** The text of the report's section whose heading starts with `heading`. */
function section(report: string, heading: string): string {
  const start = report.indexOf(`\n### ${heading}`);
  assert.ok(start >= 0, `a section "${heading}"`);
  const end = report.indexOf('\n##', start + 1);
  return report.slice(start, end < 0 ? undefined : end);
}

/** The table rows of `text` that start with `label`, split into their cells. */
function rows(text: string, label: string): string[][] {
  return text
    .split('\n')
    .filter((line) => line.startsWith(`| ${label} `))
    .map((line) =>
      line
        .split('|')
        .slice(1, -1)
        .map((cell) => cell.trim()),
    );
}

/** The number at the start of a cell: `1,234`, `0.58×`, `31.3 µs`. */
function numberIn(cell: string | undefined): number {
  const match = /^([0-9][0-9,]*(?:\.[0-9]+)?)/.exec(cell ?? '');
  assert.ok(match?.[1] !== undefined, `a number in "${cell}"`);
  return Number(match[1].replaceAll(',', ''));
}

describe('npm run bench -- pool', () => {
  it('runs on 8 MiB devices with short phases and writes a report with every section', async () => {
    const root = await dir;
    const resultsDir = path.join(root, 'results');
    const result = await runPoolBench({
      size: 8 * 1024 * 1024,
      seconds: 0.05,
      queueDepth: 4,
      resultsDir,
      tempDir: root,
    });

    assert.equal(path.dirname(result.reportPath), resultsDir);
    assert.match(path.basename(result.reportPath), /^pool-\d{4}-\d{2}-\d{2}-\d{4}\.md$/);
    const report = await readFile(result.reportPath, 'utf8');
    for (const heading of [
      '# thinp pool benchmark: 8.0 MiB devices',
      '## Machine',
      '## Commands',
      '## Results',
      '### Plain file, the limit',
      '### Thin device through the pool API',
      '### Direct mode: the pool on a loop device',
      '### Snapshot creation',
      `### Reads at snapshot depth 1 vs ${CHAIN_DEPTH}`,
      '### Copy-on-write',
      '### The pool at the end',
      '## Notes',
    ]) {
      assert.ok(report.includes(heading), `the report has "${heading}"`);
    }
    for (const fact of ['CPU: ', 'RAM: ', 'kernel: ', 'Node: v', 'disk: ']) {
      assert.ok(report.includes(fact), `the machine section names "${fact}"`);
    }
    assert.ok(
      report.includes('npm run bench -- pool --size 8388608 --seconds 0.05 --queue-depth 4'),
    );
    assert.ok(report.includes('ThinPool.create('), 'the commands say how the pool was made');
    assert.doesNotMatch(report, /NaN|Infinity|undefined/);

    // Each data path workload: a row in the file table and one in the pool table, at queue
    // depth 1 and 4, with positive ops, IOPS, MiB/s and latencies; the pool's with a ratio.
    const fileTable = section(report, 'Plain file, the limit');
    const poolTable = section(report, 'Thin device through the pool API');
    for (const workload of [
      '4 KiB random write, fresh space',
      '4 KiB random overwrite',
      '4 KiB random read',
      '1 MiB sequential write, fresh space',
      '1 MiB sequential read',
    ]) {
      const fileRows = rows(fileTable, workload);
      const poolRows = rows(poolTable, workload);
      assert.deepEqual(
        [...fileRows, ...poolRows].map((cells) => cells[1]),
        ['1', '4', '1', '4'],
        `"${workload}": file and pool rows at queue depth 1 and 4`,
      );
      for (const cells of [...fileRows, ...poolRows]) {
        for (const column of [2, 4, 5, 6, 7]) {
          assert.ok(numberIn(cells[column]) > 0, `"${workload}" column ${column}: ${cells}`);
        }
      }
      for (const cells of poolRows) assert.ok(numberIn(cells[10]) > 0, `a ratio: ${cells}`);
    }

    assert.equal(result.dataPath.length, 10);
    for (const p of result.dataPath) {
      for (const m of [p.file, p.pool]) {
        assert.ok(m.ops > 0 && m.seconds > 0 && m.iops > 0 && m.mibPerSecond > 0, m.workload);
        assert.ok(m.p50 > 0 && m.p99 >= m.p50, `${m.workload} ${m.target}`);
      }
      assert.ok(p.ratio > 0, p.workload);
      assert.equal(p.file.commits, 0, 'a plain file has no commits');
      if (p.workload.includes('write')) {
        assert.ok(p.pool.commits > 0 && p.pool.flushSeconds > 0, `${p.workload}: flushed`);
      }
    }
    const fresh = result.dataPath.filter((p) => p.workload.includes('fresh'));
    for (const p of fresh) assert.ok(p.pool.provisions > 0, `${p.workload}: allocates`);

    // Direct mode: three workloads at depth 1 and 4, each with the loop-mode pool, the pool
    // on the loop device and fio on the raw device measured.
    assert.deepEqual(
      result.direct.map((r) => `${r.workload}@${r.queueDepth}`),
      [
        '4 KiB random read@1',
        '4 KiB random read@4',
        '4 KiB random overwrite@1',
        '4 KiB random overwrite@4',
        '1 MiB sequential write, fresh space@1',
        '1 MiB sequential write, fresh space@4',
      ],
    );
    for (const r of result.direct) {
      assert.ok(r.loop.iops > 0 && r.direct.iops > 0 && r.raw.iops > 0, JSON.stringify(r.raw));
    }

    assert.deepEqual(
      result.snapshots.map((s) => s.snapshots),
      [...SNAPSHOT_BATCHES],
    );
    for (const s of result.snapshots) assert.ok(s.seconds > 0 && s.commitSeconds > 0);
    const snapshotRows = rows(section(report, 'Snapshot creation'), '10,000');
    assert.equal(snapshotRows.length, 1);
    for (const cells of snapshotRows) {
      for (const column of [1, 2, 3, 4]) assert.ok(numberIn(cells[column]) > 0, `${cells}`);
    }

    assert.equal(result.chain.depth, CHAIN_DEPTH);
    assert.ok(result.chain.copies >= CHAIN_DEPTH, 'every level copied what it overwrote');
    assert.equal(result.depth.length, 4);
    for (const d of result.depth) {
      assert.ok(d.shallow.iops > 0 && d.deep.iops > 0 && d.ratio > 0, d.workload);
    }
    const depthTable = section(report, 'Reads at snapshot depth');
    for (const workload of ['4 KiB random read', '1 MiB sequential read']) {
      const found = rows(depthTable, workload);
      assert.deepEqual(
        found.map((cells) => `${cells[1]} ${cells[2]}`),
        ['1 depth 1', `1 depth ${CHAIN_DEPTH}`, '4 depth 1', `4 depth ${CHAIN_DEPTH}`],
      );
      for (const cells of found) assert.ok(numberIn(cells[5]) > 0, `IOPS: ${cells}`);
      for (const cells of found.filter((_, i) => i % 2 === 1)) {
        assert.ok(numberIn(cells[9]) > 0, `a ratio: ${cells}`);
      }
    }

    assert.equal(result.cow.length, 2);
    for (const c of result.cow) {
      assert.ok(c.unshared.iops > 0 && c.shared.iops > 0 && c.ratio > 0, `${c.queueDepth}`);
      assert.equal(c.unshared.copies, 0, 'an unshared device copies nothing');
      assert.equal(c.shared.copies, c.shared.ops, 'every write to the snapshot copies');
    }
    const cowTable = section(report, 'Copy-on-write');
    for (const label of ['origin before it (unshared)', 'snapshot (shared blocks)']) {
      const found = rows(cowTable, label);
      assert.equal(found.length, 2, label);
      for (const cells of found) assert.ok(numberIn(cells[4]) > 0, `IOPS: ${cells}`);
    }
    for (const cells of rows(cowTable, 'snapshot (shared blocks)')) {
      assert.ok(numberIn(cells[9]) > 0 && numberIn(cells[11]) > 0, `copies and ratio: ${cells}`);
    }

    assert.ok(result.end.dataBlocksUsed > 0 && result.end.metadataBlocksUsed > 0);
    assert.ok(result.end.commits > 0 && result.end.provisions > 0 && result.end.copies > 0);
  });
});
