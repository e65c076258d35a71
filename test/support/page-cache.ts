import { execFileSync } from 'node:child_process';

/** The bytes of `file` the page cache holds (util-linux fincore). */
export function residentBytes(file: string): number {
  const out = execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', file]);
  return Number(out.toString().trim());
}
