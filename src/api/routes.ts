/**
 * The control API's resources, as a function from a parsed request to a response, with no
 * HTTP in sight (server.ts does the wire, tests call `route` directly). Every resource but
 * two is an operation of the table (operation-table.ts), carried out by a StorageEngine on
 * the daemon's device set and layer store:
 *
 *     GET /metrics   Prometheus text
 *     GET /events    (streamed by server.ts)
 *
 * Failures are thrown as `ThinpError`s; the server maps them with `toHttpStatus`.
 */

import { Readable } from 'node:stream';
import type { Config } from '../config/index.js';
import type { AutoextendState, DeviceSet } from '../driver/index.js';
import type { ImagesAndContainers, ThinLayerStore } from '../graph/index.js';
import { BadInputError, NotFoundError } from '../util/index.js';
import { StorageEngine } from './engine.js';
import type { EventHub } from './events.js';
import { type CommitStats, METRICS_CONTENT_TYPE, renderMetrics } from './metrics.js';
import { matchPath, OPERATIONS, type OperationSpec, type WireRequest } from './operation-table.js';
import type { OperationName } from './operations.js';

/** What the routes work on: the daemon's open device set, layer store and observers. */
export interface ApiContext {
  config: Config;
  set: DeviceSet;
  layers?: ThinLayerStore;
  /** The images and containers on the layer store (image-operations.ts). */
  images?: () => Promise<ImagesAndContainers>;
  events: EventHub;
  commits: CommitStats;
  /** The daemon's autoextend state, when it runs one. */
  autoextend?: Readonly<AutoextendState>;
  /** Called after each change the API made, for the daemon's log. */
  onChange?: (event: string, fields: Record<string, unknown>) => void;
}

export interface ApiRequest {
  method: string;
  /** The path without the query, e.g. `/devices/scratch` (percent-encoding undone). */
  path: string;
  /** The parsed JSON body, or undefined when there was none. */
  body: unknown;
  query?: URLSearchParams;
  /** The body as a stream, for operations that stream it (a tar). */
  raw?: Readable;
  /** The body read whole, for operations that take bytes. */
  bytes?: Buffer;
}

export type ApiResponse =
  | { status: number; json: unknown }
  | { status: number; text: string; contentType: string }
  | { status: number; bytes: Buffer }
  | { status: number; stream: Readable }
  | { status: 204; empty: true };

/** An operation of the table and its path parameters. */
export interface FoundOperation {
  name: OperationName;
  spec: OperationSpec<OperationName>;
  params: string[];
}

const ENGINES = new WeakMap<ApiContext, StorageEngine>();

function engineOf(ctx: ApiContext): StorageEngine {
  let engine = ENGINES.get(ctx);
  if (engine === undefined) {
    engine = new StorageEngine(ctx);
    ENGINES.set(ctx, engine);
  }
  return engine;
}

/**
 * The operation `method path` names; NotFoundError for an unknown path, BadInputError for
 * a method the path does not take.
 */
export function findOperation(method: string, path: string): FoundOperation {
  const matches: FoundOperation[] = [];
  for (const name of Object.keys(OPERATIONS) as OperationName[]) {
    const spec = OPERATIONS[name] as OperationSpec<OperationName>;
    const params = matchPath(spec, path);
    if (params !== undefined) matches.push({ name, spec, params });
  }
  const allowed = [...new Set(matches.map((m) => m.spec.method))];
  if (path === '/metrics') allowed.push('GET');
  if (allowed.length === 0) {
    throw new NotFoundError(`there is no resource ${path}`, {
      hint: 'see GET /pool, /info, /devices, /layers, /metrics, /events',
    });
  }
  const hit = matches.find((m) => m.spec.method === method);
  if (hit === undefined) {
    throw new BadInputError(`${method} is not allowed on ${path}`, {
      hint: `use ${allowed.join(', ')}`,
    });
  }
  return hit;
}

/** Runs the resource `req` names. */
export async function route(ctx: ApiContext, req: ApiRequest): Promise<ApiResponse> {
  if (req.path === '/metrics' && req.method === 'GET') return metrics(ctx);
  const { name, spec, params } = findOperation(req.method, req.path);
  const wire: WireRequest = {
    params,
    query: req.query ?? new URLSearchParams(),
    json: req.body,
    raw: req.raw ?? Readable.from([]),
    bytes: req.bytes ?? Buffer.alloc(0),
  };
  const args = spec.decode(wire);
  const engine = engineOf(ctx) as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const result = await (engine[name] as (...a: unknown[]) => Promise<unknown>).apply(engine, args);
  switch (spec.reply) {
    case 'none':
      return { status: 204, empty: true };
    case 'bytes':
      return { status: 200, bytes: result as Buffer };
    case 'stream':
      return { status: 200, stream: result as Readable };
    default: {
      const json = spec.toJson === undefined ? result : spec.toJson(result as never, args);
      return { status: spec.status ?? 200, json };
    }
  }
}

async function metrics(ctx: ApiContext): Promise<ApiResponse> {
  const text = renderMetrics({
    status: ctx.set.status(),
    devices: await ctx.set.list(),
    counters: ctx.set.pool.counters,
    commits: ctx.commits,
    ...(ctx.autoextend === undefined ? {} : { autoextend: ctx.autoextend }),
  });
  return { status: 200, text, contentType: METRICS_CONTENT_TYPE };
}
