/** The check's result and its human-readable text. */

import type { Problem } from './problems.js';

export interface SpaceSummary {
  free: number;
  total: number;
}

export interface CheckReport {
  /** Every problem found, in the order found: superblock, trees, space maps. */
  problems: Problem[];
  transactionId?: number;
  /** Metadata blocks: free ones counted in the bitmaps (or `nr_allocated` if unreadable). */
  metadata?: SpaceSummary;
  data?: SpaceSummary;
  /** Thin devices in the checked mapping tree. */
  devices: number;
  /** Mappings of all devices together (a mapping shared by two devices counts twice). */
  mappings: number;
}

/**
 * The report as text: a summary, then one line per problem grouped by area, each naming its
 * block, e.g. "  thin device 0: bad checksum in btree node (block 10)", and a verdict.
 */
export function formatReport(report: CheckReport): string {
  const lines = summaryLines(report);
  let area: string | undefined;
  for (const problem of report.problems) {
    if (problem.area !== area) {
      area = problem.area;
      lines.push(`${area}:`);
    }
    lines.push(`  ${problemLine(problem)}`);
  }
  lines.push(verdict(report.problems));
  return `${lines.join('\n')}\n`;
}

function summaryLines(report: CheckReport): string[] {
  const lines: string[] = [];
  if (report.transactionId !== undefined) lines.push(`transaction id: ${report.transactionId}`);
  if (report.metadata !== undefined) lines.push(`metadata: ${space(report.metadata)}`);
  if (report.data !== undefined) lines.push(`data: ${space(report.data)}`);
  lines.push(`devices: ${report.devices}, mappings: ${report.mappings}`);
  return lines;
}

function space(s: SpaceSummary): string {
  return `${s.free} of ${s.total} blocks free`;
}

/** One problem as a line: the message, its block, and "(non-fatal)" when it is. */
export function problemLine(problem: Problem): string {
  const block = problem.block === undefined ? '' : ` (block ${problem.block})`;
  const severity = problem.severity === 'fatal' ? '' : ' [non-fatal]';
  return `${problem.message}${block}${severity}`;
}

function verdict(problems: readonly Problem[]): string {
  if (problems.length === 0) return 'no problems found';
  const fatal = problems.filter((p) => p.severity === 'fatal').length;
  const plural = problems.length === 1 ? 'problem' : 'problems';
  return `${problems.length} ${plural} found, ${fatal} fatal`;
}
