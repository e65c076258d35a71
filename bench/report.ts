/**
 * Markdown reports for the benchmarks: the machine they ran on, the exact commands, the
 * tables and the notes, written to `bench/results/NAME-YYYY-MM-DD-HHMM.md`. Also the
 * number formats the tables share, so that every report reads the same way.
 */

import { execFile } from 'node:child_process';
import { mkdir, statfs, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pathExists } from '../src/util/index.js';

const run = promisify(execFile);

export interface MachineInfo {
  cpuModel: string;
  /** Logical CPUs the process may use. */
  cores: number;
  ramBytes: number;
  /** `uname -sr` and the kernel's build string. */
  kernel: string;
  node: string;
  v8: string;
  /** The folder whose file system the benchmark wrote to, and its free space. */
  diskDir: string;
  diskFreeBytes: number;
  diskTotalBytes: number;
  /** The commit the tree was at, when git can tell. */
  commit: string | undefined;
}

/** What this machine is, with the free space of the file system holding `diskDir`. */
export async function machineInfo(diskDir: string): Promise<MachineInfo> {
  const cpus = os.cpus();
  const fs = await statfs(diskDir);
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cores: os.availableParallelism(),
    ramBytes: os.totalmem(),
    kernel: `${os.type()} ${os.release()} (${os.version()})`,
    node: process.version,
    v8: process.versions.v8,
    diskDir,
    diskFreeBytes: fs.bavail * fs.bsize,
    diskTotalBytes: fs.blocks * fs.bsize,
    commit: await gitCommit(),
  };
}

async function gitCommit(): Promise<string | undefined> {
  try {
    const { stdout } = await run('git', ['rev-parse', '--short=12', 'HEAD'], {
      cwd: fileURLToPath(new URL('.', import.meta.url)),
    });
    return stdout.trim() || undefined;
  } catch {
    return undefined;
  }
}

export function machineLines(m: MachineInfo): string[] {
  return [
    `- CPU: ${m.cpuModel}, ${m.cores} logical cores`,
    `- RAM: ${formatBytes(m.ramBytes)}`,
    `- kernel: ${m.kernel}`,
    `- Node: ${m.node} (V8 ${m.v8})`,
    `- disk: ${formatBytes(m.diskFreeBytes)} free of ${formatBytes(m.diskTotalBytes)} on the file system of ${m.diskDir}`,
    `- thinp commit: ${m.commit ?? 'unknown (not a git checkout)'}`,
  ];
}

export type Align = 'left' | 'right';

/**
 * A Markdown table whose columns are padded to line up in a terminal too. `align` gives
 * each column's alignment (left when missing).
 */
export function markdownTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
  align: readonly Align[] = [],
): string {
  const widths = headers.map((h, i) =>
    Math.max(3, h.length, ...rows.map((row) => (row[i] ?? '').length)),
  );
  const cell = (text: string, i: number): string => {
    const width = widths[i] ?? 3;
    return align[i] === 'right' ? text.padStart(width) : text.padEnd(width);
  };
  const line = (cells: readonly string[]): string =>
    `| ${headers.map((_, i) => cell(cells[i] ?? '', i)).join(' | ')} |`;
  const rule = `| ${widths
    .map((w, i) => (align[i] === 'right' ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w)))
    .join(' | ')} |`;
  return [line(headers), rule, ...rows.map(line)].join('\n');
}

export interface ReportSection {
  heading: string;
  body: string;
}

export interface Report {
  title: string;
  /** When the run started. */
  date: Date;
  machine: MachineInfo;
  /** The commands the run was started with and the ones it ran, exactly. */
  commands: readonly string[];
  /** The results: usually tables, each with its own heading. */
  results: readonly ReportSection[];
  /** What each number means and how it was measured. */
  notes: readonly string[];
}

/** The report as a Markdown document: Machine, Commands, Results, Notes. */
export function renderReport(report: Report): string {
  const parts = [
    `# ${report.title}`,
    `Run started ${report.date.toISOString()}.`,
    '## Machine',
    machineLines(report.machine).join('\n'),
    '## Commands',
    ['```sh', ...report.commands, '```'].join('\n'),
    '## Results',
    ...report.results.flatMap((s) => [`### ${s.heading}`, s.body]),
    '## Notes',
    report.notes.map((n) => `- ${n}`).join('\n'),
  ];
  return `${parts.join('\n\n')}\n`;
}

/** `NAME-YYYY-MM-DD-HHMM.md`, in local time. */
export function reportFileName(name: string, date: Date): string {
  const two = (n: number): string => String(n).padStart(2, '0');
  const day = `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())}`;
  return `${name}-${day}-${two(date.getHours())}${two(date.getMinutes())}.md`;
}

/**
 * Writes `text` to `dir/NAME-YYYY-MM-DD-HHMM.md` (with `-2`, `-3`… when two runs start in
 * the same minute) and returns the path.
 */
export async function writeReport(
  dir: string,
  name: string,
  date: Date,
  text: string,
): Promise<string> {
  await mkdir(dir, { recursive: true });
  const base = reportFileName(name, date).replace(/\.md$/, '');
  for (let n = 1; ; n++) {
    const file = path.join(dir, n === 1 ? `${base}.md` : `${base}-${n}.md`);
    if (!(await pathExists(file))) {
      await writeFile(file, text, { flag: 'wx' });
      return file;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Number formats

/** An integer with thousands separators: 1,000,000. */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** A rate per second, rounded to an integer unless it is small. */
export function formatRate(perSecond: number): string {
  return perSecond >= 100 ? formatCount(perSecond) : perSecond.toPrecision(3);
}

/** A duration given in seconds, in s, ms or µs with three significant digits. */
export function formatSeconds(seconds: number): string {
  if (seconds >= 1) return `${seconds.toFixed(2)} s`;
  if (seconds >= 1e-3) return `${(seconds * 1e3).toPrecision(3)} ms`;
  return `${(seconds * 1e6).toPrecision(3)} µs`;
}

/** Bytes in binary units with one decimal: 12.3 MiB. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** A ratio with two decimals and a trailing ×. */
export function formatRatio(ratio: number): string {
  return `${ratio.toFixed(2)}×`;
}
