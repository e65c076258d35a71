/**
 * The real FilesystemTools and TreeTools (tools.ts): mount/'s programs and archive/'s
 * child-process workers. The layer store uses these unless it is handed others.
 */

import { applyLayer, diffSize, exportDiff, listChanges } from '../archive/index.js';
import {
  cleanupStale,
  findMounts,
  growFilesystem,
  makeFilesystem,
  mountDevice,
  probeFilesystem,
} from '../mount/index.js';
import type { FilesystemTools, TreeTools } from './tools.js';

export const MOUNT_TOOLS: FilesystemTools = {
  mountDevice,
  makeFilesystem,
  probeFilesystem: (devicePath) => probeFilesystem(devicePath),
  growFilesystem: (mounted) => growFilesystem(mounted),
  findMounts,
  cleanupStale,
};

export const TREE_TOOLS: TreeTools = { applyLayer, exportDiff, listChanges, diffSize };
