/**
 * Raw bytes of a device over the control API, so `thinp device read` and `device write`
 * work while the daemon holds the pool:
 *
 *     GET /devices/NAME/data?offset=O&length=L   the bytes (at most 32 MiB a request)
 *     PUT /devices/NAME/data?offset=O            writes the body (at most 32 MiB)
 *     POST /devices/NAME/flush                    makes every completed write durable
 *
 * The device is held open (busy) for the duration of each request.
 */

import type http from 'node:http';
import type { DeviceSet } from '../driver/index.js';
import type { ThinDevice } from '../pool/index.js';
import { BadInputError } from '../util/index.js';

/** The largest read or write one request carries. */
export const MAX_DATA_REQUEST = 32 * 1024 * 1024;

const DATA_PATH = /^\/devices\/([^/]+)\/(data|flush)$/;

/** The device name and verb of a data path, or undefined for any other path. */
export function matchDataPath(path: string): { name: string; verb: 'data' | 'flush' } | undefined {
  const m = DATA_PATH.exec(path);
  if (m === null) return undefined;
  return { name: m[1] as string, verb: m[2] as 'data' | 'flush' };
}

/** Serves one data request; throws ThinpErrors for the server to map. */
export async function serveDeviceData(
  set: DeviceSet,
  target: { name: string; verb: 'data' | 'flush' },
  req: http.IncomingMessage,
  res: http.ServerResponse,
  query: URLSearchParams,
): Promise<void> {
  const dev = set.open(target.name);
  try {
    const method = req.method ?? 'GET';
    if (target.verb === 'flush' && method === 'POST') {
      await dev.flush();
      res.writeHead(204).end();
    } else if (target.verb === 'data' && method === 'GET') {
      await sendBytes(dev, query, res);
    } else if (target.verb === 'data' && method === 'PUT') {
      await receiveBytes(dev, query, req, res);
    } else {
      throw new BadInputError(`${method} is not a verb of ${req.url ?? ''}`, {
        hint: 'GET or PUT …/data, POST …/flush',
      });
    }
  } finally {
    await set.release(target.name);
  }
}

async function sendBytes(dev: ThinDevice, query: URLSearchParams, res: http.ServerResponse) {
  const offset = numberParam(query, 'offset', 0);
  const length = numberParam(query, 'length', Math.min(MAX_DATA_REQUEST, dev.size - offset));
  checkLength(length);
  const buf = Buffer.allocUnsafe(length);
  await dev.read(buf, offset);
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': length });
  res.end(buf);
}

async function receiveBytes(
  dev: ThinDevice,
  query: URLSearchParams,
  req: http.IncomingMessage,
  res: http.ServerResponse,
) {
  const offset = numberParam(query, 'offset', 0);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    checkLength(size);
    chunks.push(chunk);
  }
  await dev.write(Buffer.concat(chunks, size), offset);
  res.writeHead(204).end();
}

function numberParam(query: URLSearchParams, key: string, fallback: number): number {
  const text = query.get(key);
  if (text === null) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n)) {
    throw new BadInputError(`${key}=${text} is not a byte count`, { hint: `give ${key} in bytes` });
  }
  return n;
}

function checkLength(length: number): void {
  if (length < 0 || length > MAX_DATA_REQUEST) {
    throw new BadInputError(`a data request of ${length} bytes is out of range`, {
      hint: `move at most ${MAX_DATA_REQUEST} bytes a request`,
    });
  }
}
