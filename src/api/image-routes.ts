/**
 * The control API's image and container resources, made from the operations table
 * (graph/image-operations.ts): `GET /images`, `POST /images/load`, `POST /containers/create`
 * and the rest, each a JSON body in and a JSON result out. Operations that report progress
 * (image load and save) answer with newline-delimited JSON instead, as soon as they start:
 * `{"progress": {...}}` lines (at most 5 a second), then one `{"result": ...}` or
 * `{"error": {...}}` line, so a long load keeps the client informed and can still fail.
 */

import type http from 'node:http';
import { IMAGE_OPERATION_ROUTES, type ImageOperations } from '../graph/index.js';
import { UnavailableError } from '../util/index.js';

type OperationName = keyof ImageOperations;

/** The operation at `method path`, if it is one. */
export function matchImageOperation(method: string, path: string): OperationName | undefined {
  for (const [name, r] of Object.entries(IMAGE_OPERATION_ROUTES)) {
    if (r.method === method && r.path === path) return name as OperationName;
  }
  return undefined;
}

/** Runs operation `name` with `body` and writes its answer to `res`. */
export async function serveImageOperation(
  ops: ImageOperations | undefined,
  name: OperationName,
  body: unknown,
  res: http.ServerResponse,
  errorBody: (err: unknown) => unknown,
): Promise<void> {
  if (ops === undefined) {
    throw new UnavailableError('this daemon has no images or containers', {
      hint: 'run a daemon of this build of thinp',
    });
  }
  const args = (body ?? {}) as never;
  const run = ops[name] as (a: never, onProgress?: (p: unknown) => void) => Promise<unknown>;
  if (IMAGE_OPERATION_ROUTES[name].progress !== true) {
    const result = await run.call(ops, args);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify(result ?? {})}\n`);
    return;
  }
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  res.flushHeaders();
  let last = 0;
  const onProgress = (progress: unknown) => {
    const now = Date.now();
    if (now - last < 200) return;
    last = now;
    res.write(`${JSON.stringify({ progress })}\n`);
  };
  try {
    const result = await run.call(ops, args, onProgress);
    res.end(`${JSON.stringify({ result: result ?? {} })}\n`);
  } catch (err) {
    res.end(`${JSON.stringify(errorBody(err))}\n`);
  }
}
