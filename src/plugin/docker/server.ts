/**
 * `DockerPluginServer`: Docker's graphdriver plugin protocol over HTTP/1.1 on a UNIX
 * socket (by default /run/docker/plugins/thinp.sock, where dockerd looks for a legacy plugin
 * named `thinp`), mode 0600.
 *
 * The wire, as dockerd 20.10 speaks it (DOCKER.md §1.3–1.5):
 * - every call is `POST /<Method>`; the Host header is whatever dockerd's Go client sends
 *   (a socket path, empty, or a dummy name) and is never checked;
 * - success is status 200 with a JSON body; failure is status 500 with `{"Err": "..."}`
 *   (the message and the fix, as thinp's CLI prints them); an unknown method is 404;
 * - `GraphDriver.Diff` answers 200 with raw tar; an error found before the first byte is an
 *   `{"Err"}` answer, one found later cuts the connection (dockerd then fails the read);
 * - `GraphDriver.ApplyDiff?id=ID&parent=P` reads raw tar (chunked) as its body.
 *
 * `close()` stops accepting and waits for calls in progress.
 */

import { chmod, mkdir, rm } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ThinpError } from '../../util/index.js';
import type { DockerGraphDriver } from './graph-driver.js';
import {
  decodeApplyQuery,
  decodeInit,
  decodeLayerRequest,
  type Method,
  methodOf,
  PLUGIN_CONTENT_TYPE,
  PluginRequestError,
  type PluginResponse,
  parseBody,
} from './protocol.js';

/** The largest JSON body accepted. */
const MAX_JSON_BODY = 1024 * 1024;

export interface DockerPluginServerOptions {
  /** Told about every call: method, milliseconds, and the error if it failed. */
  onCall?: (method: string, ms: number, err?: unknown) => void;
}

export class DockerPluginServer {
  private readonly server: http.Server;
  private socketPath: string | undefined;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly driver: DockerGraphDriver,
    private readonly options: DockerPluginServerOptions = {},
  ) {
    this.server = http.createServer((req, res) => void this.handle(req, res));
  }

  /** Listens on `socket` (a stale socket file is replaced) and makes it mode 0600. */
  async listen(socket: string): Promise<void> {
    await mkdir(path.dirname(socket), { recursive: true, mode: 0o755 });
    await rm(socket, { force: true });
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(socket, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    await chmod(socket, 0o600);
    this.socketPath = socket;
  }

  /** Stops accepting, waits for calls in progress, removes the socket; idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await new Promise<void>((resolve) => {
        this.server.close(() => resolve());
        this.server.closeIdleConnections();
      });
      if (this.socketPath !== undefined) await rm(this.socketPath, { force: true });
    })();
    return this.closing;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const started = Date.now();
    const url = new URL(req.url ?? '/', 'http://plugin');
    const method = methodOf(url.pathname);
    try {
      if (method === undefined) {
        req.resume();
        sendJson(res, 404, { Err: `thinp has no plugin endpoint ${url.pathname}` });
        this.options.onCall?.(url.pathname, Date.now() - started, 'unknown endpoint');
        return;
      }
      if (req.method !== 'POST') {
        req.resume();
        throw new PluginRequestError(`${method} takes POST, not ${req.method}`, {
          hint: `send POST /${method}`,
        });
      }
      await this.dispatch(method, req, res, url.searchParams);
      this.options.onCall?.(method, Date.now() - started);
    } catch (err) {
      this.options.onCall?.(method ?? url.pathname, Date.now() - started, err);
      if (res.headersSent) res.destroy();
      else sendJson(res, 500, { Err: errorText(err) });
    }
  }

  private async dispatch(
    method: Method,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    query: URLSearchParams,
  ): Promise<void> {
    const d = this.driver;
    if (method === 'GraphDriver.ApplyDiff') {
      sendJson(res, 200, await d.applyDiff(decodeApplyQuery(query), req));
      return;
    }
    const body = parseBody(method, await readBody(method, req));
    const layer = (needsId: boolean) => decodeLayerRequest(method, body, needsId);
    switch (method) {
      case 'Plugin.Activate':
        return sendJson(res, 200, d.activate());
      case 'GraphDriver.Init':
        return sendJson(res, 200, await d.init(decodeInit(body)));
      case 'GraphDriver.Capabilities':
        return sendJson(res, 200, d.capabilities());
      case 'GraphDriver.Create':
        return sendJson(res, 200, await d.create(layer(true), false));
      case 'GraphDriver.CreateReadWrite':
        return sendJson(res, 200, await d.create(layer(true), true));
      case 'GraphDriver.Remove':
        return sendJson(res, 200, await d.remove(layer(true)));
      case 'GraphDriver.Get':
        return sendJson(res, 200, await d.get(layer(true)));
      case 'GraphDriver.Put':
        return sendJson(res, 200, await d.put(layer(true)));
      case 'GraphDriver.Exists':
        return sendJson(res, 200, d.exists(layer(true)));
      case 'GraphDriver.Status':
        return sendJson(res, 200, await d.status());
      case 'GraphDriver.GetMetadata':
        return sendJson(res, 200, d.metadata(layer(true)));
      case 'GraphDriver.Cleanup':
        return sendJson(res, 200, await d.cleanup());
      case 'GraphDriver.Changes':
        return sendJson(res, 200, await d.changes(layer(true)));
      case 'GraphDriver.DiffSize':
        return sendJson(res, 200, await d.diffSize(layer(true)));
      case 'GraphDriver.Diff': {
        const tar = await d.diff(layer(true));
        res.writeHead(200, { 'content-type': 'application/x-tar' });
        await pipeline(tar, res);
        return;
      }
    }
  }
}

async function readBody(method: Method, req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_JSON_BODY) {
      throw new PluginRequestError(`${method}: the request body is over ${MAX_JSON_BODY} bytes`, {
        hint: 'send a small JSON object',
      });
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function sendJson(res: http.ServerResponse, status: number, body: PluginResponse): void {
  res.writeHead(status, { 'content-type': PLUGIN_CONTENT_TYPE });
  res.end(`${JSON.stringify(body)}\n`);
}

/** The `Err` text: thinp's message and its fix, as the CLI prints them. */
export function errorText(err: unknown): string {
  if (err instanceof ThinpError) return `thinp: ${err.describe()}`;
  return `thinp: ${err instanceof Error ? err.message : String(err)}`;
}
