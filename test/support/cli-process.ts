/**
 * The built `thinp` (dist/, made by `npm run build`) as a real process: arguments, raw
 * bytes on stdin, raw bytes back from stdout, the exit status or the signal that ended it.
 */

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';

export const THINP_BIN = path.resolve('dist/cli/main.js');

export interface ProcessResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  /** stdout as bytes, and as text. */
  bytes: Buffer;
  stdout: string;
  stderr: string;
}

export interface ProcessOptions {
  cwd: string;
  /** Arguments put before the command's own (`--root R`, `--storage-opt K=V`, ...). */
  globalArgs?: readonly string[];
  env?: Record<string, string>;
  input?: Uint8Array;
  /** Sends SIGKILL after this many milliseconds. */
  killAfterMs?: number;
}

/** Runs `thinp args` to completion. */
export async function runThinp(
  args: readonly string[],
  options: ProcessOptions,
): Promise<ProcessResult> {
  const child = spawn(process.execPath, [THINP_BIN, ...(options.globalArgs ?? []), ...args], {
    cwd: options.cwd,
    env: { PATH: '', ...options.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  child.stdin.on('error', () => undefined);
  child.stdin.end(options.input ?? Buffer.alloc(0));
  const timer =
    options.killAfterMs === undefined
      ? undefined
      : setTimeout(() => child.kill('SIGKILL'), options.killAfterMs);
  const [status, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
  if (timer !== undefined) clearTimeout(timer);
  const bytes = Buffer.concat(out);
  return { status, signal, bytes, stdout: bytes.toString('utf8'), stderr };
}
