/**
 * Docker's whiteout names (moby pkg/archive/whiteouts.go): a layer deletes `dir/name` of the
 * layers below with an empty entry `dir/.wh.name`, and hides everything below a directory
 * with `dir/.wh..wh..opq`. Names starting `.wh..wh.` are AUFS metadata, never unpacked; the
 * files in `.wh..wh.plnk/` are only hard-link targets.
 */

export const WHITEOUT_PREFIX = '.wh.';
export const WHITEOUT_META_PREFIX = '.wh..wh.';
export const WHITEOUT_LINK_DIR = '.wh..wh.plnk';
export const WHITEOUT_OPAQUE = '.wh..wh..opq';

/** What a base name means to the unpacker. */
export type NameKind =
  | { kind: 'normal' }
  | { kind: 'opaque' }
  | { kind: 'meta' }
  | { kind: 'whiteout'; target: string };

export function classifyName(base: string): NameKind {
  if (base === WHITEOUT_OPAQUE) return { kind: 'opaque' };
  if (base.startsWith(WHITEOUT_META_PREFIX)) return { kind: 'meta' };
  if (base.startsWith(WHITEOUT_PREFIX)) {
    return { kind: 'whiteout', target: base.slice(WHITEOUT_PREFIX.length) };
  }
  return { kind: 'normal' };
}

/** The whiteout entry's base name that deletes `base`. */
export function whiteoutOf(base: string): string {
  return `${WHITEOUT_PREFIX}${base}`;
}
