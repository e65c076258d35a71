/**
 * driver: Docker's devicemapper storage driver on a thin pool: the device set (named
 * devices, JSON state, transactions), the base device, layers, images, containers, mounts,
 * deferred removal and deletion, and `docker info`'s section. Imports pool, thin (types),
 * config, block and util.
 */

export {
  type AutoextendEvent,
  Autoextender,
  type AutoextendState,
  type Space,
} from './autoextend.js';
export {
  type BaseFilesystemRecord,
  type DeviceEntry,
  type DeviceListing,
  DeviceSet,
  type DeviceSetOptions,
  type HeldDevice,
  type NewDeviceOptions,
  type PoolDeviceUse,
  type RecoveredTransaction,
  type RemoveOutcome,
} from './device-set.js';
export {
  BASE_DEVICE,
  type DockerInfo,
  devicePrefix,
  dockerInfo,
  dockerInfoPairs,
  formatDockerInfo,
} from './docker-info.js';
export { deviceListingJson, poolStatusJson } from './json-shapes.js';
export { openPoolMetadata, poolPresent } from './pool-files.js';
export { recordedTransactionId } from './recorded-transaction.js';
export { LOCK_FILE, type LockHolder, RootLock } from './root-lock.js';
export { listStateFiles, readStateFile, removeStateFile, writeStateFile } from './state-files.js';
