/**
 * What the benchmarks that run a real daemon against its peers share: timing one operation,
 * the median of repeats, whether the kernel has overlayfs, and the table that sets thinp's
 * numbers beside each peer's with the ratio.
 */

import { readFile } from 'node:fs/promises';
import { formatRatio, formatSeconds, markdownTable } from './report.js';

/** Seconds `fn` took. */
export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

/** Whether the kernel lists overlayfs (its absence leaves the peer out, and says so). */
export async function hasOverlay(): Promise<boolean> {
  return /\toverlay$/m.test(await readFile('/proc/filesystems', 'utf8').catch(() => ''));
}

/** One operation: its seconds per subject, and the bytes it moved when it is a rate. */
export interface PeerRow {
  operation: string;
  seconds: ReadonlyMap<string, number>;
  bytes?: number;
}

const MiB = 1024 * 1024;

/**
 * A table of `subjects[0]` (thinp) against each other subject: time (or MiB/s) and the ratio,
 * peer ÷ thinp for times, which is thinp ÷ peer for rates: above 1 means thinp is faster.
 */
export function peerTable(
  subjects: readonly string[],
  rows: readonly PeerRow[],
  repeats: number,
): string {
  const [own, ...peers] = subjects as [string, ...string[]];
  const cells = rows.map((row) => {
    const s = (name: string) => row.seconds.get(name) ?? Number.NaN;
    const show = (name: string) =>
      row.bytes === undefined
        ? formatSeconds(s(name))
        : `${(row.bytes / MiB / s(name)).toFixed(1)} MiB/s`;
    return [
      row.operation,
      show(own),
      ...peers.flatMap((p) => [show(p), formatRatio(s(p) / s(own))]),
    ];
  });
  const headers = ['operation', own, ...peers.flatMap((p) => [p, `${p} vs ${own}`])];
  const align = headers.map((_, i) => (i === 0 ? ('left' as const) : ('right' as const)));
  return `${markdownTable(headers, cells, align)}\n\n(${repeats} repeats; medians)`;
}
