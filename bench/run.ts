/**
 * The benchmarks' entry point.
 *
 *     npm run bench -- metadata [--mappings N] [--cache-blocks N]   one benchmark
 *     npm run bench                                                  every one, short
 *
 * Each prints its tables to stdout, progress to stderr, and writes a Markdown report to
 * bench/results/. Exit status: 0 done, 1 the benchmark failed (a missing peer tool
 * included), 2 bad arguments.
 */

import { parseArgs } from 'node:util';
import {
  BenchOptionError,
  DEFAULT_MAPPINGS,
  MissingPeerError,
  runMetadataBench,
} from './metadata.js';

interface BenchOptions {
  mappings?: number;
  cacheBlocks?: number;
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
      'thin-provisioning-tools on the same XML',
    short: { mappings: 50_000 },
    run: (options, command) =>
      runMetadataBench({ ...options, command, log: (line) => process.stderr.write(`${line}\n`) }),
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
      ? `npm run bench${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}   # short: ${name} --mappings ${options.mappings}`
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
