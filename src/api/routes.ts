/**
 * The control API's resources, as a function from a parsed request to a response, with no
 * HTTP in sight (server.ts does the wire, tests call `route` directly):
 *
 *     GET    /pool          the pool's status, as `thinp pool status --json`
 *     POST   /pool/resize   {dataSize} or {metadataSize} in bytes (or "10G"); the new status
 *     GET    /info          Docker's devicemapper section, as `thinp info --json`
 *     GET    /devices       as `thinp device list --json`
 *     POST   /devices       {name, size} or {name, origin}: 201 and the device
 *     DELETE /devices/NAME  {outcome: 'removed' | 'deferred'}
 *     GET    /metrics       Prometheus text
 *     GET|PUT /devices/NAME/data, POST /devices/NAME/flush: raw bytes (device-data.ts)
 *
 * `GET /events` streams, so server.ts serves it. Failures are thrown as `ThinpError`s; the
 * server maps them with `toHttpStatus`.
 */

import type { Config } from '../config/index.js';
import { type DeviceSet, deviceListingJson, dockerInfo, poolStatusJson } from '../driver/index.js';
import type { ImageOperations } from '../graph/index.js';
import { BadInputError, NotFoundError, parseSize } from '../util/index.js';
import type { EventHub } from './events.js';
import { type CommitStats, METRICS_CONTENT_TYPE, renderMetrics } from './metrics.js';

/** What the routes work on: the daemon's open device set and its observers. */
export interface ApiContext {
  config: Config;
  set: DeviceSet;
  events: EventHub;
  commits: CommitStats;
  /** Images and containers (image-routes.ts); absent, their routes say so. */
  images?: ImageOperations;
  /** Called after each change the API made, for the daemon's log. */
  onChange?: (event: string, fields: Record<string, unknown>) => void;
}

export interface ApiRequest {
  method: string;
  /** The path without the query, e.g. `/devices/scratch` (percent-encoding undone). */
  path: string;
  /** The parsed JSON body, or undefined when there was none. */
  body: unknown;
}

export type ApiResponse =
  | { status: number; json: unknown }
  | { status: number; text: string; contentType: string };

type Handler = (ctx: ApiContext, req: ApiRequest, param: string) => Promise<ApiResponse>;

interface Route {
  method: string;
  pattern: RegExp;
  handler: Handler;
}

const ROUTES: readonly Route[] = [
  {
    method: 'GET',
    pattern: /^\/pool$/,
    handler: async (ctx) => ok(poolStatusJson(ctx.set.status())),
  },
  { method: 'POST', pattern: /^\/pool\/resize$/, handler: resizePool },
  { method: 'GET', pattern: /^\/info$/, handler: async (ctx) => ok(await info(ctx)) },
  { method: 'GET', pattern: /^\/devices$/, handler: listDevices },
  { method: 'POST', pattern: /^\/devices$/, handler: createDevice },
  { method: 'DELETE', pattern: /^\/devices\/([^/]+)$/, handler: removeDevice },
  { method: 'GET', pattern: /^\/metrics$/, handler: metrics },
];

/** Runs the route `req` names; NotFoundError for an unknown path, BadInputError for a bad method. */
export async function route(ctx: ApiContext, req: ApiRequest): Promise<ApiResponse> {
  const matches = ROUTES.map((r) => ({ r, m: r.pattern.exec(req.path) })).filter((x) => x.m);
  if (matches.length === 0) {
    throw new NotFoundError(`there is no resource ${req.path}`, {
      hint: 'see GET /pool, /info, /devices, /metrics, /events',
    });
  }
  const hit = matches.find((x) => x.r.method === req.method);
  if (hit === undefined) {
    const allowed = matches.map((x) => x.r.method).join(', ');
    throw new BadInputError(`${req.method} is not allowed on ${req.path}`, {
      hint: `use ${allowed}`,
    });
  }
  return hit.r.handler(ctx, req, hit.m?.[1] ?? '');
}

// ---------------------------------------------------------------------------------------

function ok(json: unknown, status = 200): ApiResponse {
  return { status, json };
}

function info(ctx: ApiContext): Promise<unknown> {
  return dockerInfo(ctx.config, ctx.set);
}

async function listDevices(ctx: ApiContext): Promise<ApiResponse> {
  return ok((await ctx.set.list()).map(deviceListingJson));
}

async function createDevice(ctx: ApiContext, req: ApiRequest): Promise<ApiResponse> {
  const body = objectBody(req);
  const name = stringField(body, 'name', true) as string;
  const origin = stringField(body, 'origin', false);
  const size = sizeField(body, 'size');
  if ((origin === undefined) === (size === undefined)) {
    throw new BadInputError('POST /devices needs exactly one of "size" and "origin"', {
      hint: 'send {"name": "scratch", "size": "10G"} or {"name": "snap", "origin": "scratch"}',
    });
  }
  const entry =
    origin === undefined
      ? await ctx.set.createDevice(name, size as number)
      : await ctx.set.createSnapshot(name, origin);
  ctx.events.publish({ type: 'deviceCreated', name, ...(origin === undefined ? {} : { origin }) });
  ctx.onChange?.('device-created', { device: name, id: entry.id, size: entry.size, origin });
  return ok(
    { name: entry.name, id: entry.id, size: entry.size, origin: entry.origin ?? null },
    201,
  );
}

async function removeDevice(ctx: ApiContext, _req: ApiRequest, name: string): Promise<ApiResponse> {
  const outcome = await ctx.set.removeDevice(name);
  ctx.events.publish({ type: 'deviceRemoved', name, outcome });
  ctx.onChange?.('device-removed', { device: name, outcome });
  return ok({ name, outcome });
}

async function resizePool(ctx: ApiContext, req: ApiRequest): Promise<ApiResponse> {
  const body = objectBody(req);
  const dataSize = sizeField(body, 'dataSize');
  const metadataSize = sizeField(body, 'metadataSize');
  if (dataSize === undefined && metadataSize === undefined) {
    throw new BadInputError('POST /pool/resize needs "dataSize" or "metadataSize"', {
      hint: 'send {"dataSize": "200G"}',
    });
  }
  if (dataSize !== undefined) await ctx.set.resizeData(dataSize);
  if (metadataSize !== undefined) await ctx.set.resizeMetadata(metadataSize);
  const status = ctx.set.status();
  ctx.events.publish({
    type: 'poolResized',
    dataBlocks: status.data.totalBlocks,
    metadataBlocks: status.metadata.totalBlocks,
  });
  ctx.onChange?.('pool-resized', { dataSize, metadataSize });
  return ok(poolStatusJson(status));
}

async function metrics(ctx: ApiContext): Promise<ApiResponse> {
  const text = renderMetrics({
    status: ctx.set.status(),
    devices: await ctx.set.list(),
    counters: ctx.set.pool.counters,
    commits: ctx.commits,
  });
  return { status: 200, text, contentType: METRICS_CONTENT_TYPE };
}

// ---------------------------------------------------------------------------------------
// Request bodies

function objectBody(req: ApiRequest): Record<string, unknown> {
  const body = req.body;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new BadInputError(`${req.method} ${req.path} needs a JSON object body`, {
      hint: 'send Content-Type: application/json and an object',
    });
  }
  return body as Record<string, unknown>;
}

function stringField(
  body: Record<string, unknown>,
  key: string,
  required: boolean,
): string | undefined {
  const value = body[key];
  if (value === undefined && !required) return undefined;
  if (typeof value !== 'string' || value === '') {
    throw new BadInputError(`"${key}" must be a non-empty string`, { hint: `give "${key}"` });
  }
  return value;
}

/** A size in bytes, given as a number or as a text such as "10G". */
function sizeField(body: Record<string, unknown>, key: string): number | undefined {
  const value = body[key];
  if (value === undefined) return undefined;
  if (typeof value === 'string') return parseSize(value);
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  throw new BadInputError(`"${key}" must be a size in bytes or a text such as "10G"`, {
    hint: `give "${key}": 10737418240 or "10G"`,
  });
}
