/**
 * block: the BlockDevice interface (read, write, flush, discard, size) and its
 * implementations: a file (loop mode), a block device (direct mode), memory (tests), and a
 * linear concatenation of segments. Imports only util.
 */

export { type BlkdevStatus, blkdevStatus } from './blkdev-native.js';
export { BlockDevDevice, type BlockDevDeviceOptions } from './block-dev-device.js';
export type { BlockDevice, ReadFile } from './block-device.js';
export { FileDevice, type FileDeviceOptions } from './file-device.js';
export { LinearDevice } from './linear-device.js';
export { MemoryDevice, type MemoryDeviceOptions } from './memory-device.js';
export { type NativeStatus, nativeStatus } from './native.js';
