/**
 * `ApiServer`: the control API over HTTP/1.1 with JSON bodies, on a UNIX socket (the
 * daemon's ROOT/thinp.sock, chmod 0600 right after listening; the root directory is 0700)
 * or, for metrics only, a TCP port.
 *
 * Contracts:
 * - every response is JSON, except `GET /metrics` (Prometheus text), `GET /events`
 *   (newline-delimited JSON, one event a line, until the client or the server goes), and
 *   the operations whose table entry says bytes or a stream (device data, layer tars);
 * - a request body is read as its operation says: JSON (at most 1 MiB), bytes (at most
 *   MAX_DATA_REQUEST), or handed on as a stream (a layer tar of any size);
 * - a streamed reply that fails part-way is cut off (the connection is destroyed), so a
 *   client never takes half a tar for a whole one;
 * - every failure is `{"error": {"code", "message", "hint"}}` with `toHttpStatus`'s status;
 * - `close()` stops accepting, ends the event streams, lets requests in progress finish,
 *   then resolves.
 */

import { chmod } from 'node:fs/promises';
import http from 'node:http';
import { BadInputError, NotFoundError, ThinpError } from '../util/index.js';
import { toHttpStatus } from './http-status.js';
import { MAX_DATA_REQUEST } from './operations.js';
import { type ApiContext, type ApiResponse, findOperation, route } from './routes.js';

/** The largest request body accepted. */
const MAX_BODY = 1024 * 1024;

export interface ApiServerOptions {
  /** Serve only `GET /metrics` (for a TCP listener). */
  metricsOnly?: boolean;
  /** Told about every failed request (the error as thrown). */
  onError?: (err: unknown, req: { method: string; path: string }) => void;
}

export class ApiServer {
  private readonly server: http.Server;
  private readonly streams = new Set<http.ServerResponse>();
  private closing: Promise<void> | undefined;

  constructor(
    private readonly ctx: ApiContext,
    private readonly options: ApiServerOptions = {},
  ) {
    this.server = http.createServer((req, res) => void this.handle(req, res));
  }

  /** Listens on the UNIX socket `path` and makes it mode 0600. */
  async listenUnix(path: string): Promise<void> {
    await this.listenOn((cb) => this.server.listen(path, cb));
    await chmod(path, 0o600);
  }

  /** Listens on TCP `host:port` (port 0 picks one); resolves with the port. */
  async listenTcp(host: string, port: number): Promise<number> {
    await this.listenOn((cb) => this.server.listen(port, host, cb));
    const address = this.server.address();
    return typeof address === 'object' && address !== null ? address.port : port;
  }

  /** Stops accepting, ends event streams and idle connections; idempotent. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      for (const res of this.streams) res.end();
      this.server.closeIdleConnections();
    });
    return this.closing;
  }

  private listenOn(start: (cb: () => void) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      start(() => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    let path = '/';
    try {
      path = decodeURIComponent(new URL(req.url ?? '/', 'http://thinp').pathname);
      if (this.options.metricsOnly === true && path !== '/metrics') {
        throw new NotFoundError(`there is no resource ${path} here`, { hint: 'GET /metrics' });
      }
      if (path === '/events' && method === 'GET') {
        this.streamEvents(res);
        return;
      }
      const query = new URL(req.url ?? '/', 'http://thinp').searchParams;
      const kind = path === '/metrics' ? 'none' : findOperation(method, path).spec.body;
      const request = { method, path, query, body: undefined as unknown };
      if (kind === 'json') request.body = await readJsonBody(req);
      const bytes = kind === 'bytes' ? await readBody(req, MAX_DATA_REQUEST) : undefined;
      const raw = kind === 'raw' ? req : undefined;
      send(
        res,
        await route(this.ctx, { ...request, ...(bytes && { bytes }), ...(raw && { raw }) }),
      );
    } catch (err) {
      this.options.onError?.(err, { method, path });
      sendError(res, err);
    }
  }

  /** Newline-delimited JSON events until either side goes. */
  private streamEvents(res: http.ServerResponse): void {
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    res.flushHeaders();
    this.streams.add(res);
    const unsubscribe = this.ctx.events.subscribe((e) => res.write(`${JSON.stringify(e)}\n`));
    res.on('close', () => {
      unsubscribe();
      this.streams.delete(res);
    });
    if (this.closing !== undefined) res.end();
  }
}

// ---------------------------------------------------------------------------------------

/** The whole body, refused past `limit` bytes. */
async function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      throw new BadInputError(`the request body is over ${limit} bytes`, {
        hint: 'send less in one request',
      });
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/** The body as JSON, or undefined when empty. */
async function readJsonBody(req: http.IncomingMessage): Promise<unknown> {
  const body = await readBody(req, MAX_BODY);
  if (body.length === 0) return undefined;
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new BadInputError('the request body is not JSON', {
      hint: 'send a JSON object',
      cause: err,
    });
  }
}

function send(res: http.ServerResponse, r: ApiResponse): void {
  if ('text' in r) {
    res.writeHead(r.status, { 'content-type': r.contentType });
    res.end(r.text);
    return;
  }
  if ('empty' in r) {
    res.writeHead(204).end();
    return;
  }
  if ('bytes' in r) {
    res.writeHead(r.status, {
      'content-type': 'application/octet-stream',
      'content-length': r.bytes.length,
    });
    res.end(r.bytes);
    return;
  }
  if ('stream' in r) {
    res.writeHead(r.status, { 'content-type': 'application/x-tar' });
    r.stream.on('error', () => res.destroy());
    r.stream.pipe(res);
    res.on('close', () => r.stream.destroy());
    return;
  }
  const text = `${JSON.stringify(r.json)}\n`;
  res.writeHead(r.status, { 'content-type': 'application/json' });
  res.end(text);
}

/** `{"error": {"code", "message", "hint"}}` for any thrown value. */
export function errorBody(err: unknown): {
  error: { code: string; message: string; hint?: string };
} {
  if (err instanceof ThinpError) {
    return {
      error: {
        code: err.code,
        message: err.message,
        ...(err.hint === undefined ? {} : { hint: err.hint }),
      },
    };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { error: { code: 'INTERNAL', message, hint: 'see the daemon log' } };
}

function sendError(res: http.ServerResponse, err: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  send(res, { status: toHttpStatus(err), json: errorBody(err) });
}
