/**
 * What a reference names in a legacy root: a container (by name, id or unique id prefix) or
 * an image (by tag, `name` meaning `name:latest`, id or unique id prefix), and the driver
 * device that holds its filesystem: a container's read-write layer (`mount-id`), an
 * image's top layer (the `cache-id` of its last chain id).
 */

import { NotFoundError } from '../util/index.js';
import { AmbiguousRefError, UnknownRefError } from './errors.js';
import type { LayerRecord } from './legacy-records.js';
import type { LegacyCatalog, LegacyContainer, LegacyImage } from './legacy-root.js';

export type Resolved =
  | { kind: 'container'; container: LegacyContainer }
  | { kind: 'image'; image: LegacyImage };

const short = (id: string) => id.replace(/^sha256:/, '');

export function resolveRef(catalog: LegacyCatalog, ref: string): Resolved {
  const byName = catalog.containers.find((c) => c.name === ref.replace(/^\//, ''));
  if (byName !== undefined) return { kind: 'container', container: byName };
  // A tag follows the last ':' after the last '/' (a registry's port comes before it).
  const hasTag = ref.slice(ref.lastIndexOf('/') + 1).includes(':');
  const tag = hasTag || ref.startsWith('sha256:') ? ref : `${ref}:latest`;
  const tagged = catalog.images.find((i) => i.tags.includes(tag) || i.tags.includes(ref));
  if (tagged !== undefined) return { kind: 'image', image: tagged };
  const hex = short(ref).toLowerCase();
  if (!/^[0-9a-f]+$/.test(hex)) throw new UnknownRefError(ref, catalog.paths.root);
  const matches: Resolved[] = [
    ...catalog.containers
      .filter((c) => c.id.startsWith(hex))
      .map((container) => ({ kind: 'container' as const, container })),
    ...catalog.images
      .filter((i) => short(i.id).startsWith(hex))
      .map((image) => ({ kind: 'image' as const, image })),
  ];
  const exact = matches.find((m) => idOf(m) === hex);
  if (exact !== undefined) return exact;
  if (matches.length === 1) return matches[0] as Resolved;
  if (matches.length === 0) throw new UnknownRefError(ref, catalog.paths.root);
  throw new AmbiguousRefError(
    ref,
    matches.map((m) => `${m.kind} ${idOf(m).slice(0, 12)}`),
  );
}

function idOf(r: Resolved): string {
  return r.kind === 'container' ? r.container.id : short(r.image.id);
}

/** The layer records of `image`, bottom first. */
export function layersOf(catalog: LegacyCatalog, image: LegacyImage): LayerRecord[] {
  return image.chain.map((chainId) => {
    const layer = catalog.layers.get(chainId);
    if (layer === undefined) {
      throw new NotFoundError(
        `image ${short(image.id).slice(0, 12)} names layer ${chainId}, which is not in image/devicemapper/layerdb`,
        { hint: 'the image store is incomplete; rescue its containers or other images instead' },
      );
    }
    return layer;
  });
}

/** The driver device holding the filesystem `r` names. */
export function deviceOf(catalog: LegacyCatalog, r: Resolved): string {
  if (r.kind === 'image') {
    const top = layersOf(catalog, r.image).at(-1);
    if (top === undefined) {
      throw new NotFoundError(`image ${short(r.image.id).slice(0, 12)} has no layers`, {
        hint: 'there is no filesystem to export; save the image instead',
      });
    }
    return top.cacheId;
  }
  if (r.container.mount === undefined) {
    throw new NotFoundError(
      `container ${r.container.name} has no layerdb/mounts/${r.container.id}/mount-id`,
      { hint: 'its read-write layer is not recorded; export its image instead' },
    );
  }
  return r.container.mount.mountId;
}
