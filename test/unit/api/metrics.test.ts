import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { escapeLabel, type MetricsSnapshot, renderMetrics } from '../../../src/api/index.js';

const snapshot: MetricsSnapshot = {
  status: {
    transactionId: 7,
    mode: 'rw',
    needsCheck: false,
    heldRoot: 0,
    data: { usedBlocks: 3, totalBlocks: 1024, blockSize: 65536 },
    metadata: { usedBlocks: 20, totalBlocks: 2048 },
  },
  devices: [
    {
      name: 'a',
      id: 1,
      size: 1 << 20,
      mappedBytes: 131072,
      exclusiveBytes: 131072,
      sharedBytes: 0,
      origin: null,
    },
    {
      name: 'we"ird\\',
      id: 2,
      size: 1 << 20,
      mappedBytes: 0,
      exclusiveBytes: 0,
      sharedBytes: 0,
      origin: 'a',
    },
  ],
  counters: { reads: 5, writes: 9, provisions: 3, copies: 0, discards: 1, commits: 4 },
  commits: { count: 4, totalMs: 20, maxMs: 9 },
};

describe('renderMetrics', () => {
  const text = renderMetrics(snapshot);
  const lines = text.split('\n');

  it('has the space, device, I/O and commit families', () => {
    for (const line of [
      'thinp_data_used_blocks 3',
      'thinp_data_total_blocks 1024',
      'thinp_metadata_used_blocks 20',
      'thinp_metadata_total_blocks 2048',
      'thinp_device_mapped_bytes{device="a"} 131072',
      'thinp_device_mapped_bytes{device="we\\"ird\\\\"} 0',
      'thinp_reads_total 5',
      'thinp_writes_total 9',
      'thinp_commits_total 4',
      'thinp_commit_duration_seconds_sum 0.02',
      'thinp_commit_duration_seconds_count 4',
    ]) {
      assert.ok(lines.includes(line), `missing: ${line}`);
    }
  });

  it('says when the pool has failed and needs a check', () => {
    assert.ok(lines.includes('thinp_failed 0'));
    assert.ok(lines.includes('thinp_needs_check 0'));
    const failed = renderMetrics({
      ...snapshot,
      status: { ...snapshot.status, mode: 'fail', needsCheck: true },
    }).split('\n');
    for (const line of ['thinp_failed 1', 'thinp_needs_check 1', 'thinp_read_only 1']) {
      assert.ok(failed.includes(line), `missing: ${line}`);
    }
  });

  it('follows the text format: HELP and TYPE before samples, one sample a line', () => {
    assert.ok(text.endsWith('\n'));
    const sample =
      /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? [-+]?(\d+(\.\d+)?([eE][-+]?\d+)?|NaN|\+Inf|-Inf)$/;
    let family = '';
    for (const line of lines.filter((l) => l !== '')) {
      const help = /^# HELP (\S+) .+$/.exec(line);
      const type = /^# TYPE (\S+) (gauge|counter)$/.exec(line);
      if (help) family = help[1] ?? '';
      else if (type) assert.equal(type[1], family);
      else {
        assert.match(line, sample);
        assert.ok(line.startsWith(family), `${line} outside its family ${family}`);
      }
    }
  });

  it('escapes label values', () => {
    assert.equal(escapeLabel('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
  });
});
