/**
 * The real FilesystemTools and TreeTools (tools.ts): mount/'s programs and archive/'s
 * child-process workers. The layer store uses these unless it is handed others.
 */

import {
  cleanupStale,
  findMounts,
  growFilesystem,
  makeFilesystem,
  mountDevice,
  probeFilesystem,
} from '../mount/index.js';
import { UnavailableError } from '../util/index.js';
import type { FilesystemTools, TreeTools } from './tools.js';

export const MOUNT_TOOLS: FilesystemTools = {
  mountDevice,
  makeFilesystem,
  probeFilesystem: (devicePath) => probeFilesystem(devicePath),
  growFilesystem: (mounted) => growFilesystem(mounted),
  findMounts,
  cleanupStale,
};

const NO_ARCHIVE = () =>
  new UnavailableError('layer tars are not available in this build of thinp', {
    hint: 'use a build with the archive layer',
  });

export const TREE_TOOLS: TreeTools = {
  applyLayer: () => Promise.reject(NO_ARCHIVE()),
  exportDiff: () => {
    throw NO_ARCHIVE();
  },
  listChanges: () => Promise.reject(NO_ARCHIVE()),
  diffSize: () => Promise.reject(NO_ARCHIVE()),
};
