/**
 * Content digests of images, as Docker and the OCI image spec define them: `sha256:<64 hex>`
 * for blobs, configs (the image id) and diffIDs (the digest of a layer's uncompressed tar),
 * and Docker's chain IDs, which name a layer together with everything below it:
 * chainID(1) = diffID(1), chainID(n) = sha256(chainID(n-1) + " " + diffID(n)).
 */

import { createHash } from 'node:crypto';
import { BadInputError } from '../util/index.js';

/** `sha256:` followed by 64 lowercase hex digits. */
export type Digest = `sha256:${string}`;

const DIGEST = /^sha256:[0-9a-f]{64}$/;

export function isDigest(value: unknown): value is Digest {
  return typeof value === 'string' && DIGEST.test(value);
}

/** `value` as a Digest; `what` names where it came from in the error. */
export function parseDigest(value: unknown, what: string): Digest {
  if (isDigest(value)) return value;
  throw new BadInputError(`${what} is ${JSON.stringify(value)}, not a sha256 digest`, {
    hint: "a digest is 'sha256:' and 64 lowercase hex digits; the archive is damaged or not an image",
  });
}

/** The 64 hex digits of a digest. */
export function digestHex(digest: Digest): string {
  return digest.slice('sha256:'.length);
}

export function sha256Digest(data: Uint8Array | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** The chain IDs of a stack of diffIDs, bottom first. */
export function chainIds(diffIds: readonly Digest[]): Digest[] {
  const chain: Digest[] = [];
  for (const diffId of diffIds) {
    const below = chain.at(-1);
    chain.push(below === undefined ? diffId : sha256Digest(`${below} ${diffId}`));
  }
  return chain;
}
