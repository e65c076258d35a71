/**
 * graph: the storage driver on the device set: the base device with its filesystem, image
 * layers as snapshots of their parent, containers as snapshots of their image, their mounts
 * (reference-counted) and deferred removal. Imports driver, pool, mount, archive, config and
 * util.
 */

export {};
