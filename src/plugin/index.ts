/**
 * plugin: the storage driver for other programs: Docker's graphdriver plugin protocol and
 * containerd's proxy snapshotter. Imports api, graph, driver, pool, config and util.
 */

export * from './containerd/index.js';
export * from './docker/index.js';
