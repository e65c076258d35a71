/**
 * repair: thin_repair. Rebuilds damaged metadata from whatever can still be read into a new
 * file (-o FILE), or in place (--in-place --yes, after a backup copy), and reports what was
 * lost. The output is written to a scratch file next to its target, flushed, and renamed
 * over the target only once complete: a failed repair leaves every file as it was.
 */

import { constants } from 'node:fs';
import { chmod, copyFile } from 'node:fs/promises';
import path from 'node:path';
import { type Command, Option } from 'commander';
import type { Config } from '../../config/index.js';
import { recordedTransactionId } from '../../driver/index.js';
import {
  type BlockDevice,
  createMetadataFile,
  formatRepairReport,
  openMetadataFile,
  type RepairOptions,
  type RepairReport,
  repairMetadata,
} from '../../tools/index.js';
import {
  BadInputError,
  type Bytes,
  ExistsError,
  NoSpaceError,
  UsageError,
} from '../../util/index.js';
import { naturalArgument, sizeArgument } from '../arguments.js';
import { commandConfig, writeJson } from '../context.js';
import type { CliIo } from '../io.js';
import { withRootLock } from '../session.js';
import {
  fileError,
  fileInfo,
  metadataTarget,
  removeScratch,
  replaceWith,
  requireFolderOf,
  requireMetadataFile,
  scratchPath,
} from './metadata-files.js';

const SECTOR = 512;

interface RepairCliOptions {
  metadata?: string;
  output?: string;
  inPlace?: boolean;
  yes?: boolean;
  backup?: string;
  metadataSize?: Bytes;
  transactionId?: number;
  dataBlockSize?: number;
  nrDataBlocks?: number;
  json?: boolean;
}

export function addRepairCommand(program: Command, io: CliIo): void {
  program
    .command('repair')
    .description(
      'rebuild damaged pool metadata from what can still be read, as thin_repair, and report what was lost',
    )
    .option('--metadata <file>', 'repair this metadata file instead of the pool under the root')
    .option(
      '-o, --output <file>',
      'write the repaired metadata to this file (replaced only once complete)',
    )
    .option('--in-place', 'replace the metadata file itself (needs --yes; a backup copy is kept)')
    .option('--yes', 'confirm --in-place')
    .option('--backup <file>', 'where --in-place keeps the original (default: FILE.backup)')
    .addOption(
      new Option(
        '--metadata-size <size>',
        'size of the repaired file (default: the size of the damaged one)',
      ).argParser(sizeArgument),
    )
    .addOption(
      new Option(
        '--transaction-id <n>',
        "the pool's transaction id, when the superblock is lost",
      ).argParser(naturalArgument),
    )
    .addOption(
      new Option(
        '--data-block-size <sectors>',
        'the data block size in 512-byte sectors, when the superblock is lost',
      ).argParser(naturalArgument),
    )
    .addOption(
      new Option(
        '--nr-data-blocks <n>',
        'the data device size in data blocks, when the superblock is lost',
      ).argParser(naturalArgument),
    )
    .option('--json', 'machine-readable report')
    .addHelpText(
      'after',
      `
The pool is read from the superblock, or, when the superblock is unusable, from the newest
consistent roots found by scanning every block for btree nodes; then --data-block-size and
--nr-data-blocks are needed (for the pool under the root they come from its configuration).
Every readable device and mapping is kept, every reference count is computed anew, the held
metadata snapshot is dropped and needs_check is cleared. The report lists what was lost:
devices, and per device the vblock ranges that sat in damaged blocks.

Examples:
  thinp repair --metadata damaged.meta -o repaired.meta
  thinp repair --in-place --yes --json`,
    )
    .action(async (options: RepairCliOptions, self: Command) => {
      const config = await commandConfig(self, io);
      const input = metadataTarget(config, options.metadata, io.cwd);
      await requireMetadataFile(input, options.metadata !== undefined);
      const output = outputOf(options, input, io.cwd);
      const run = () => repairFile(io, config, input, output, options);
      // The pool's own file is repaired under the root lock: no daemon may hold it meanwhile.
      if (options.metadata === undefined) await withRootLock(self, io, config, run);
      else await run();
    });
}

/** The file the repair writes: -o FILE, or the input itself with --in-place --yes. */
function outputOf(options: RepairCliOptions, input: string, cwd: string): string {
  if (options.inPlace === true) {
    if (options.output !== undefined) {
      throw new UsageError('--in-place and -o/--output exclude each other', {
        hint: 'give -o FILE to write a new file, or --in-place --yes to replace the damaged one',
      });
    }
    if (options.yes !== true) {
      throw new BadInputError(`repairing in place replaces ${input}`, {
        hint: 'give --yes to confirm (the original is copied to FILE.backup first), or write a new file with -o FILE',
      });
    }
    return input;
  }
  if (options.output === undefined) {
    throw new UsageError("'thinp repair' needs -o FILE or --in-place --yes", {
      hint: "see 'thinp repair --help'",
    });
  }
  const output = path.resolve(cwd, options.output);
  if (output === input) {
    throw new BadInputError(`-o ${options.output} is the damaged file itself`, {
      hint: 'give another -o FILE, or --in-place --yes to replace it (with a backup)',
    });
  }
  return output;
}

async function repairFile(
  io: CliIo,
  config: Config,
  input: string,
  output: string,
  options: RepairCliOptions,
): Promise<void> {
  await requireFolderOf(output, 'repaired metadata', 'create it first, or give another -o FILE');
  const source = await openMetadataFile(input, { readOnly: true });
  let report: RepairReport;
  try {
    if (options.inPlace === true) await backUp(input, options.backup, io.cwd);
    const size = options.metadataSize ?? source.size;
    report = await repairInto(source, output, size, await repairOptions(config, options));
  } finally {
    await source.close();
  }
  if (options.json === true) writeJson(io, { output, ...report });
  else io.stdout.write(formatRepairReport(report, output));
}

/** Overrides from the command line; for the pool under the root, its own sizes as fallbacks. */
async function repairOptions(config: Config, options: RepairCliOptions): Promise<RepairOptions> {
  const result: RepairOptions = {
    transactionId: options.transactionId,
    dataBlockSize: options.dataBlockSize,
    nrDataBlocks: options.nrDataBlocks,
  };
  if (options.metadata !== undefined || config.backing.kind !== 'loop') return result;
  const sectors = config.storage.blockSize / SECTOR;
  const data = await fileInfo(config.backing.dataFile);
  result.fallback = {
    transactionId: await recordedTransactionId(config.layout.metadataDir),
    dataBlockSize: sectors,
    nrDataBlocks: data === undefined ? undefined : Math.floor(data.size / config.storage.blockSize),
  };
  return result;
}

async function backUp(input: string, given: string | undefined, cwd: string): Promise<void> {
  const backup = given === undefined ? `${input}.backup` : path.resolve(cwd, given);
  await copyFile(input, backup, constants.COPYFILE_EXCL).catch((error: unknown) => {
    if ((error as { code?: unknown }).code === 'EEXIST') {
      throw new ExistsError(`the backup file ${backup} already exists`, {
        hint: 'move it away, or give another --backup FILE',
      });
    }
    throw fileError(backup, 'copy', error);
  });
}

/** Repairs into a scratch file next to `target`, then renames it over `target`. */
async function repairInto(
  source: BlockDevice,
  target: string,
  size: number,
  options: RepairOptions,
): Promise<RepairReport> {
  const scratch = scratchPath(target, 'repair');
  const mode = (await fileInfo(target))?.mode;
  let report: RepairReport;
  try {
    const device = await createMetadataFile(scratch, size);
    try {
      report = await repairMetadata(source, device, options);
    } finally {
      await device.close();
    }
    if (mode !== undefined) {
      await chmod(scratch, mode).catch((error: unknown) => {
        throw fileError(target, 'chmod', error);
      });
    }
  } catch (error) {
    await removeScratch(scratch);
    throw explainFailure(error, size);
  }
  await replaceWith(scratch, target);
  return report;
}

function explainFailure(error: unknown, size: number): unknown {
  if (error instanceof NoSpaceError && error.space === 'metadata') {
    return new NoSpaceError('metadata', `${size} bytes of metadata cannot hold the repaired pool`, {
      hint: 'give a larger --metadata-size (snapshots no longer share their trees once repaired)',
      cause: error,
    });
  }
  return error;
}
