/**
 * driver: Docker's devicemapper storage driver on a thin pool: the device set (named
 * devices, JSON state, transactions), the base device, layers, images, containers, mounts,
 * deferred removal and deletion, and `docker info`'s section. Imports pool, thin (types),
 * config, block and util.
 */

export { type DockerInfo, dockerInfo, formatDockerInfo } from './docker-info.js';
