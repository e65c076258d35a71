/**
 * Docker's graphdriver plugin protocol (dockerd 20.10, legacy v1 plugins), as dockerd speaks
 * it: every call is `POST /<Method>` on a UNIX socket with a JSON body (or none), and every
 * answer is status 200 with a JSON body, or another status with `{"Err": "..."}`. Two calls
 * carry raw tar instead of JSON: the answer to `GraphDriver.Diff` and the body of
 * `GraphDriver.ApplyDiff?id=ID&parent=PARENT`.
 *
 * This file holds the wire shapes and their decoding, nothing else: which methods exist, the
 * request fields each may carry, and the checks that turn a malformed request into a
 * `PluginRequestError` naming the method and the field, before any work starts.
 */

import { BadInputError } from '../../util/index.js';

/** The subsystem thinp implements, as `Plugin.Activate` lists it. */
export const IMPLEMENTS = ['GraphDriver'] as const;

/** Every method thinp answers, by its URL path without the leading slash. */
export const METHODS = [
  'Plugin.Activate',
  'GraphDriver.Init',
  'GraphDriver.Capabilities',
  'GraphDriver.Create',
  'GraphDriver.CreateReadWrite',
  'GraphDriver.Remove',
  'GraphDriver.Get',
  'GraphDriver.Put',
  'GraphDriver.Exists',
  'GraphDriver.Status',
  'GraphDriver.GetMetadata',
  'GraphDriver.Cleanup',
  'GraphDriver.Diff',
  'GraphDriver.Changes',
  'GraphDriver.ApplyDiff',
  'GraphDriver.DiffSize',
] as const;

export type Method = (typeof METHODS)[number];

/** The content type of every JSON answer (dockerd does not check it). */
export const PLUGIN_CONTENT_TYPE = 'application/vnd.docker.plugins.v1.2+json';

/** A request that is not what the protocol allows; answered with `{"Err"}` and no change. */
export class PluginRequestError extends BadInputError {}

/** `GraphDriver.Init`'s body. */
export interface InitRequest {
  home: string;
  opts: string[];
  uidMaps: IdMap[] | null;
  gidMaps: IdMap[] | null;
}

export interface IdMap {
  containerId: number;
  hostId: number;
  size: number;
}

/** The body of every other JSON call (dockerd omits empty fields). */
export interface LayerRequest {
  id: string;
  parent: string;
  mountLabel: string;
  storageOpt: Record<string, string>;
}

/** One line of `GraphDriver.Changes`: Kind 0 modified, 1 added, 2 deleted. */
export interface WireChange {
  Path: string;
  Kind: number;
}

/** The answer's fields, each present only when the call sets it. */
export interface PluginResponse {
  Err?: string;
  Dir?: string;
  Exists?: boolean;
  Status?: Array<[string, string]>;
  Changes?: WireChange[];
  Size?: number;
  Metadata?: Record<string, string>;
  Capabilities?: { ReproducesExactDiffs: boolean };
  Implements?: readonly string[];
}

/** The method a path names, or undefined for anything else. */
export function methodOf(path: string): Method | undefined {
  const name = path.startsWith('/') ? path.slice(1) : path;
  return (METHODS as readonly string[]).includes(name) ? (name as Method) : undefined;
}

/** Parses a JSON body; an empty body is `{}` (dockerd sends none for Activate). */
export function parseBody(method: Method, text: string): Record<string, unknown> {
  if (text.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new PluginRequestError(`${method}: the request body is not JSON`, {
      hint: 'send a JSON object',
      cause: err,
    });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new PluginRequestError(`${method}: the request body is not a JSON object`, {
      hint: 'send a JSON object',
    });
  }
  return value as Record<string, unknown>;
}

export function decodeInit(body: Record<string, unknown>): InitRequest {
  const method = 'GraphDriver.Init';
  const home = stringField(method, body, 'Home', true);
  const opts = body.Opts ?? null;
  if (opts !== null && !(Array.isArray(opts) && opts.every((o) => typeof o === 'string'))) {
    throw new PluginRequestError(`${method}: Opts must be a list of strings`, {
      hint: 'send the storage options as ["key=value", ...]',
    });
  }
  return {
    home,
    opts: (opts ?? []) as string[],
    uidMaps: idMaps(method, body, 'UIDMaps'),
    gidMaps: idMaps(method, body, 'GIDMaps'),
  };
}

/** A layer request; `needsId` says whether the method requires `ID`. */
export function decodeLayerRequest(
  method: Method,
  body: Record<string, unknown>,
  needsId: boolean,
): LayerRequest {
  const storageOpt = body.StorageOpt ?? {};
  if (
    typeof storageOpt !== 'object' ||
    storageOpt === null ||
    Array.isArray(storageOpt) ||
    !Object.values(storageOpt).every((v) => typeof v === 'string')
  ) {
    throw new PluginRequestError(`${method}: StorageOpt must be an object of strings`, {
      hint: 'send {"size": "20G"}',
    });
  }
  const request = {
    id: stringField(method, body, 'ID', needsId),
    parent: stringField(method, body, 'Parent', false),
    mountLabel: stringField(method, body, 'MountLabel', false),
    storageOpt: storageOpt as Record<string, string>,
  };
  checkLayerId(method, 'ID', request.id, needsId);
  checkLayerId(method, 'Parent', request.parent, false);
  return request;
}

/** `ApplyDiff`'s ids come in the query string, unescaped. */
export function decodeApplyQuery(query: URLSearchParams): LayerRequest {
  const method = 'GraphDriver.ApplyDiff';
  const request = {
    id: query.get('id') ?? '',
    parent: query.get('parent') ?? '',
    mountLabel: '',
    storageOpt: {},
  };
  checkLayerId(method, 'id', request.id, true);
  checkLayerId(method, 'parent', request.parent, false);
  return request;
}

/**
 * Layer ids name devices, files and mount points: dockerd sends 64 hex digits, optionally
 * with `-init`; anything that could leave a directory is refused here.
 */
function checkLayerId(method: Method, field: string, id: string, required: boolean): void {
  if (id === '') {
    if (required) {
      throw new PluginRequestError(`${method}: ${field} is missing`, {
        hint: 'name the layer by its id',
      });
    }
    return;
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(id)) {
    throw new PluginRequestError(`${method}: ${field} ${JSON.stringify(id)} is not a layer id`, {
      hint: 'use letters, digits, ".", "_" and "-" (dockerd sends 64 hex digits)',
    });
  }
}

function stringField(
  method: Method,
  body: Record<string, unknown>,
  key: string,
  required: boolean,
): string {
  const value = body[key];
  if (value === undefined || value === null) {
    if (required) {
      throw new PluginRequestError(`${method}: ${key} is missing`, { hint: `send ${key}` });
    }
    return '';
  }
  if (typeof value !== 'string') {
    throw new PluginRequestError(`${method}: ${key} must be a string`, {
      hint: `send ${key} as a JSON string`,
    });
  }
  return value;
}

function idMaps(method: Method, body: Record<string, unknown>, key: string): IdMap[] | null {
  const value = body[key];
  if (value === undefined || value === null) return null;
  if (!Array.isArray(value)) {
    throw new PluginRequestError(`${method}: ${key} must be a list`, {
      hint: 'send null without user namespace remapping',
    });
  }
  return value.map((entry: unknown) => {
    const e = entry as Record<string, unknown> | null;
    const fields = [e?.container_id, e?.host_id, e?.size];
    if (!fields.every((f) => Number.isSafeInteger(f) && (f as number) >= 0)) {
      throw new PluginRequestError(`${method}: ${key} entries need container_id, host_id, size`, {
        hint: 'send whole numbers',
      });
    }
    return {
      containerId: e?.container_id as number,
      hostId: e?.host_id as number,
      size: e?.size as number,
    };
  });
}
