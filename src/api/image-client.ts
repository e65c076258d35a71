/**
 * The image and container operations through a daemon's control API: the same interface as
 * the local stores (graph/image-operations.ts), one request per call, made from the same
 * table as the routes. Progress lines of a streamed answer go to the caller's `onProgress`.
 */

import http from 'node:http';
import { IMAGE_OPERATION_ROUTES, type ImageOperations } from '../graph/index.js';
import { InternalError } from '../util/index.js';
import type { ApiClient } from './client.js';
import { errorOf } from './client.js';

type Call = (a: unknown, onProgress?: (p: unknown) => void) => Promise<unknown>;

/** `ImageOperations` that run in the daemon `client` talks to. */
export function remoteImageOperations(client: ApiClient, socketPath: string): ImageOperations {
  const ops: Record<string, Call> = {};
  for (const [name, r] of Object.entries(IMAGE_OPERATION_ROUTES)) {
    ops[name] =
      r.progress === true
        ? (a, onProgress) => streamed(socketPath, r.method, r.path, a, onProgress)
        : (a) => client.call(r.method, r.path, r.method === 'GET' ? undefined : a);
  }
  return ops as unknown as ImageOperations;
}

function streamed(
  socketPath: string,
  method: string,
  path: string,
  body: unknown,
  onProgress?: (p: unknown) => void,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath, method, path, headers: { 'content-type': 'application/json' } },
      (res) => {
        if (res.statusCode !== 200) {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            text += c;
          });
          res.on('end', () => reject(errorOf(res.statusCode ?? 0, text)));
          return;
        }
        readLines(res, onProgress).then(resolve, reject);
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body ?? {}));
  });
}

async function readLines(
  res: http.IncomingMessage,
  onProgress?: (p: unknown) => void,
): Promise<unknown> {
  let pending = '';
  res.setEncoding('utf8');
  for await (const chunk of res as AsyncIterable<string>) {
    pending += chunk;
    for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
      const line = JSON.parse(pending.slice(0, nl)) as {
        progress?: unknown;
        result?: unknown;
        error?: unknown;
      };
      pending = pending.slice(nl + 1);
      if (line.progress !== undefined) onProgress?.(line.progress);
      else if (line.error !== undefined) throw errorOf(500, JSON.stringify(line));
      else if ('result' in line) return line.result;
    }
  }
  throw new InternalError('the daemon ended the answer without a result', {
    hint: 'see the daemon log; it may have stopped',
  });
}
