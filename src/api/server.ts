/**
 * `ApiServer`: the control API over HTTP/1.1 with JSON bodies, on a UNIX socket (the
 * daemon's ROOT/thinp.sock, chmod 0600 right after listening; the root directory is 0700)
 * or, for metrics only, a TCP port.
 *
 * Contracts:
 * - every response is JSON, except `GET /metrics` (Prometheus text) and `GET /events`
 *   (newline-delimited JSON, one event a line, until the client or the server goes);
 * - every failure is `{"error": {"code", "message", "hint"}}` with `toHttpStatus`'s status;
 * - `close()` stops accepting, ends the event streams, lets requests in progress finish,
 *   then resolves.
 */

import { chmod } from 'node:fs/promises';
import http from 'node:http';
import { BadInputError, NotFoundError, ThinpError } from '../util/index.js';
import { matchDataPath, serveDeviceData } from './device-data.js';
import { toHttpStatus } from './http-status.js';
import { matchImageOperation, serveImageOperation } from './image-routes.js';
import { type ApiContext, type ApiResponse, route } from './routes.js';

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
      const data = matchDataPath(path);
      if (data !== undefined && this.options.metricsOnly !== true) {
        const query = new URL(req.url ?? '/', 'http://thinp').searchParams;
        await serveDeviceData(this.ctx.set, data, req, res, query);
        return;
      }
      const body = await readJsonBody(req);
      const operation = matchImageOperation(method, path);
      if (operation !== undefined && this.options.metricsOnly !== true) {
        await serveImageOperation(this.ctx.images, operation, body, res, errorBody);
        return;
      }
      send(res, await route(this.ctx, { method, path, body }));
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

/** The body as JSON, or undefined when empty. */
async function readJsonBody(req: http.IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) {
      throw new BadInputError(`the request body is over ${MAX_BODY} bytes`, {
        hint: 'send less',
      });
    }
    chunks.push(chunk);
  }
  if (size === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
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
