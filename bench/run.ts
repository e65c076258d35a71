/**
 * The benchmarks' entry point.
 *
 *     npm run bench -- metadata [--mappings N] [--cache-blocks N] [--scale-mappings N]
 *     npm run bench -- pool [--size BYTES] [--seconds S] [--queue-depth N]
 *     npm run bench -- nbd [--size BYTES] [--seconds S] [--queue-depth N]
 *     npm run bench -- docker [--size BYTES]                          dockerd on thinp vs vfs, overlay2
 *     npm run bench -- archive [--size BYTES]
 *     npm run bench -- containerd [--size BYTES]                      thinp's snapshotter vs native, overlayfs
 *     npm run bench                                                  every one, short
 *
 * Each prints its tables to stdout, progress to stderr, and writes a Markdown report to
 * bench/results/. Exit status: 0 done, 1 the benchmark failed (a missing peer tool
 * included), 2 bad arguments.
 */

import { parseArgs } from 'node:util';
import { parseSize } from '../src/util/index.js';
import { DEFAULT_ARCHIVE_SIZE, runArchiveBench } from './archive.js';
import { runContainerdBench } from './containerd.js';
import { runDockerBench } from './docker.js';
import { DEFAULT_DATA_SIZE, runDriverBench } from './driver.js';
import {
  BenchOptionError,
  DEFAULT_MAPPINGS,
  MissingPeerError,
  runMetadataBench,
} from './metadata.js';
import { DEFAULT_SCALE_MAPPINGS } from './metadata-scale.js';
import { runNbdBench } from './nbd.js';
import { DEFAULT_QUEUE_DEPTH, DEFAULT_SECONDS, DEFAULT_SIZE, runPoolBench } from './pool.js';

interface BenchOptions {
  mappings?: number;
  cacheBlocks?: number;
  scaleMappings?: number;
  size?: number;
  seconds?: number;
  queueDepth?: number;
  repeats?: number;
  resultsDir?: string;
  tempDir?: string;
}

interface Benchmark {
  describe: string;
  /** The options of the short version that a run without a name uses. */
  short: BenchOptions;
  run(options: BenchOptions, command: string): Promise<{ text: string; reportPath: string }>;
}

const BENCHMARKS: Readonly<Record<string, Benchmark>> = {
  metadata: {
    describe:
      `PoolMetadata inserts, lookups, commit latency, snapshots and memory on ` +
      `${DEFAULT_MAPPINGS.toLocaleString('en-US')} mappings; restore, dump and check against ` +
      'thin-provisioning-tools on the same XML; then the tools and scattered lookups at ' +
      `${DEFAULT_SCALE_MAPPINGS.toLocaleString('en-US')} mappings in a process of its own, with its peak RSS`,
    short: { mappings: 50_000, scaleMappings: 0 },
    run: (options, command) =>
      runMetadataBench({
        ...options,
        scaleMappings: options.scaleMappings ?? DEFAULT_SCALE_MAPPINGS,
        command,
        log: (line) => process.stderr.write(`${line}\n`),
      }),
  },
  pool: {
    describe:
      `a thin device's 4 KiB and 1 MiB I/O at queue depth 1 and ${DEFAULT_QUEUE_DEPTH} against a ` +
      'plain sparse file on the same disk; snapshot creation, reads at snapshot depth 100, ' +
      'copy-on-write',
    short: { size: 256 * 1024 * 1024, seconds: 1 },
    run: (options, command) =>
      runPoolBench({ ...options, command, log: (line) => process.stderr.write(`${line}\n`) }),
  },
  driver: {
    describe:
      `image load, container create, mount, commit and remove (an image with a ` +
      `${DEFAULT_DATA_SIZE / 2 ** 20} MiB data layer) against plain directories and overlayfs`,
    short: { size: 16 * 1024 * 1024 },
    run: (options, command) =>
      runDriverBench({ ...options, command, log: (line) => process.stderr.write(`${line}\n`) }),
  },
  nbd: {
    describe:
      'the daemon over NBD vs qemu-nbd (qcow2) and nbdkit (raw file), with fio at queue depth ' +
      '1 and 32 (1 GiB, 5 s per job, the median of 3 runs, the servers taking turns); reads at ' +
      'snapshot depth 1, 10, 50; 1,000 snapshots',
    short: { size: 256 * 1024 * 1024, seconds: 3, repeats: 1 },
    run: (options, command) =>
      runNbdBench({ ...options, command, log: (line) => process.stderr.write(`${line}\n`) }),
  },
  archive: {
    describe:
      `layer tars on directories: applyLayer vs tar -x and exportDiff vs tar -c on a ` +
      `${DEFAULT_ARCHIVE_SIZE / 2 ** 20} MiB tree of small and large files; listChanges, diffSize`,
    short: { size: 32 * 1024 * 1024 },
    run: (options, command) =>
      runArchiveBench({ ...options, command, log: (line) => process.stderr.write(`${line}\n`) }),
  },
  docker: {
    describe:
      'a private dockerd on thinp (graphdriver plugin) against vfs and overlay2: docker load, ' +
      'docker run, docker rm, and a container writing 1 GiB with fsync',
    short: { size: 128 * 1024 * 1024 },
    run: (options, command) =>
      runDockerBench({
        ...options,
        ...(options.size === undefined ? {} : { size: options.size }),
        ...(command === '' ? {} : { command }),
        repeats: options.size !== undefined && options.size < 512 * 1024 * 1024 ? 3 : 5,
        imageBytes:
          options.size !== undefined && options.size < 512 * 1024 * 1024
            ? 16 * 1024 * 1024
            : 64 * 1024 * 1024,
        log: (line) => process.stderr.write(`${line}\n`),
      }),
  },
  containerd: {
    describe:
      "containerd with thinp's proxy snapshotter against native and overlayfs: ctr images " +
      'import, snapshot prepare + mount, commit, remove',
    short: { size: 16 * 1024 * 1024 },
    run: (options, command) =>
      runContainerdBench({
        ...options,
        ...(command === '' ? {} : { command }),
        repeats: options.size !== undefined && options.size < 64 * 1024 * 1024 ? 3 : 5,
        log: (line) => process.stderr.write(`${line}\n`),
      }),
  },
};

const USAGE = `usage: npm run bench -- [NAME...] [options]

Benchmarks:
${Object.entries(BENCHMARKS)
  .map(([name, b]) => `  ${name.padEnd(10)} ${b.describe}`)
  .join('\n')}

Without a name, every benchmark runs in a short version.

Options:
  --mappings N       mappings per phase (metadata: default ${DEFAULT_MAPPINGS.toLocaleString('en-US')})
  --cache-blocks N   metadata block cache of the pool under test (default: the engine's)
  --scale-mappings N metadata: mappings of the scale run (default ${DEFAULT_SCALE_MAPPINGS.toLocaleString('en-US')}; 0: none;
                     the short run has none)
  --size BYTES       docker: bytes a container writes (default 1G);
                     containerd: bytes of the image's data layer (default 64M);
                     pool: thin device and plain file size, e.g. 2G (default ${DEFAULT_SIZE / 2 ** 30}G);
                     driver: the image's data layer (default ${DEFAULT_DATA_SIZE / 2 ** 20}M)
                     archive: bytes of file content in the tree (default ${DEFAULT_ARCHIVE_SIZE / 2 ** 20}M)
  --seconds S        pool: seconds per timed phase (default ${DEFAULT_SECONDS})
  --queue-depth N    pool: the concurrent queue depth, besides 1 (default ${DEFAULT_QUEUE_DEPTH});
                     nbd: the same (default 32)
  --repeats N        nbd: runs of each fio job per server, the median reported (default 3;
                     the short run: 1)
  --results-dir DIR  where reports go (default bench/results)
  --temp-dir DIR     where scratch files go (default the system temp directory)
  -h, --help         this text
`;

class UsageError extends Error {}

function parseCount(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const cleaned = text.replace(/[_,]/g, '');
  if (!/^[1-9][0-9]*$/.test(cleaned) || !Number.isSafeInteger(Number(cleaned))) {
    throw new UsageError(`${flag} ${text}: give a positive whole number, e.g. ${flag} 100000`);
  }
  return Number(cleaned);
}

function parseBytes(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  try {
    return parseSize(text);
  } catch (err) {
    throw new UsageError(`${flag} ${text}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function parseSecondsFlag(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^[0-9]+(\.[0-9]+)?$/.test(text) || Number(text) <= 0) {
    throw new UsageError(`${flag} ${text}: give a positive number of seconds, e.g. ${flag} 2.5`);
  }
  return Number(text);
}

/** The flags that `options` stands for, for the command line of a short run. */
function flagsOf(options: BenchOptions): string {
  const flags: string[] = [];
  if (options.mappings !== undefined) flags.push(`--mappings ${options.mappings}`);
  if (options.cacheBlocks !== undefined) flags.push(`--cache-blocks ${options.cacheBlocks}`);
  if (options.scaleMappings !== undefined) {
    flags.push(`--scale-mappings ${options.scaleMappings}`);
  }
  if (options.size !== undefined) flags.push(`--size ${options.size}`);
  if (options.seconds !== undefined) flags.push(`--seconds ${options.seconds}`);
  if (options.queueDepth !== undefined) flags.push(`--queue-depth ${options.queueDepth}`);
  if (options.repeats !== undefined) flags.push(`--repeats ${options.repeats}`);
  return flags.join(' ');
}

function parse(argv: readonly string[]): { names: string[]; options: BenchOptions; help: boolean } {
  let parsed: ReturnType<typeof parseBenchArgs>;
  try {
    parsed = parseBenchArgs(argv);
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const { values, positionals } = parsed;
  const options: BenchOptions = {};
  const mappings = parseCount('--mappings', values.mappings);
  const cacheBlocks = parseCount('--cache-blocks', values['cache-blocks']);
  if (mappings !== undefined) options.mappings = mappings;
  if (cacheBlocks !== undefined) options.cacheBlocks = cacheBlocks;
  const scale = values['scale-mappings'];
  if (scale !== undefined) {
    options.scaleMappings = scale === '0' ? 0 : parseCount('--scale-mappings', scale);
  }
  const size = parseBytes('--size', values.size);
  const seconds = parseSecondsFlag('--seconds', values.seconds);
  const queueDepth = parseCount('--queue-depth', values['queue-depth']);
  const repeats = parseCount('--repeats', values.repeats);
  if (repeats !== undefined) options.repeats = repeats;
  if (size !== undefined) options.size = size;
  if (seconds !== undefined) options.seconds = seconds;
  if (queueDepth !== undefined) options.queueDepth = queueDepth;
  if (values['results-dir'] !== undefined) options.resultsDir = values['results-dir'];
  if (values['temp-dir'] !== undefined) options.tempDir = values['temp-dir'];
  const known = Object.keys(BENCHMARKS);
  for (const name of positionals) {
    if (!Object.hasOwn(BENCHMARKS, name)) {
      throw new UsageError(`unknown benchmark '${name}'; the known ones are: ${known.join(', ')}`);
    }
  }
  return { names: positionals, options, help: values.help === true };
}

function parseBenchArgs(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      mappings: { type: 'string' },
      'cache-blocks': { type: 'string' },
      'scale-mappings': { type: 'string' },
      size: { type: 'string' },
      seconds: { type: 'string' },
      'queue-depth': { type: 'string' },
      repeats: { type: 'string' },
      'results-dir': { type: 'string' },
      'temp-dir': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

async function main(argv: readonly string[]): Promise<number> {
  let request: ReturnType<typeof parse>;
  try {
    request = parse(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`bench: ${err.message}\n\n${USAGE}`);
    return 2;
  }
  if (request.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const all = request.names.length === 0;
  const names = all ? Object.keys(BENCHMARKS) : request.names;
  for (const name of names) {
    const bench = BENCHMARKS[name];
    if (bench === undefined) continue;
    const options = all ? { ...bench.short, ...request.options } : request.options;
    const command = all
      ? `npm run bench${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}   # short: ${name} ${flagsOf(options)}`
      : `npm run bench -- ${argv.join(' ')}`;
    process.stderr.write(`bench: ${name}\n`);
    try {
      const result = await bench.run(options, command);
      process.stdout.write(`${result.text}\n\nreport: ${result.reportPath}\n`);
    } catch (err) {
      if (err instanceof BenchOptionError) {
        process.stderr.write(`bench: ${name}: ${err.message}\n`);
        return 2;
      }
      if (err instanceof MissingPeerError) {
        process.stderr.write(`bench: ${name}: ${err.message}\n`);
        return 1;
      }
      throw err;
    }
  }
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
