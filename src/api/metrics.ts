/**
 * Prometheus text exposition (format 0.0.4) of the pool: space, per-device mapped bytes,
 * I/O counters and commit latency. `renderMetrics` is a pure function of a snapshot, so
 * its format is testable without a pool; `CommitStats` accumulates commit latency from the
 * pool's 'commit' events.
 */

import type { AutoextendState, DeviceListing } from '../driver/index.js';
import type { IoCounters, PoolStatus, ThinPool } from '../pool/index.js';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Commits seen and their total and largest duration. */
export class CommitStats {
  count = 0;
  totalMs = 0;
  maxMs = 0;

  record(durationMs: number): void {
    this.count++;
    this.totalMs += durationMs;
    this.maxMs = Math.max(this.maxMs, durationMs);
  }

  /** Records every commit of `pool`; returns the detacher. */
  watch(pool: ThinPool): () => void {
    const onCommit = (e: { durationMs: number }) => this.record(e.durationMs);
    pool.on('commit', onCommit);
    return () => pool.off('commit', onCommit);
  }
}

export interface MetricsSnapshot {
  status: PoolStatus;
  devices: readonly DeviceListing[];
  counters: Readonly<IoCounters>;
  commits: Readonly<Pick<CommitStats, 'count' | 'totalMs' | 'maxMs'>>;
  /** The daemon's autoextend, when it runs one. */
  autoextend?: Readonly<AutoextendState>;
}

interface Family {
  name: string;
  type: 'gauge' | 'counter';
  help: string;
  samples: Array<{ labels?: Record<string, string>; value: number }>;
}

/** The snapshot as Prometheus text: HELP and TYPE before each family, one sample a line. */
export function renderMetrics(s: MetricsSnapshot): string {
  return families(s).map(renderFamily).join('');
}

function families(s: MetricsSnapshot): Family[] {
  const g = (name: string, help: string, value: number): Family => ({
    name,
    type: 'gauge',
    help,
    samples: [{ value }],
  });
  const c = (name: string, help: string, value: number): Family => ({
    name,
    type: 'counter',
    help,
    samples: [{ value }],
  });
  return [
    g('thinp_data_used_blocks', 'Data blocks in use.', s.status.data.usedBlocks),
    g('thinp_data_total_blocks', 'Data blocks in the pool.', s.status.data.totalBlocks),
    g('thinp_data_block_size_bytes', 'Size of a data block.', s.status.data.blockSize),
    g('thinp_metadata_used_blocks', 'Metadata blocks in use.', s.status.metadata.usedBlocks),
    g('thinp_metadata_total_blocks', 'Metadata blocks.', s.status.metadata.totalBlocks),
    g('thinp_transaction_id', 'The pool transaction id.', s.status.transactionId),
    g('thinp_read_only', '1 unless the pool is in rw mode.', s.status.mode === 'rw' ? 0 : 1),
    g(
      'thinp_failed',
      '1 once a failed data flush has failed the pool (writes and flushes get EIO).',
      s.status.mode === 'fail' ? 1 : 0,
    ),
    g(
      'thinp_needs_check',
      '1 when the metadata is flagged needs_check.',
      s.status.needsCheck ? 1 : 0,
    ),
    {
      name: 'thinp_device_mapped_bytes',
      type: 'gauge',
      help: 'Bytes a device maps.',
      samples: s.devices.map((d) => ({ labels: { device: d.name }, value: d.mappedBytes })),
    },
    c('thinp_reads_total', 'Read requests.', s.counters.reads),
    c('thinp_writes_total', 'Write requests.', s.counters.writes),
    c('thinp_provisions_total', 'Data blocks provisioned.', s.counters.provisions),
    c('thinp_copies_total', 'Shared blocks copied (copy-on-write).', s.counters.copies),
    c('thinp_discards_total', 'Data blocks discarded.', s.counters.discards),
    c('thinp_commits_total', 'Metadata commits.', s.counters.commits),
    c('thinp_commit_duration_seconds_sum', 'Time spent committing.', s.commits.totalMs / 1000),
    c('thinp_commit_duration_seconds_count', 'Commits timed.', s.commits.count),
    g('thinp_commit_duration_seconds_max', 'The slowest commit.', s.commits.maxMs / 1000),
    ...autoextendFamilies(s.autoextend),
  ];
}

function autoextendFamilies(a: Readonly<AutoextendState> | undefined): Family[] {
  if (a === undefined) return [];
  const spaces = ['data', 'metadata'] as const;
  return [
    {
      name: 'thinp_autoextend_total',
      type: 'counter',
      help: 'Growths of a space by autoextend.',
      samples: spaces.map((space) => ({ labels: { space }, value: a.extensions[space] })),
    },
    {
      name: 'thinp_autoextend_exhausted',
      type: 'gauge',
      help: '1 while a space is past the autoextend threshold with nothing left to grow into.',
      samples: spaces.map((space) => ({ labels: { space }, value: a.exhausted[space] ? 1 : 0 })),
    },
  ];
}

function renderFamily(f: Family): string {
  const lines = [`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`];
  for (const sample of f.samples) {
    lines.push(`${f.name}${renderLabels(sample.labels)} ${renderValue(sample.value)}`);
  }
  return `${lines.join('\n')}\n`;
}

function renderLabels(labels: Record<string, string> | undefined): string {
  if (labels === undefined) return '';
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return `{${parts.join(',')}}`;
}

/** Backslash, double quote and newline are escaped in label values. */
export function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function renderValue(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (!Number.isFinite(n)) return n > 0 ? '+Inf' : '-Inf';
  return String(n);
}
