/**
 * The thin pool of a legacy root, opened read-only: the data and metadata files (or
 * direct-lvm devices) are opened with O_RDONLY and nothing is ever committed. The metadata
 * is checked first (thinp check); when it has a fatal problem, it is repaired into a
 * temporary copy under the work directory and that copy is used instead, the source
 * untouched, and the repair report says what was lost.
 */

import { mkdtemp, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { BlockDevDevice, type BlockDevice, FileDevice } from '../block/index.js';
import { PoolMetadata } from '../thin/index.js';
import {
  checkMetadata,
  createMetadataFile,
  type RepairReport,
  repairMetadata,
} from '../tools/index.js';
import type { LegacyPaths } from './legacy-root.js';

const SECTOR = 512;

export interface LegacyPool {
  metadata: PoolMetadata;
  data: BlockDevice;
  /** The metadata file in use: the source, or the repaired copy. */
  metadataFile: string;
  /** Bytes per data block. */
  blockSize: number;
  /** The repair's report when the metadata was damaged and a repaired copy is in use. */
  repair: RepairReport | undefined;
  /** The fatal problems the check found (empty when the metadata was sound). */
  problems: string[];
  close(): Promise<void>;
}

/** Opens a file or block device read-only. */
export async function openReadOnly(file: string): Promise<BlockDevice> {
  const st = await stat(file);
  if (st.isBlockDevice()) return BlockDevDevice.open(file, { readOnly: true });
  return FileDevice.open(file, { readOnly: true });
}

/** Opens the pool at `paths` read-only; repairs into `workDir` when the metadata is damaged. */
export async function openLegacyPool(paths: LegacyPaths, workDir: string): Promise<LegacyPool> {
  const source = await openReadOnly(paths.metadataFile);
  const data = await openReadOnly(paths.dataFile).catch(async (err: unknown) => {
    await source.close();
    throw err;
  });
  let scratch: string | undefined;
  let metaDevice = source;
  try {
    const report = await checkMetadata(source);
    const problems = report.problems
      .filter((p) => p.severity === 'fatal')
      .map((p) => (p.block === undefined ? p.message : `block ${p.block}: ${p.message}`));
    let repair: RepairReport | undefined;
    if (problems.length > 0) {
      scratch = await mkdtemp(path.join(workDir, 'thinp-rescue-metadata-'));
      metaDevice = await createMetadataFile(path.join(scratch, 'metadata'), source.size);
      repair = await repairMetadata(source, metaDevice);
      await source.close();
    }
    const metadata = await PoolMetadata.open(metaDevice);
    const dir = scratch;
    const metadataFile =
      scratch === undefined ? paths.metadataFile : path.join(scratch, 'metadata');
    const opened = metaDevice;
    return {
      metadata,
      data,
      metadataFile,
      blockSize: metadata.dataBlockSize * SECTOR,
      repair,
      problems,
      close: async () => {
        await metadata.close();
        await opened.close();
        await data.close();
        if (dir !== undefined) await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await metaDevice.close().catch(() => undefined);
    if (metaDevice !== source) await source.close().catch(() => undefined);
    await data.close();
    if (scratch !== undefined) await rm(scratch, { recursive: true, force: true });
    throw err;
  }
}
