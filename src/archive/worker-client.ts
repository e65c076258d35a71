/**
 * Starts the archive worker (worker.ts) for one request and collects its reply; see
 * worker-protocol.ts for the file descriptors. From dist/ the worker is worker.js run by
 * plain node; from the sources (tests under tsx) it is worker.ts, loaded through tsx.
 * Spawning and piping use no thread-pool work, so the parent never waits on the
 * directories the worker touches.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { InternalError } from '../util/index.js';
import { decodeError } from './errors.js';
import { REPLY_FD, type Reply, type Request } from './worker-protocol.js';

/** How much of the worker's stderr a crash report keeps. */
const STDERR_TAIL = 4096;

export interface Worker {
  child: ChildProcess;
  /** The successful reply; rejects with the worker's error, rebuilt, or a crash report. */
  reply: Promise<Extract<Reply, { ok: true }>>;
}

/** The command that runs the worker next to this module. */
export function workerCommand(): { script: string; execArgv: string[] } {
  if (import.meta.url.endsWith('.ts')) {
    const script = fileURLToPath(new URL('./worker.ts', import.meta.url));
    return { script, execArgv: ['--import', import.meta.resolve('tsx')] };
  }
  return { script: fileURLToPath(new URL('./worker.js', import.meta.url)), execArgv: [] };
}

/** Spawns a worker for `request`; `input`/`output`: whether fd 0 / fd 1 are pipes. */
export function startWorker(request: Request, io: { input: boolean; output: boolean }): Worker {
  const { script, execArgv } = workerCommand();
  const child = spawn(process.execPath, [...execArgv, script, JSON.stringify(request)], {
    stdio: [io.input ? 'pipe' : 'ignore', io.output ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    stderr = (stderr + text).slice(-STDERR_TAIL);
  });
  let replyText = '';
  const replyPipe = child.stdio[REPLY_FD] as NodeJS.ReadableStream;
  replyPipe.setEncoding('utf8');
  replyPipe.on('data', (text: string) => {
    replyText += text;
  });
  const reply = new Promise<Extract<Reply, { ok: true }>>((resolve, reject) => {
    child.once('error', (err) => reject(crash(request, `could not start: ${err.message}`, stderr)));
    child.once('close', (code, signal) => {
      const parsed = parseReply(replyText);
      if (parsed === undefined) {
        reject(crash(request, `exited with ${signal ?? `status ${code}`}`, stderr));
      } else if (parsed.ok) {
        resolve(parsed);
      } else {
        reject(decodeError(parsed.error));
      }
    });
  });
  return { child, reply };
}

function parseReply(text: string): Reply | undefined {
  try {
    const reply = JSON.parse(text) as Reply;
    return typeof reply === 'object' && reply !== null && 'ok' in reply ? reply : undefined;
  } catch {
    return undefined;
  }
}

function crash(request: Request, what: string, stderr: string): InternalError {
  const tail = stderr.trim() === '' ? '' : `: ${stderr.trim()}`;
  return new InternalError(`archive worker (${request.op} ${request.root}) ${what}${tail}`, {
    hint: 'this is a bug in thinp; report it with this message',
  });
}
