/**
 * rescue: legacy Docker devicemapper roots (`/var/lib/docker` of Docker ≤ 24 with the
 * devicemapper driver), read in userspace and never written: their images, containers and
 * sizes listed; a filesystem exported as a tar through thinp's own read-only mount path; an
 * image saved as a `docker save` tarball; the whole root imported into a thinp root. Damaged metadata is repaired into a temporary copy
 * first, and the loss is reported. Imports graph, mount, archive, nbd, tools, thin, block,
 * driver (state files) and util.
 *
 * Life cycle: `locateRoot` → `RescueSession.open` → `listRoot` / `exportFilesystem` /
 * `saveImage` (each may mount devices, kept until close) → `session.close()`.
 */

export {
  AmbiguousRefError,
  LegacyRecordError,
  NotDockerRootError,
  UnknownRefError,
} from './errors.js';
export { type ImportOptions, type ImportSummary, importRoot } from './import-root.js';
export type { LegacyPool } from './legacy-pool.js';
export {
  type ContainerConfig,
  type DeviceRecord,
  type DeviceSetRecord,
  type LayerRecord,
  type MountRecord,
  parseContainerConfig,
  parseDeviceRecord,
  parseDeviceSet,
  parseImageDiffIds,
  parseLayerRecord,
  parseRepositories,
  parseTransaction,
  type TransactionRecord,
} from './legacy-records.js';
export {
  type LegacyCatalog,
  type LegacyContainer,
  type LegacyImage,
  type LegacyPaths,
  locateRoot,
  readCatalog,
} from './legacy-root.js';
export { describeLoss } from './loss.js';
export { type Resolved, resolveRef } from './refs.js';
export { exportFilesystem, listRoot, type RescueListing, saveImage } from './rescue-docker.js';
export { type MountedLegacy, RescueSession } from './session.js';
