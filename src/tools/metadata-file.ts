/**
 * Metadata files for the tools: the commands above this layer open them here, so that they
 * need not know the block layer.
 */

import { type BlockDevice, FileDevice } from '../block/index.js';

/**
 * Opens the metadata file at `path`. Throws `NotFoundError` when it is missing and
 * `BadInputError` when it is not a regular file.
 */
export function openMetadataFile(
  path: string,
  options: { readOnly?: boolean } = {},
): Promise<BlockDevice> {
  return FileDevice.open(path, { readOnly: options.readOnly ?? false });
}

/** Creates a sparse metadata file of `size` bytes; throws `ExistsError` if `path` exists. */
export function createMetadataFile(path: string, size: number): Promise<BlockDevice> {
  return FileDevice.open(path, { create: { size } });
}
