/**
 * Image references as the user types them: a tag (`busybox`, `busybox:1.36`,
 * `registry:5000/team/app:v2`; a name without a tag means `:latest`), an image id
 * (`sha256:<64 hex>`) or a prefix of its hex digits (at least 4, unique), as `docker` takes.
 */

import { BadInputError } from '../util/index.js';

/** `name` with `:latest` when it has no tag (a ':' after the last '/'). */
export function normalizeTag(name: string): string {
  const lastPart = name.slice(name.lastIndexOf('/') + 1);
  return lastPart.includes(':') || lastPart.includes('@') ? name : `${name}:latest`;
}

const TAG = /^[a-z0-9]+(?:[._-]+[a-z0-9]+|[/:][a-zA-Z0-9._-]+)*$/;

/** Throws unless `tag` is a usable image tag. */
export function checkTag(tag: string): void {
  if (tag.length <= 255 && TAG.test(tag)) return;
  throw new BadInputError(`${JSON.stringify(tag)} is not an image name`, {
    hint: "an image name is lowercase letters, digits and . _ - /, with an optional ':tag'",
  });
}

export type ImageRefMatch =
  | { kind: 'id'; hex: string }
  | { kind: 'prefix'; hex: string }
  | { kind: 'tag'; tag: string };

/** What `ref` can name. */
export function parseImageRef(ref: string): ImageRefMatch {
  const id = /^sha256:([0-9a-f]{64})$/.exec(ref);
  if (id !== null) return { kind: 'id', hex: id[1] as string };
  if (/^[0-9a-f]{64}$/.test(ref)) return { kind: 'id', hex: ref };
  if (/^(?:sha256:)?[0-9a-f]{4,63}$/.test(ref))
    return { kind: 'prefix', hex: ref.replace(/^sha256:/, '') };
  return { kind: 'tag', tag: normalizeTag(ref) };
}
