/**
 * An image's config (the OCI image config, which Docker's `<id>.json` is): its bytes, whose
 * sha256 is the image id, and the parts thinp uses: the layers' diffIDs (rootfs.diff_ids,
 * bottom first) and the history. Everything else is kept as it came and written back as is.
 */

import { type Digest, parseDigest, sha256Digest } from './image-digest.js';
import { BadImageArchiveError } from './image-errors.js';

export interface ImageConfig {
  /** The config's bytes, exactly as stored (their digest is the image id). */
  readonly bytes: Buffer;
  readonly digest: Digest;
  readonly json: Record<string, unknown>;
  readonly diffIds: readonly Digest[];
}

/** Parses a config; `file` names it in errors. */
export function parseImageConfig(bytes: Buffer, file: string): ImageConfig {
  const json = parseObject(bytes, file);
  const rootfs = json.rootfs as { type?: unknown; diff_ids?: unknown } | undefined;
  if (typeof rootfs !== 'object' || rootfs === null || !Array.isArray(rootfs.diff_ids)) {
    throw new BadImageArchiveError(`${file} in the image archive has no rootfs.diff_ids`, {
      hint: 'this is not an image config; make the archive again with docker save',
    });
  }
  const diffIds = rootfs.diff_ids.map((d, i) => parseDigest(d, `${file}: rootfs.diff_ids[${i}]`));
  return { bytes, digest: sha256Digest(bytes), json, diffIds };
}

/** A JSON object from `bytes`, or an error naming `file`. */
export function parseObject(bytes: Buffer, file: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new BadImageArchiveError(`${file} in the image archive is not valid JSON`, {
      hint: 'the archive is damaged; make it again',
      cause: err,
    });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BadImageArchiveError(`${file} in the image archive is not a JSON object`, {
      hint: 'the archive is damaged or is not an image archive; make it again',
    });
  }
  return value as Record<string, unknown>;
}

/** The config with its layers replaced by `diffIds` (the history is left as it is). */
export function withDiffIds(config: ImageConfig, diffIds: readonly Digest[]): ImageConfig {
  if (sameDigests(config.diffIds, diffIds)) return config;
  const rootfs = { ...(config.json.rootfs as object), type: 'layers', diff_ids: diffIds };
  return configFrom({ ...config.json, rootfs });
}

/**
 * The config of an image made by committing a container of `base`: one more layer, one more
 * history entry, a new creation time (what `docker commit` writes, minus the container's
 * runtime settings, which thinp does not have).
 */
export function committedConfig(
  base: ImageConfig,
  diffId: Digest,
  o: { created: Date; comment?: string },
): ImageConfig {
  const created = o.created.toISOString();
  const history = Array.isArray(base.json.history) ? [...base.json.history] : [];
  history.push({ created, created_by: 'thinp container commit', comment: o.comment ?? '' });
  const rootfs = { type: 'layers', diff_ids: [...base.diffIds, diffId] };
  return configFrom({ ...base.json, created, history, rootfs });
}

function configFrom(json: Record<string, unknown>): ImageConfig {
  const bytes = Buffer.from(JSON.stringify(json));
  return parseImageConfig(bytes, 'config');
}

function sameDigests(a: readonly Digest[], b: readonly Digest[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
