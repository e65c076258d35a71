/**
 * driver: Docker's devicemapper storage driver on a thin pool: the device set (named
 * devices, JSON state, transactions), the base device, layers, images, containers, mounts,
 * deferred removal and deletion, and `docker info`'s section. Imports pool, thin (types),
 * config, block and util.
 */

export {
  type DeviceEntry,
  type DeviceListing,
  DeviceSet,
  type DeviceSetOptions,
  type RecoveredTransaction,
  type RemoveOutcome,
} from './device-set.js';
export { type DockerInfo, dockerInfo, formatDockerInfo } from './docker-info.js';
export { deviceListingJson, poolStatusJson } from './json-shapes.js';
export { poolPresent } from './pool-files.js';
export { recordedTransactionId } from './recorded-transaction.js';
export { LOCK_FILE, type LockHolder, RootLock } from './root-lock.js';
