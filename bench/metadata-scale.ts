/**
 * The metadata benchmark at scale (10,000,000 mappings by default in the long run), in a
 * process of its own so that its peak RSS is its own: thinp's restore, dump and check
 * against thin-provisioning-tools on the same XML and files, then scattered lookups on the
 * pool thinp restored, through PoolMetadata with its default cache (sized from the metadata
 * in use). The parent (metadata.ts) starts it with `runScaleBench`; run as a script it
 * prints its results as JSON on stdout and its progress on stderr.
 */

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { PoolMetadata } from '../src/thin/index.js';
import { openMetadataFile } from '../src/tools/index.js';
import {
  findPeers,
  type MemorySample,
  memorySample,
  type PeerResults,
  peerBench,
  XML_DEVICES,
} from './metadata.js';
import { mulberry32 } from './random.js';

/** Mappings of the scale run of `npm run bench -- metadata`. */
export const DEFAULT_SCALE_MAPPINGS = 10_000_000;
/** Lookups per pass of the scale run's lookup phase. */
export const SCALE_LOOKUPS = 1_000_000;
/** The peak RSS the scale run must stay under. */
export const SCALE_RSS_LIMIT = 256 * 2 ** 20;

export interface LookupPass {
  pass: string;
  lookups: number;
  hits: number;
  seconds: number;
  /** Metadata blocks read from the file per lookup. */
  readsPerLookup: number;
}

export interface ScaleResults extends PeerResults {
  mappings: number;
  commands: string[];
  memory: MemorySample[];
  lookups: LookupPass[];
  cache: { capacityBlocks: number; cachedBlocks: number; metadataBlocksUsed: number };
  /** The process's peak RSS over the whole run. */
  maxRssBytes: number;
}

/** Runs the scale benchmark in a child process under `tempParent`; resolves with its results. */
export async function runScaleBench(tempParent: string, mappings: number): Promise<ScaleResults> {
  const dir = await mkdtemp(path.join(tempParent, 'thinp-bench-scale-'));
  try {
    const script = fileURLToPath(import.meta.url);
    const child = spawn(
      process.execPath,
      [...process.execArgv, script, '--mappings', String(mappings), '--dir', dir],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
    });
    const [code] = (await once(child, 'close')) as [number | null];
    if (code !== 0) throw new Error(`benchmark: the scale run exited with status ${code}`);
    return JSON.parse(out) as ScaleResults;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The child: the tools against the peer, then lookups; the results as one object. */
async function scaleChild(dir: string, n: number): Promise<ScaleResults> {
  const log = (line: string): void => {
    process.stderr.write(`scale: ${line}\n`);
  };
  const commands: string[] = [];
  const memory: MemorySample[] = [];
  const peer = await peerBench(dir, n, await findPeers(), commands, memory, log);
  const file = path.join(dir, 'thinp.meta');
  log(`lookups: ${SCALE_LOOKUPS} scattered lookups, twice, on the pool thinp restored`);
  const { lookups, cache } = await lookupPasses(file);
  memory.push(await memorySample('scattered lookups (thinp.meta)', file));
  return {
    ...peer,
    mappings: n,
    commands,
    memory,
    lookups,
    cache,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
  };
}

/**
 * Two passes of lookups at random vblocks of random devices, below each device's highest
 * mapped vblock (most are mapped: the XML's gaps are short), on the pool opened with the
 * default cache. The second pass shows whether the cache holds what the first one read.
 */
async function lookupPasses(file: string): Promise<Pick<ScaleResults, 'lookups' | 'cache'>> {
  const dev = await openMetadataFile(file, { readOnly: true });
  try {
    const md = await PoolMetadata.open(dev);
    const highest: number[] = [];
    for (let id = 0; id < XML_DEVICES; id++) highest.push((await md.highestMapped(id)) ?? 0);
    const lookups: LookupPass[] = [];
    for (const pass of ['first pass (cold cache)', 'second pass (same vblocks)']) {
      const rng = mulberry32(0x5ca1e);
      const readsBefore = md.cacheStats.reads;
      let hits = 0;
      const start = performance.now();
      for (let i = 0; i < SCALE_LOOKUPS; i++) {
        const id = Math.floor(rng() * XML_DEVICES);
        const vblock = Math.floor(rng() * ((highest[id] ?? 0) + 1));
        if ((await md.lookup(id, vblock)) !== undefined) hits++;
      }
      const seconds = (performance.now() - start) / 1000;
      const reads = md.cacheStats.reads - readsBefore;
      lookups.push({
        pass,
        lookups: SCALE_LOOKUPS,
        hits,
        seconds,
        readsPerLookup: reads / SCALE_LOOKUPS,
      });
    }
    const stats = md.cacheStats;
    const cache = {
      capacityBlocks: stats.capacity,
      cachedBlocks: stats.cachedBlocks,
      metadataBlocksUsed: md.metadataUsage.usedBlocks,
    };
    await md.close();
    return { lookups, cache };
  } finally {
    await dev.close();
  }
}

async function main(argv: readonly string[]): Promise<void> {
  const at = (flag: string): string | undefined => argv[argv.indexOf(flag) + 1];
  const n = Number(at('--mappings'));
  const dir = at('--dir');
  if (!Number.isSafeInteger(n) || n < 100 || dir === undefined) {
    throw new Error('usage: metadata-scale.ts --mappings N --dir DIR');
  }
  const results = await scaleChild(dir, n);
  process.stdout.write(`${JSON.stringify(results)}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main(process.argv.slice(2));
}
