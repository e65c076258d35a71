/**
 * The control API's operations, one entry per StorageOperations method: its HTTP method
 * and path, how its arguments travel (path parameters, query, JSON body, or a raw body
 * streamed as is) and how its result comes back (JSON, raw bytes, a raw stream, or 204).
 * The server's routes and the client's requests are both made from this table, so they
 * cannot disagree.
 *
 *     GET    /pool                      poolStatus
 *     POST   /pool/resize               resizePool        {dataSize?, metadataSize?, addDevice?}
 *     GET    /pool/devices              poolDevices
 *     GET    /info                      info
 *     GET    /devices                   listDevices
 *     POST   /devices                   createDevice      {name, size} | {name, origin}  → 201
 *     DELETE /devices/NAME              removeDevice      → {name, outcome}
 *     GET    /devices/NAME/data         readDevice        ?offset&length → bytes
 *     PUT    /devices/NAME/data         writeDevice       ?offset, bytes → 204
 *     POST   /devices/NAME/flush        flushDevice       → 204
 *     GET    /layers                    listLayers
 *     POST   /layers                    createLayer       {id, parent?, size?}  → 201
 *     DELETE /layers/ID                 removeLayer       → {id, outcome}
 *     POST   /layers/ID/mount           mountLayer        → {path}
 *     POST   /layers/ID/unmount         unmountLayer      → 204
 *     GET    /layers/ID/metadata        layerMetadata
 *     PUT    /layers/ID/tar             applyLayer        tar body → {size}
 *     GET    /layers/ID/tar             diffLayer         → tar
 *     GET    /layers/ID/changes         layerChanges
 */

import { BadInputError, parseSize } from '../util/index.js';
import { IMAGE_OPERATIONS } from './image-operation-table.js';
import type { OperationSpec, Result, WireRequest } from './operation-spec.js';
import type { OperationName } from './operations.js';

export type { OperationSpec, WireCall, WireRequest } from './operation-spec.js';

export type OperationTable = { readonly [K in OperationName]: OperationSpec<K> };

const none = () => ({});

export const OPERATIONS: OperationTable = {
  ...IMAGE_OPERATIONS,
  poolStatus: {
    method: 'GET',
    path: '/pool',
    body: 'none',
    reply: 'json',
    encode: none,
    decode: () => [],
  },
  resizePool: {
    method: 'POST',
    path: '/pool/resize',
    body: 'json',
    reply: 'json',
    encode: (sizes) => ({ json: sizes }),
    decode: (req) => {
      const body = objectBody(req, 'POST /pool/resize');
      const dataSize = sizeField(body, 'dataSize');
      const metadataSize = sizeField(body, 'metadataSize');
      const addDevice = body.addDevice;
      if (addDevice !== undefined && (typeof addDevice !== 'string' || addDevice === '')) {
        throw new BadInputError('"addDevice" must be the path of a block device', {
          hint: 'send {"addDevice": "/dev/sdc"}',
        });
      }
      if (dataSize === undefined && metadataSize === undefined && addDevice === undefined) {
        throw new BadInputError(
          'POST /pool/resize needs "dataSize", "metadataSize" or "addDevice"',
          { hint: 'send {"dataSize": "200G"} or {"addDevice": "/dev/sdc"}' },
        );
      }
      return [
        {
          ...(dataSize === undefined ? {} : { dataSize }),
          ...(metadataSize === undefined ? {} : { metadataSize }),
          ...(addDevice === undefined ? {} : { addDevice }),
        },
      ];
    },
  },
  poolDevices: {
    method: 'GET',
    path: '/pool/devices',
    body: 'none',
    reply: 'json',
    encode: none,
    decode: () => [],
  },
  info: {
    method: 'GET',
    path: '/info',
    body: 'none',
    reply: 'json',
    encode: none,
    decode: () => [],
  },

  listDevices: {
    method: 'GET',
    path: '/devices',
    body: 'none',
    reply: 'json',
    encode: none,
    decode: () => [],
  },
  createDevice: {
    method: 'POST',
    path: '/devices',
    body: 'json',
    reply: 'json',
    status: 201,
    encode: (name, spec) => ({ json: { name, ...spec } }),
    decode: (req) => {
      const body = objectBody(req, 'POST /devices');
      const name = stringField(body, 'name', true) as string;
      const origin = stringField(body, 'origin', false);
      const size = sizeField(body, 'size');
      if ((origin === undefined) === (size === undefined)) {
        throw new BadInputError('POST /devices needs exactly one of "size" and "origin"', {
          hint: 'send {"name": "scratch", "size": "10G"} or {"name": "snap", "origin": "scratch"}',
        });
      }
      return [name, origin === undefined ? { size: size as number } : { origin }];
    },
  },
  removeDevice: {
    method: 'DELETE',
    path: '/devices/{}',
    body: 'none',
    reply: 'json',
    encode: (name) => ({ params: [name] }),
    decode: (req) => [param(req, 0)],
    toJson: (outcome, [name]) => ({ name, outcome }),
    fromJson: (json) => (json as { outcome: Result<'removeDevice'> }).outcome,
  },
  readDevice: {
    method: 'GET',
    path: '/devices/{}/data',
    body: 'none',
    reply: 'bytes',
    encode: (name, offset, length) => ({
      params: [name],
      query: {
        offset: String(offset),
        ...(length === undefined ? {} : { length: String(length) }),
      },
    }),
    decode: (req) => [param(req, 0), numberParam(req, 'offset') ?? 0, numberParam(req, 'length')],
  },
  writeDevice: {
    method: 'PUT',
    path: '/devices/{}/data',
    body: 'bytes',
    reply: 'none',
    encode: (name, offset, data) => ({
      params: [name],
      query: { offset: String(offset) },
      raw: data,
    }),
    decode: (req) => [param(req, 0), numberParam(req, 'offset') ?? 0, req.bytes],
  },
  flushDevice: {
    method: 'POST',
    path: '/devices/{}/flush',
    body: 'none',
    reply: 'none',
    encode: (name) => ({ params: [name] }),
    decode: (req) => [param(req, 0)],
  },

  listLayers: {
    method: 'GET',
    path: '/layers',
    body: 'none',
    reply: 'json',
    encode: none,
    decode: () => [],
  },
  createLayer: {
    method: 'POST',
    path: '/layers',
    body: 'json',
    reply: 'json',
    status: 201,
    encode: (id, spec) => ({ json: { id, ...spec } }),
    decode: (req) => {
      const body = objectBody(req, 'POST /layers');
      const id = stringField(body, 'id', true) as string;
      const parent = stringField(body, 'parent', false);
      const size = sizeField(body, 'size');
      return [
        id,
        { ...(parent === undefined ? {} : { parent }), ...(size === undefined ? {} : { size }) },
      ];
    },
  },
  removeLayer: {
    method: 'DELETE',
    path: '/layers/{}',
    body: 'none',
    reply: 'json',
    encode: (id) => ({ params: [id] }),
    decode: (req) => [param(req, 0)],
    toJson: (outcome, [id]) => ({ id, outcome }),
    fromJson: (json) => (json as { outcome: Result<'removeLayer'> }).outcome,
  },
  mountLayer: {
    method: 'POST',
    path: '/layers/{}/mount',
    body: 'none',
    reply: 'json',
    encode: (id) => ({ params: [id] }),
    decode: (req) => [param(req, 0)],
    toJson: (dir) => ({ path: dir }),
    fromJson: (json) => (json as { path: string }).path,
  },
  unmountLayer: {
    method: 'POST',
    path: '/layers/{}/unmount',
    body: 'none',
    reply: 'none',
    encode: (id) => ({ params: [id] }),
    decode: (req) => [param(req, 0)],
  },
  layerMetadata: {
    method: 'GET',
    path: '/layers/{}/metadata',
    body: 'none',
    reply: 'json',
    encode: (id) => ({ params: [id] }),
    decode: (req) => [param(req, 0)],
  },
  applyLayer: {
    method: 'PUT',
    path: '/layers/{}/tar',
    body: 'raw',
    reply: 'json',
    encode: (id, tar) => ({ params: [id], raw: tar }),
    decode: (req) => [param(req, 0), req.raw],
    toJson: (size) => ({ size }),
    fromJson: (json) => (json as { size: number }).size,
  },
  diffLayer: {
    method: 'GET',
    path: '/layers/{}/tar',
    body: 'none',
    reply: 'stream',
    encode: (id) => ({ params: [id] }),
    decode: (req) => [param(req, 0)],
  },
  layerChanges: {
    method: 'GET',
    path: '/layers/{}/changes',
    body: 'none',
    reply: 'json',
    encode: (id) => ({ params: [id] }),
    decode: (req) => [param(req, 0)],
  },
};

/** The path of `spec` with `params` in place of its `{}`s, each percent-encoded. */
export function pathOf(spec: { path: string }, params: readonly string[] = []): string {
  let i = 0;
  return spec.path.replace(/\{\}/g, () => encodeURIComponent(params[i++] ?? ''));
}

/** A matcher for `spec`'s path: the decoded parameters, or undefined. */
export function matchPath(spec: { path: string }, path: string): string[] | undefined {
  const pattern = new RegExp(`^${spec.path.replace(/\{\}/g, '([^/]+)')}$`);
  const m = pattern.exec(path);
  return m === null ? undefined : m.slice(1);
}

// ---------------------------------------------------------------------------------------
// Request decoding

function param(req: WireRequest, i: number): string {
  return req.params[i] ?? '';
}

function objectBody(req: WireRequest, what: string): Record<string, unknown> {
  const body = req.json;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new BadInputError(`${what} needs a JSON object body`, {
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

function numberParam(req: WireRequest, key: string): number | undefined {
  const text = req.query.get(key);
  if (text === null) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n)) {
    throw new BadInputError(`${key}=${text} is not a byte count`, { hint: `give ${key} in bytes` });
  }
  return n;
}
