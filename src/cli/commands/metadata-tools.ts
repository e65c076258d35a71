/**
 * check, dump, restore, repair: thin_check, thin_dump, thin_restore and thin_repair, on the
 * pool's metadata file under the root or on any file given with --metadata FILE.
 */

import { type EventEmitter, once } from 'node:events';
import { chmod, open } from 'node:fs/promises';
import path from 'node:path';
import { type Command, Option } from 'commander';
import type { Config } from '../../config/index.js';
import { openPoolMetadata } from '../../driver/index.js';
import {
  type BlockDevice,
  type CheckReport,
  checkMetadata,
  createMetadataFile,
  type DumpSink,
  dumpMetadata,
  formatReport,
  openMetadataFile,
  restoreMetadata,
} from '../../tools/index.js';
import {
  type Bytes,
  formatSize,
  IoError,
  MetadataCorruptError,
  NoSpaceError,
  UsageError,
} from '../../util/index.js';
import { sizeArgument } from '../arguments.js';
import { commandConfig, writeJson } from '../context.js';
import type { CliIo, TextSink } from '../io.js';
import {
  fileError,
  fileInfo,
  metadataTarget,
  openInput,
  POOL_HINT,
  removeScratch,
  replaceWith,
  requireFolderOf,
  requireMetadataFile,
  scratchPath,
} from './metadata-files.js';
import { addRepairCommand } from './repair.js';

const METADATA_FILE = 'work on this metadata file instead of the pool under the root';
const METADATA_SNAP = 'use the held metadata snapshot instead of the live metadata';

/** The CLI's streams, plus standard input for `restore -i -` (a test may give its own). */
type ToolIo = CliIo & { stdin?: AsyncIterable<string | Buffer> };

export function addMetadataToolCommands(program: Command, io: CliIo): void {
  addCheckCommand(program, io);
  addDumpCommand(program, io);
  addRestoreCommand(program, io);
  addRepairCommand(program, io);
}

// ---------------------------------------------------------------------------------------
// check

interface CheckOptions {
  metadata?: string;
  superBlockOnly?: boolean;
  skipMappings?: boolean;
  metadataSnap?: boolean;
  ignoreNonFatalErrors?: boolean;
  json?: boolean;
}

function addCheckCommand(program: Command, io: CliIo): void {
  program
    .command('check')
    .description('check the pool metadata, as thin_check: every problem, with its block')
    .option('--metadata <file>', METADATA_FILE)
    .option('--super-block-only', 'check only the superblock')
    .option('--skip-mappings', 'do not check the mapping trees of the devices')
    .option('-m, --metadata-snap', METADATA_SNAP)
    .option('--ignore-non-fatal-errors', 'exit 0 when every problem found is non-fatal')
    .option('--json', 'machine-readable output')
    .action(async (options: CheckOptions, self: Command) => {
      const source = await existingMetadata(self, io, options.metadata);
      const report = await withDevice(source, (device) =>
        checkMetadata(device, {
          superblockOnly: options.superBlockOnly === true,
          skipMappings: options.skipMappings === true,
          metadataSnap: options.metadataSnap === true,
        }),
      );
      if (options.json) writeJson(io, report);
      else io.stdout.write(formatReport(report));
      failOnProblems(source.name, report, options.ignoreNonFatalErrors === true);
    });
}

/** Exit status 1 (through an error) when the report holds problems that count. */
function failOnProblems(file: string, report: CheckReport, ignoreNonFatal: boolean): void {
  const fatal = report.problems.filter((p) => p.severity === 'fatal').length;
  const nonFatal = report.problems.length - fatal;
  if (fatal === 0 && (nonFatal === 0 || ignoreNonFatal)) return;
  const counts = [
    fatal > 0 ? `${fatal} fatal` : '',
    nonFatal > 0 ? `${nonFatal} non-fatal` : '',
  ].filter((part) => part !== '');
  throw new MetadataCorruptError(
    file,
    undefined,
    `the check found ${plural(report.problems.length, 'problem')} (${counts.join(', ')})`,
    {
      hint:
        fatal > 0
          ? "restore the metadata from a dump with 'thinp restore', or repair it with 'thinp repair'"
          : 'non-fatal problems leave the pool usable: give --ignore-non-fatal-errors to accept them',
    },
  );
}

// ---------------------------------------------------------------------------------------
// dump

interface DumpOptions {
  metadata?: string;
  metadataSnap?: boolean;
  output?: string;
}

function addDumpCommand(program: Command, io: CliIo): void {
  program
    .command('dump')
    .description('write the pool metadata as thin_dump XML, to stdout by default')
    .option('--metadata <file>', METADATA_FILE)
    .option('-m, --metadata-snap', METADATA_SNAP)
    .option('-o, --output <file>', 'write the XML to this file (replaced only once complete)')
    .action(async (options: DumpOptions, self: Command) => {
      const source = await existingMetadata(self, io, options.metadata);
      const dumpOptions = { metadataSnap: options.metadataSnap === true };
      await withDevice(source, async (device) => {
        if (options.output === undefined) {
          await toStdout(io.stdout, (sink) => dumpMetadata(device, sink, dumpOptions));
        } else {
          await dumpToFile(device, resolvePath(io, options.output), dumpOptions);
        }
      });
    });
}

/**
 * Runs `write` with a sink to standard output that waits when the stream is full and stops
 * with an `IoError` when it fails (a reader that went away: `thinp dump | head`).
 */
async function toStdout(out: TextSink, write: (sink: DumpSink) => Promise<void>): Promise<void> {
  const stream = out as TextSink & Partial<EventEmitter>;
  if (typeof stream.on !== 'function' || typeof stream.off !== 'function') {
    return write((chunk) => void out.write(chunk));
  }
  let failure: unknown;
  const onError = (error: unknown) => {
    failure ??= error;
  };
  stream.on('error', onError);
  const check = () => {
    if (failure === undefined) return;
    const message = failure instanceof Error ? failure.message : String(failure);
    throw new IoError('standard output', 'write', message, { cause: failure });
  };
  try {
    await write(async (chunk) => {
      check();
      if (out.write(chunk) === false) await once(stream as EventEmitter, 'drain').catch(onError);
      check();
    });
  } finally {
    stream.off('error', onError);
  }
}

/** Dumps into a scratch file next to `output` and renames it over `output` once complete. */
async function dumpToFile(
  device: BlockDevice,
  output: string,
  options: { metadataSnap: boolean },
): Promise<void> {
  await requireFolderOf(output, 'output file', 'create it first, or give another -o FILE');
  const scratch = scratchPath(output, 'dump');
  try {
    const handle = await open(scratch, 'wx').catch((error: unknown) => {
      throw fileError(scratch, 'create', error);
    });
    try {
      const write = async (chunk: string) => {
        await handle.writeFile(chunk).catch((error: unknown) => {
          throw fileError(output, 'write', error);
        });
      };
      await dumpMetadata(device, write, options);
      await handle.sync().catch((error: unknown) => {
        throw fileError(output, 'flush', error);
      });
    } finally {
      await handle.close();
    }
  } catch (error) {
    await removeScratch(scratch);
    throw error;
  }
  await replaceWith(scratch, output);
}

// ---------------------------------------------------------------------------------------
// restore

interface RestoreOptions {
  input: string;
  metadata?: string;
  metadataSize?: Bytes;
}

function addRestoreCommand(program: Command, io: ToolIo): void {
  program
    .command('restore')
    .description('write pool metadata from thin_dump XML, as thin_restore')
    .requiredOption('-i, --input <file>', "the XML to restore ('-' for standard input)")
    .option('--metadata <file>', METADATA_FILE)
    .addOption(
      new Option(
        '--metadata-size <size>',
        'size of the metadata file when it does not exist yet (default: dm.loopmetadatasize, 2G)',
      ).argParser(sizeArgument),
    )
    .action(async (options: RestoreOptions, self: Command) => {
      const config = await commandConfig(self, io);
      const target = metadataTarget(config, options.metadata, io.cwd);
      await requireFolderOf(
        target,
        'metadata file',
        options.metadata === undefined
          ? POOL_HINT
          : 'create it first, or give another --metadata FILE',
      );
      const size = await restoreSize(config, target, options.metadataSize);
      const input = await openInput(options.input, io.cwd, io.stdin ?? process.stdin);
      try {
        await restoreInto(target, size, input.source);
      } finally {
        await input.close();
      }
    });
}

/** The size of the restored file: the target's own, or --metadata-size for a new one. */
async function restoreSize(
  config: Config,
  target: string,
  given: Bytes | undefined,
): Promise<{ size: number; mode?: number }> {
  const existing = await fileInfo(target);
  if (existing === undefined) return { size: given ?? config.storage.loopMetadataSize };
  if (given !== undefined && given !== existing.size) {
    throw new UsageError(
      `--metadata-size ${formatSize(given)} does not match ${target}, which holds ${existing.size} bytes`,
      { hint: 'a restore keeps the size of an existing file: leave out --metadata-size' },
    );
  }
  return existing;
}

/**
 * Restores into a scratch file next to `target` and renames it over `target` only once the
 * restore is complete and durable: bad input leaves `target` exactly as it was.
 */
async function restoreInto(
  target: string,
  { size, mode }: { size: number; mode?: number },
  source: AsyncIterable<string | Buffer>,
): Promise<void> {
  const scratch = scratchPath(target, 'restore');
  try {
    const device = await createMetadataFile(scratch, size);
    try {
      await restoreMetadata(source, device);
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
    throw explainRestoreFailure(error, size);
  }
  await replaceWith(scratch, target);
}

function explainRestoreFailure(error: unknown, size: number): unknown {
  if (error instanceof NoSpaceError && error.space === 'metadata') {
    return new NoSpaceError('metadata', `${size} bytes of metadata cannot hold this dump`, {
      hint: 'restore into a new file with a larger --metadata-size (--metadata FILE)',
      cause: error,
    });
  }
  return error;
}

// ---------------------------------------------------------------------------------------
// Shared

/** The metadata file a check or dump reads, which must exist. */
/** What check and dump read: a metadata file, or the metadata of a direct-mode pool. */
interface MetadataSource {
  name: string;
  open(): Promise<BlockDevice>;
}

async function existingMetadata(
  self: Command,
  io: CliIo,
  given: string | undefined,
): Promise<MetadataSource> {
  const config = await commandConfig(self, io);
  if (given === undefined && config.backing.kind !== 'loop') {
    return {
      name: `the metadata of the pool at ${config.root}`,
      open: () => openPoolMetadata(config),
    };
  }
  const file = metadataTarget(config, given, io.cwd);
  await requireMetadataFile(file, given !== undefined);
  return { name: file, open: () => openMetadataFile(file, { readOnly: true }) };
}

/** Runs `use` on the metadata of `source`, opened read-only. */
async function withDevice<T>(
  source: MetadataSource,
  use: (device: BlockDevice) => Promise<T>,
): Promise<T> {
  const device = await source.open();
  try {
    return await use(device);
  } finally {
    await device.close();
  }
}

function resolvePath(io: CliIo, file: string): string {
  return path.resolve(io.cwd, file);
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
