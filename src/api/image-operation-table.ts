/**
 * The image and container entries of the operation table (operation-table.ts); the routes
 * are listed in image-operations.ts.
 */

import { BadInputError, parseSize } from '../util/index.js';
import type { ImageOperations } from './image-operations.js';
import type { OperationSpec, WireRequest } from './operation-spec.js';

type ImageTable = { readonly [K in keyof ImageOperations]: OperationSpec<K> };

const none = () => ({});

export const IMAGE_OPERATIONS: ImageTable = {
  loadImage: {
    method: 'POST',
    path: '/images',
    body: 'raw',
    reply: 'json',
    encode: (archive) => ({ raw: archive }),
    decode: (req) => [req.raw],
  },
  listImages: {
    method: 'GET',
    path: '/images',
    body: 'none',
    reply: 'json',
    encode: none,
    decode: () => [],
  },
  removeImage: {
    method: 'DELETE',
    path: '/images/{}',
    body: 'none',
    reply: 'json',
    encode: (ref) => ({ params: [ref] }),
    decode: (req) => [param(req)],
  },
  saveImage: {
    method: 'POST',
    path: '/images/save',
    body: 'json',
    reply: 'stream',
    encode: (refs) => ({ json: { refs } }),
    decode: (req) => [refsOf(req)],
  },
  createContainer: {
    method: 'POST',
    path: '/containers',
    body: 'json',
    reply: 'json',
    status: 201,
    encode: (image, spec) => ({ json: { image, ...spec } }),
    decode: (req) => {
      const body = objectOf(req);
      const image = body.image;
      if (typeof image !== 'string' || image === '') {
        throw new BadInputError('POST /containers needs "image"', {
          hint: 'send {"image": "busybox:latest"}',
        });
      }
      const name = typeof body.name === 'string' ? body.name : undefined;
      const size = body.size === undefined ? undefined : sizeOf(body.size);
      return [
        image,
        { ...(name === undefined ? {} : { name }), ...(size === undefined ? {} : { size }) },
      ];
    },
  },
  mountContainer: {
    method: 'POST',
    path: '/containers/{}/mount',
    body: 'none',
    reply: 'json',
    encode: (ref) => ({ params: [ref] }),
    decode: (req) => [param(req)],
    toJson: (dir) => ({ path: dir }),
    fromJson: (json) => (json as { path: string }).path,
  },
  unmountContainer: {
    method: 'POST',
    path: '/containers/{}/unmount',
    body: 'none',
    reply: 'none',
    encode: (ref) => ({ params: [ref] }),
    decode: (req) => [param(req)],
  },
  removeContainer: {
    method: 'DELETE',
    path: '/containers/{}',
    body: 'none',
    reply: 'json',
    encode: (ref) => ({ params: [ref] }),
    decode: (req) => [param(req)],
  },
  listContainers: {
    method: 'GET',
    path: '/containers',
    body: 'none',
    reply: 'json',
    encode: none,
    decode: () => [],
  },
  containerChanges: {
    method: 'GET',
    path: '/containers/{}/changes',
    body: 'none',
    reply: 'json',
    encode: (ref) => ({ params: [ref] }),
    decode: (req) => [param(req)],
  },
  commitContainer: {
    method: 'POST',
    path: '/containers/{}/commit',
    body: 'json',
    reply: 'json',
    status: 201,
    encode: (ref, tag) => ({ params: [ref], json: tag === undefined ? {} : { tag } }),
    decode: (req) => {
      const tag = (req.json as { tag?: unknown } | undefined)?.tag;
      return [param(req), typeof tag === 'string' ? tag : undefined];
    },
  },
};

function param(req: WireRequest): string {
  return req.params[0] ?? '';
}

function objectOf(req: WireRequest): Record<string, unknown> {
  const body = req.json;
  if (typeof body === 'object' && body !== null && !Array.isArray(body))
    return body as Record<string, unknown>;
  throw new BadInputError('the request needs a JSON object body', {
    hint: 'send Content-Type: application/json and an object',
  });
}

function refsOf(req: WireRequest): string[] {
  const refs = objectOf(req).refs;
  if (Array.isArray(refs) && refs.every((r) => typeof r === 'string')) return refs as string[];
  throw new BadInputError('POST /images/save needs "refs", a list of images', {
    hint: 'send {"refs": ["busybox:latest"]}',
  });
}

function sizeOf(value: unknown): number {
  if (typeof value === 'string') return parseSize(value);
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  throw new BadInputError('"size" must be a size in bytes or a text such as "20G"', {
    hint: 'give "size": "20G"',
  });
}
