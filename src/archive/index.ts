/**
 * archive: tar layers on plain directories, the way Docker's naive diff driver treats them:
 * apply a layer (whiteouts, hard links, devices, ownership, times, xattrs) with every entry
 * kept inside the root, diff a tree against its parent as a tar with whiteouts, list the
 * changes and their size. Every operation runs in a worker process. Imports util only.
 */

export {
  type ApplyOptions,
  type ApplyResult,
  applyLayer,
  type Change,
  diffSize,
  exportDiff,
  listChanges,
} from './archive.js';
export { type ChangeKind, ChangeKinds } from './changes.js';
export { BadArchiveError, UnsafeEntryError } from './errors.js';
export { detectCompression } from './tar-reader.js';
export {
  WHITEOUT_LINK_DIR,
  WHITEOUT_META_PREFIX,
  WHITEOUT_OPAQUE,
  WHITEOUT_PREFIX,
} from './whiteouts.js';
