/**
 * The NBD benchmark's harness runs end to end against the real peers (fio, qemu-nbd,
 * qemu-img, qemu-io, nbdkit) on a tiny export, 1 s fio jobs, a short snapshot chain and a
 * few snapshots, and writes a complete report. It times nothing: the numbers must only exist
 * and be positive. A missing peer fails the test, naming its Debian package.
 */

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  type FioResult,
  medianRun,
  meetsGoal,
  runNbdBench,
  SERVERS,
  WORKLOADS,
} from '../../bench/nbd.js';
import { requireTool } from '../support/daemon.js';
import { tempDir } from '../support/temp.js';

const dir = tempDir('thinp-bench-nbd-smoke-');

/** The text of the report's section whose heading starts with `heading`. */
function section(report: string, heading: string): string {
  const start = report.indexOf(`\n### ${heading}`);
  assert.ok(start >= 0, `a section "${heading}"`);
  const end = report.indexOf('\n### ', start + 1);
  const next = report.indexOf('\n## ', start + 1);
  const stop = [end, next].filter((i) => i >= 0).sort((a, b) => a - b)[0];
  return report.slice(start, stop);
}

/** The table rows of `text` that start with `label`, split into their cells. */
function rows(text: string, label: string): string[][] {
  return text
    .split('\n')
    .filter((line) => line.startsWith(`| ${label}`) && !line.startsWith('| --'))
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

describe('medianRun', () => {
  const run = (iops: number): FioResult => ({
    iops,
    mibPerSecond: iops / 256,
    p99: 1 / iops,
    ios: iops * 5,
    seconds: 5,
    exhausted: false,
  });

  it('takes the run of median IOPS whole, with the lowest and highest', () => {
    const m = medianRun([run(300), run(100), run(200)]);
    assert.equal(m.iops, 200);
    assert.equal(m.p99, 1 / 200, 'the same run, not a mix');
    assert.deepEqual(m.spread, { min: 100, max: 300, runs: 3 });
    assert.equal(medianRun([run(40), run(10)]).iops, 10, 'the lower middle of an even count');
    assert.throws(() => medianRun([]), /no fio run/);
  });
});

describe('npm run bench -- nbd', () => {
  it('runs thinp, qemu-nbd and nbdkit on a tiny export and writes a report with every section', async () => {
    for (const [program, debianPackage] of [
      ['fio', 'fio'],
      ['qemu-nbd', 'qemu-utils'],
      ['qemu-img', 'qemu-utils'],
      ['qemu-io', 'qemu-utils'],
      ['nbdkit', 'nbdkit'],
    ] as const) {
      await requireTool(program, debianPackage);
    }
    const root = await dir;
    const resultsDir = path.join(root, 'results');
    const result = await runNbdBench({
      size: 8 * 1024 * 1024,
      seconds: 1,
      queueDepth: 4,
      repeats: 2,
      chainDepths: [1, 3],
      snapshots: 5,
      resultsDir,
      tempDir: root,
    });

    assert.equal(path.dirname(result.reportPath), resultsDir);
    assert.match(path.basename(result.reportPath), /^nbd-\d{4}-\d{2}-\d{2}-\d{4}\.md$/);
    const report = await readFile(result.reportPath, 'utf8');
    for (const heading of [
      '# thinp NBD benchmark vs qemu-nbd and nbdkit: 8.0 MiB',
      '## Machine',
      '## Commands',
      '## Results',
      '### The data path through fio',
      '### Ratios (IOPS, thinp ÷ peer)',
      '### 4 KiB random reads at snapshot depth 1, 3',
      '### Creating 5 snapshots',
      '### Profiles where thinp is below the goal',
      '## Notes',
    ]) {
      assert.ok(report.includes(heading), `the report has "${heading}"`);
    }
    for (const fact of ['CPU: ', 'RAM: ', 'kernel: ', 'Node: v', 'disk: ']) {
      assert.ok(report.includes(fact), `the machine section names "${fact}"`);
    }
    // The exact commands: every server and every fio job.
    assert.ok(
      report.includes(
        'npm run bench -- nbd --size 8388608 --seconds 1 --queue-depth 4 --repeats 2',
      ),
    );
    for (const command of [
      'qemu-nbd --socket=',
      '--cache=writeback --aio=threads',
      'nbdkit --foreground',
      'daemon &',
      'device create vol --size',
      "fio --name=thinp-fresh-qd1 --ioengine=nbd '--uri=nbd+unix:///vol?socket=",
      'fio --name=qemu-nbd-seqread-qd4 --ioengine=nbd',
      'fio --name=nbdkit-randread-qd4 --ioengine=nbd',
      'qemu-img create -q -f qcow2 -o cluster_size=65536',
    ]) {
      assert.ok(report.includes(command), `the commands include "${command}"`);
    }
    assert.doesNotMatch(report, /NaN|Infinity|undefined/);

    const table = section(report, 'The data path through fio');
    for (const workload of WORKLOADS) {
      const found = rows(table, workload.label);
      assert.deepEqual(
        found.map((cells) => `${cells[1]} ${cells[2]}`),
        [1, 4].flatMap((qd) => SERVERS.map((s) => `${qd} ${s}`)),
        `"${workload.label}": a row per server at queue depth 1 and 4`,
      );
      for (const cells of found) {
        for (const column of [3, 5, 6]) {
          assert.ok(numberIn(cells[column]) > 0, `"${workload.label}" column ${column}: ${cells}`);
        }
        // Both runs: the lowest and the highest IOPS, around the median.
        const [low, high] = (cells[4] ?? '').split(' – ').map(numberIn);
        assert.ok(low !== undefined && high !== undefined && low > 0 && low <= high, `${cells}`);
        if (cells[2] === 'thinp') {
          assert.ok(numberIn(cells[7]) > 0 && numberIn(cells[8]) > 0, `ratios: ${cells}`);
        }
      }
    }
    assert.equal(result.dataPath.length, WORKLOADS.length * 2);
    for (const row of result.dataPath) {
      for (const server of SERVERS) {
        const r = row.results[server];
        assert.ok(r.iops > 0 && r.mibPerSecond > 0 && r.p99 > 0 && r.ios > 0, server);
        assert.equal(r.spread?.runs, 2, `${server}: the median of both runs`);
      }
      assert.ok(row.vsQemu > 0 && row.vsNbdkit > 0, row.workload);
    }

    assert.deepEqual(
      result.depth.map((d) => `${d.depth}/${d.queueDepth}`),
      ['1/1', '1/4', '3/1', '3/4'],
    );
    for (const d of result.depth) assert.ok(d.thinp.iops > 0 && d.qcow2.iops > 0);
    const depthTable = section(report, '4 KiB random reads at snapshot depth');
    for (const depth of ['1', '3']) {
      const found = rows(depthTable, '').filter((cells) => cells[0] === depth);
      assert.equal(found.length, 2, `depth ${depth} at two queue depths`);
      for (const cells of found) {
        for (const column of [2, 3, 4, 5, 6, 7, 8]) {
          assert.ok(numberIn(cells[column]) > 0, `depth column ${column}: ${cells}`);
        }
      }
    }

    assert.equal(result.snapshots.length, 2);
    for (const s of result.snapshots) assert.ok(s.count === 5 && s.seconds > 0, s.target);
    const snapshotTable = section(report, 'Creating 5 snapshots');
    for (const label of ['thinp', 'qemu-img']) {
      const line = snapshotTable.split('\n').find((l) => l.startsWith(`| ${label}`));
      assert.ok(line !== undefined, `a row for ${label}`);
      const cells = line
        .split('|')
        .slice(1, -1)
        .map((cell) => cell.trim());
      for (const column of [1, 2, 3, 4, 5]) assert.ok(numberIn(cells[column]) > 0, `${cells}`);
    }

    const profiles = section(report, 'Profiles where thinp is below the goal');
    const slower = result.dataPath.filter((r) => !meetsGoal(r));
    assert.equal(result.profiles.length, slower.length, 'a profile for every row below the goal');
    for (const p of result.profiles) {
      assert.ok(p.sampledSeconds > 0 && p.top.length > 0, p.workload);
      assert.ok(profiles.includes(p.sentence), 'the sentence on where the time goes');
    }
    if (slower.length === 0) assert.match(profiles, /no profile was taken/);
  });
});
