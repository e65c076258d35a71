/**
 * The metadata engine's benchmark: PoolMetadata on a sparse metadata file (inserts,
 * lookups, commit latency, snapshots, memory and disk use), then thinp's offline tools
 * against thin-provisioning-tools on the same XML and the same files, in the same run.
 *
 *     npm run bench -- metadata [--mappings N] [--cache-blocks N] [--scale-mappings N]
 *
 * The long run (`npm run bench -- metadata`) ends with the tools and scattered lookups at
 * 10,000,000 mappings in a process of its own (metadata-scale.ts), with its peak RSS.
 */

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PoolMetadata } from '../src/thin/index.js';
import {
  type BlockDevice,
  checkMetadata,
  createMetadataFile,
  DumpWriter,
  dumpMetadata,
  openMetadataFile,
  restoreMetadata,
} from '../src/tools/index.js';
import { findOnPath } from '../src/util/index.js';
import { runScaleBench, SCALE_RSS_LIMIT, type ScaleResults } from './metadata-scale.js';
import { mulberry32, permutation } from './random.js';
import {
  type Align,
  formatBytes,
  formatCount,
  formatRate,
  formatRatio,
  formatSeconds,
  machineInfo,
  markdownTable,
  type ReportSection,
  renderReport,
  writeReport,
} from './report.js';

export const DEFAULT_MAPPINGS = 1_000_000;
/** Inserts between two commits in the insert phases. */
export const INSERT_COMMIT_EVERY = 10_000;
/** Changed mappings per transaction in the commit latency phase. */
export const COMMIT_SIZES = [1, 100, 10_000] as const;
/** Snapshot batches: each is timed on its own. */
export const SNAPSHOT_BATCHES = [1, 100, 10_000] as const;
/** Devices in the generated thin_dump XML. */
export const XML_DEVICES = 4;
/** The peer's programs, from the Debian package thin-provisioning-tools. */
export const PEER_PROGRAMS = ['thin_restore', 'thin_dump', 'thin_check'] as const;

const DATA_BLOCK_SECTORS = 128;
/** Where Debian installs the peer, often missing from a non-root PATH. */
const PEER_SEARCH_PATH = [process.env.PATH ?? '', '/usr/sbin', '/sbin'].join(path.delimiter);
const DEFAULT_RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));

export interface MetadataBenchOptions {
  /** Mappings per phase (default 1,000,000). */
  mappings?: number;
  /** The block cache of the pool under test (default: the engine's own default). */
  cacheBlocks?: number;
  /**
   * Mappings of the scale run (tools and scattered lookups in a process of its own); 0 or
   * absent for none. `npm run bench -- metadata` runs 10,000,000.
   */
  scaleMappings?: number;
  /** Where the report goes (default bench/results). */
  resultsDir?: string;
  /** Parent of the scratch folder holding the metadata files (default the system's temp). */
  tempDir?: string;
  /** The command line to record in the report (default: the one these options make). */
  command?: string;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

export interface Throughput {
  operation: string;
  count: number;
  seconds: number;
  perSecond: number;
  detail: string;
}

export interface CommitLatency {
  changes: number;
  commits: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

export interface SnapshotTiming {
  snapshots: number;
  seconds: number;
  commitSeconds: number;
}

export interface MemorySample {
  after: string;
  maxRssBytes: number;
  heapUsedBytes: number;
  fileAllocatedBytes: number;
  fileApparentBytes: number;
  /** Metadata blocks in use by the pool, when the sample was taken from an open pool. */
  metadataBlocksUsed?: number;
}

export interface PeerTiming {
  operation: string;
  thinpSeconds: number;
  peerSeconds: number;
  /** thinp's seconds ÷ the peer's seconds: above 1 means thinp is slower. */
  ratio: number;
}

export interface FileUse {
  file: string;
  allocatedBytes: number;
  apparentBytes: number;
  metadataBlocksUsed: number;
}

export interface MetadataBenchResult {
  reportPath: string;
  /** The tables, as printed. */
  text: string;
  mappings: number;
  throughput: Throughput[];
  commits: CommitLatency[];
  snapshots: SnapshotTiming[];
  memory: MemorySample[];
  peer: PeerTiming[];
  peerFiles: FileUse[];
  xml: { bytes: number; runs: number; mappings: number };
  /** thin_dump and thinp's dump printed the same bytes for the same file. */
  dumpsIdentical: boolean;
  /** The dump of the restored file is byte for byte the generated XML. */
  roundTripIdentical: boolean;
  /** thin_check passes the file that thinp's restore wrote. */
  thinpRestorePassesThinCheck: boolean;
  /** The scale run, when there was one. */
  scale: ScaleResults | undefined;
  seconds: number;
}

/** An option out of range: the message names it. */
export class BenchOptionError extends Error {
  override name = 'BenchOptionError';
}

/** A peer program is missing: the message says how to install it. */
export class MissingPeerError extends Error {
  override name = 'MissingPeerError';
}

/** Runs the whole benchmark and writes its report; resolves with the numbers. */
export async function runMetadataBench(
  options: MetadataBenchOptions = {},
): Promise<MetadataBenchResult> {
  const n = options.mappings ?? DEFAULT_MAPPINGS;
  if (!Number.isSafeInteger(n) || n < 100) {
    throw new BenchOptionError(`--mappings ${n}: give a whole number of at least 100`);
  }
  if (
    options.cacheBlocks !== undefined &&
    (!Number.isSafeInteger(options.cacheBlocks) || options.cacheBlocks < 16)
  ) {
    throw new BenchOptionError(
      `--cache-blocks ${options.cacheBlocks}: give a whole number of at least 16`,
    );
  }
  const scaleN = options.scaleMappings;
  if (scaleN !== undefined && scaleN !== 0 && (!Number.isSafeInteger(scaleN) || scaleN < 100)) {
    throw new BenchOptionError(
      `--scale-mappings ${scaleN}: give 0 (no scale run) or a whole number of at least 100`,
    );
  }
  const log = options.log ?? (() => {});
  const started = new Date();
  const t0 = performance.now();
  const peers = await findPeers();
  const tempParent = options.tempDir ?? os.tmpdir();
  const dir = await mkdtemp(path.join(tempParent, 'thinp-bench-'));
  const command = options.command ?? defaultCommand(options);
  const commands = [command];
  try {
    const engine = await engineBench(dir, n, options.cacheBlocks, log);
    const peer = await peerBench(dir, n, peers, commands, engine.memory, log);
    const scaleMappings = options.scaleMappings ?? 0;
    let scale: ScaleResults | undefined;
    if (scaleMappings > 0) {
      log(`scale: ${formatCount(scaleMappings)} mappings in a process of its own`);
      scale = await runScaleBench(tempParent, scaleMappings);
      commands.push(
        `# scale run, a process of its own: ${formatCount(scaleMappings)} mappings`,
        ...scale.commands,
      );
    }
    const seconds = (performance.now() - t0) / 1000;
    const machine = await machineInfo(dir);
    const results = [
      ...resultSections(n, options.cacheBlocks, engine, peer),
      ...(scale === undefined ? [] : scaleSections(scale)),
    ];
    const text = results.map((s) => `${s.heading}\n\n${s.body}`).join('\n\n');
    const report = renderReport({
      title: `thinp metadata benchmark: ${formatCount(n)} mappings`,
      date: started,
      machine,
      commands,
      results,
      notes: [...notes(n, options.cacheBlocks, peer, seconds), ...scaleNotes(scale)],
    });
    const reportPath = await writeReport(
      options.resultsDir ?? DEFAULT_RESULTS_DIR,
      'metadata',
      started,
      report,
    );
    return { reportPath, text, mappings: n, ...engine, ...peer, scale, seconds };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function defaultCommand(options: MetadataBenchOptions): string {
  const parts = ['npm run bench -- metadata'];
  if (options.mappings !== undefined) parts.push(`--mappings ${options.mappings}`);
  if (options.cacheBlocks !== undefined) parts.push(`--cache-blocks ${options.cacheBlocks}`);
  if (options.scaleMappings !== undefined) parts.push(`--scale-mappings ${options.scaleMappings}`);
  return parts.join(' ');
}

export type Peers = Record<(typeof PEER_PROGRAMS)[number], string>;

/** The peer's programs, or a `MissingPeerError` naming every missing one. */
export async function findPeers(): Promise<Peers> {
  const found = await Promise.all(PEER_PROGRAMS.map((p) => findOnPath(p, PEER_SEARCH_PATH)));
  const missing = PEER_PROGRAMS.filter((_, i) => found[i] === undefined);
  if (missing.length > 0) {
    throw new MissingPeerError(
      `${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not installed: the ` +
        'benchmark compares thinp with them in the same run. They come with the Debian ' +
        "package thin-provisioning-tools; install it with 'npm run deps:test'",
    );
  }
  const [restore, dump, check] = found as [string, string, string];
  return { thin_restore: restore, thin_dump: dump, thin_check: check };
}

// ---------------------------------------------------------------------------------------
// The engine: PoolMetadata on a sparse file

interface EngineResults {
  throughput: Throughput[];
  commits: CommitLatency[];
  snapshots: SnapshotTiming[];
  memory: MemorySample[];
}

/** Enough metadata space for `mappings` mappings at any leaf fill, with room to shadow. */
export function metadataFileSize(mappings: number): number {
  const bytes = Math.max(64 << 20, mappings * 256);
  return Math.ceil(bytes / (1 << 20)) * (1 << 20);
}

async function engineBench(
  dir: string,
  n: number,
  cacheBlocks: number | undefined,
  log: (line: string) => void,
): Promise<EngineResults> {
  const file = path.join(dir, 'engine.meta');
  const dev = await createMetadataFile(file, metadataFileSize(2 * n));
  const commitChanges = COMMIT_SIZES.reduce((sum, s) => sum + s * commitRounds(n, s), 0);
  const cache = cacheBlocks === undefined ? {} : { cacheBlocks };
  const md = await PoolMetadata.format(dev, {
    dataBlockSize: DATA_BLOCK_SECTORS,
    nrDataBlocks: 2 * n + commitChanges + 1024,
    ...cache,
  });
  const throughput: Throughput[] = [];
  const commits: CommitLatency[] = [];
  const snapshots: SnapshotTiming[] = [];
  const memory: MemorySample[] = [];
  const sample = async (after: string): Promise<void> => {
    memory.push({
      ...(await memorySample(after, file)),
      metadataBlocksUsed: md.metadataUsage.usedBlocks,
    });
  };
  try {
    await sample('format');

    log(`insert: ${formatCount(n)} sequential vblocks into device 0`);
    await md.createThin(0);
    await md.commit();
    let start = performance.now();
    for (let v = 0; v < n; v++) {
      await md.insertMapping(0, v, await md.allocDataBlock());
      if ((v + 1) % INSERT_COMMIT_EVERY === 0) await md.commit();
    }
    await md.commit();
    throughput.push(
      rate(
        'insert, sequential',
        n,
        start,
        `device 0, vblocks 0..${formatCount(n - 1)}; allocDataBlock + insertMapping`,
      ),
    );
    await sample('insert, sequential');

    log(`insert: ${formatCount(n)} scattered vblocks into device 1`);
    await md.createThin(1);
    await md.commit();
    start = performance.now();
    for (let i = 0; i < n; i++) {
      await md.insertMapping(1, scatter(i), await md.allocDataBlock());
      if ((i + 1) % INSERT_COMMIT_EVERY === 0) await md.commit();
    }
    await md.commit();
    throughput.push(
      rate(
        'insert, random order',
        n,
        start,
        'device 1, vblocks scattered over 0..2^32-1 by a multiplicative hash',
      ),
    );
    await sample('insert, random order');

    log(`lookup: ${formatCount(n)} lookups in random order, then in sequence`);
    const order = permutation(n, 0x5eed);
    start = performance.now();
    for (let i = 0; i < n; i++) await mustFind(md, 0, order[i] ?? 0);
    throughput.push(
      rate('lookup, random order', n, start, 'device 0, each mapped vblock once, shuffled'),
    );
    start = performance.now();
    for (let v = 0; v < n; v++) await mustFind(md, 0, v);
    throughput.push(rate('lookup, sequential', n, start, 'device 0, vblocks in increasing order'));
    await sample('lookups');

    log('commit latency');
    const rng = mulberry32(0xc0ffee);
    for (const changes of COMMIT_SIZES) {
      const times: number[] = [];
      for (let round = 0; round < commitRounds(n, changes); round++) {
        for (let c = 0; c < changes; c++) {
          await md.insertMapping(0, Math.floor(rng() * n), await md.allocDataBlock());
        }
        const t = performance.now();
        await md.commit();
        times.push((performance.now() - t) / 1000);
      }
      commits.push(latency(changes, times));
    }
    await sample('commit latency');

    log('snapshots of device 0');
    let nextId = 2;
    for (const batch of SNAPSHOT_BATCHES) {
      start = performance.now();
      for (let i = 0; i < batch; i++) await md.createSnapshot(nextId++, 0);
      const seconds = (performance.now() - start) / 1000;
      const t = performance.now();
      await md.commit();
      snapshots.push({ snapshots: batch, seconds, commitSeconds: (performance.now() - t) / 1000 });
    }
    await sample('snapshots');
    await md.close();
  } finally {
    await dev.close();
  }
  return { throughput, commits, snapshots, memory };
}

/**
 * Transactions timed for `changes` changed mappings each: about a fifth of the pool's
 * mappings in all, at least 3 and at most 100 transactions.
 */
export function commitRounds(mappings: number, changes: number): number {
  return Math.max(3, Math.min(100, Math.floor(mappings / 5 / changes)));
}

async function mustFind(md: PoolMetadata, id: number, vblock: number): Promise<void> {
  if ((await md.lookup(id, vblock)) === undefined) {
    throw new Error(`benchmark: device ${id} block ${vblock} is not mapped after its insert`);
  }
}

function rate(operation: string, count: number, start: number, detail: string): Throughput {
  const seconds = (performance.now() - start) / 1000;
  return { operation, count, seconds, perSecond: count / seconds, detail };
}

function latency(changes: number, times: number[]): CommitLatency {
  const sorted = [...times].sort((a, b) => a - b);
  const at = (p: number): number => sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] ?? 0;
  return {
    changes,
    commits: sorted.length,
    p50: at(0.5),
    p99: at(0.99),
    max: sorted[sorted.length - 1] ?? 0,
    mean: sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length),
  };
}

export async function memorySample(after: string, file: string): Promise<MemorySample> {
  const st = await stat(file);
  return {
    after,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    heapUsedBytes: process.memoryUsage().heapUsed,
    fileAllocatedBytes: st.blocks * 512,
    fileApparentBytes: st.size,
  };
}

/** A bijection of 0..2^32-1 (an odd multiplier): distinct vblocks spread over the range. */
function scatter(i: number): number {
  return Math.imul(i, 0x9e3779b1) >>> 0;
}

// ---------------------------------------------------------------------------------------
// The peer: thin-provisioning-tools against thinp's tools, same XML, same files

export interface PeerResults {
  peer: PeerTiming[];
  peerFiles: FileUse[];
  xml: { bytes: number; runs: number; mappings: number };
  dumpsIdentical: boolean;
  roundTripIdentical: boolean;
  thinpRestorePassesThinCheck: boolean;
}

export async function peerBench(
  dir: string,
  n: number,
  peers: Peers,
  commands: string[],
  memory: MemorySample[],
  log: (line: string) => void,
): Promise<PeerResults> {
  const xmlFile = path.join(dir, 'dump.xml');
  const peerMeta = path.join(dir, 'peer.meta');
  const thinpMeta = path.join(dir, 'thinp.meta');
  const peerDump = path.join(dir, 'peer-dump.xml');
  const thinpDump = path.join(dir, 'thinp-dump.xml');
  const size = metadataFileSize(n);

  log(`peer: writing a thin_dump XML of ${formatCount(n)} mappings`);
  const xml = await writeXml(xmlFile, n);
  const peer: PeerTiming[] = [];

  log('peer: restore');
  await (await createMetadataFile(peerMeta, size)).close();
  commands.push(`truncate -s ${size} ${peerMeta}   # done in-process (ftruncate), untimed`);
  const peerRestore = await timePeer(peers.thin_restore, ['-i', xmlFile, '-o', peerMeta], commands);
  const thinpDev = await createMetadataFile(thinpMeta, size);
  let start = performance.now();
  let summary: Awaited<ReturnType<typeof restoreMetadata>>;
  try {
    summary = await restoreMetadata(createReadStream(xmlFile), thinpDev);
  } finally {
    await thinpDev.close();
  }
  peer.push(timing('restore', (performance.now() - start) / 1000, peerRestore));
  commands.push(
    `# thinp, in-process: restoreMetadata(createReadStream('${xmlFile}'), ${thinpMeta})`,
  );
  if (summary.mappings !== n) {
    throw new Error(`benchmark: thinp restored ${summary.mappings} mappings, not ${n}`);
  }
  memory.push(await memorySample('peer restore (thinp.meta)', thinpMeta));

  log('peer: dump');
  const peerDumpSeconds = await timePeer(peers.thin_dump, [peerMeta], commands, peerDump);
  start = performance.now();
  await withDevice(peerMeta, async (dev) => {
    const out = await open(thinpDump, 'w');
    try {
      await dumpMetadata(dev, async (chunk) => {
        await out.write(chunk);
      });
    } finally {
      await out.close();
    }
  });
  peer.push(timing('dump', (performance.now() - start) / 1000, peerDumpSeconds));
  commands.push(`# thinp, in-process: dumpMetadata(${peerMeta}) > ${thinpDump}`);
  const dumpsIdentical = await sameBytes(peerDump, thinpDump);
  const roundTripIdentical = await sameBytes(peerDump, xmlFile);
  memory.push(await memorySample('peer dump (thinp.meta)', thinpMeta));

  log('peer: check');
  const peerCheck = await timePeer(peers.thin_check, [peerMeta], commands);
  start = performance.now();
  const report = await withDevice(peerMeta, (dev) => checkMetadata(dev));
  peer.push(timing('check', (performance.now() - start) / 1000, peerCheck));
  commands.push(`# thinp, in-process: checkMetadata(${peerMeta})`);
  if (report.problems.length > 0 || report.mappings !== n) {
    const first = report.problems[0];
    throw new Error(
      `benchmark: thinp's check of ${peerMeta} found ${report.problems.length} problems ` +
        `and ${report.mappings} mappings${first === undefined ? '' : `: ${first.message}`}`,
    );
  }
  memory.push(await memorySample('peer check (thinp.meta)', thinpMeta));

  // Not timed: the file thinp restored must satisfy the reference checker too.
  const verify = await runPeer(peers.thin_check, [thinpMeta]);
  commands.push(`${peers.thin_check} ${thinpMeta}   # not timed: validates thinp's restore`);

  const peerFiles = [
    await fileUse('written by thin_restore', peerMeta),
    await fileUse("written by thinp's restoreMetadata", thinpMeta),
  ];
  return {
    peer,
    peerFiles,
    xml,
    dumpsIdentical,
    roundTripIdentical,
    thinpRestorePassesThinCheck: verify.status === 0,
  };
}

/** Whether two files hold the same bytes, compared a chunk at a time. */
async function sameBytes(a: string, b: string): Promise<boolean> {
  const [fa, fb] = await Promise.all([open(a, 'r'), open(b, 'r')]);
  try {
    const [sa, sb] = await Promise.all([fa.stat(), fb.stat()]);
    if (sa.size !== sb.size) return false;
    const ba = Buffer.alloc(1 << 20);
    const bb = Buffer.alloc(1 << 20);
    for (let at = 0; at < sa.size; at += ba.length) {
      const [ra, rb] = await Promise.all([
        fa.read(ba, 0, ba.length, at),
        fb.read(bb, 0, bb.length, at),
      ]);
      if (ra.bytesRead !== rb.bytesRead) return false;
      if (!ba.subarray(0, ra.bytesRead).equals(bb.subarray(0, rb.bytesRead))) return false;
    }
    return true;
  } finally {
    await Promise.all([fa.close(), fb.close()]);
  }
}

function timing(operation: string, thinpSeconds: number, peerSeconds: number): PeerTiming {
  return { operation, thinpSeconds, peerSeconds, ratio: thinpSeconds / peerSeconds };
}

async function withDevice<T>(file: string, fn: (dev: BlockDevice) => Promise<T>): Promise<T> {
  const dev = await openMetadataFile(file, { readOnly: true });
  try {
    return await fn(dev);
  } finally {
    await dev.close();
  }
}

async function fileUse(label: string, file: string): Promise<FileUse> {
  const st = await stat(file);
  const used = await withDevice(file, async (dev) => {
    const md = await PoolMetadata.open(dev);
    try {
      return md.metadataUsage.usedBlocks;
    } finally {
      await md.close();
    }
  });
  return {
    file: label,
    allocatedBytes: st.blocks * 512,
    apparentBytes: st.size,
    metadataBlocksUsed: used,
  };
}

/**
 * Writes a thin_dump XML of `n` mappings: `XML_DEVICES` devices of about n/4 mappings,
 * in runs of varied length (half single mappings, the rest up to 1,024 long) separated by
 * gaps, so that neither tool can merge them. Data blocks are distinct across the pool.
 */
async function writeXml(
  file: string,
  n: number,
): Promise<{ bytes: number; runs: number; mappings: number }> {
  const rng = mulberry32(0xd0d0);
  const out = await open(file, 'w');
  let runs = 0;
  try {
    const writer = new DumpWriter(async (chunk) => {
      await out.write(chunk);
    });
    const perDevice = Array.from(
      { length: XML_DEVICES },
      (_, d) => Math.floor(n / XML_DEVICES) + (d < n % XML_DEVICES ? 1 : 0),
    );
    const plan: Array<Array<{ vblock: number; length: number; time: number }>> = [];
    for (const count of perDevice) {
      const device: Array<{ vblock: number; length: number; time: number }> = [];
      let vblock = Math.floor(rng() * 1024);
      for (let left = count; left > 0; ) {
        const length = Math.min(left, runLength(rng));
        device.push({ vblock, length, time: rng() < 0.5 ? 0 : 1 });
        vblock += length + 1 + Math.floor(rng() * 64);
        left -= length;
      }
      plan.push(device);
    }
    await writer.superblock({
      uuid: '',
      time: 1,
      transaction: 1,
      flags: 0,
      version: 2,
      dataBlockSize: DATA_BLOCK_SECTORS,
      nrDataBlocks: n + (n >> 4) + 1024,
    });
    let dataBlock = 0;
    for (const [devId, device] of plan.entries()) {
      await writer.device({
        devId,
        mappedBlocks: perDevice[devId] ?? 0,
        transaction: 0,
        creationTime: 0,
        snapTime: 0,
      });
      for (const run of device) {
        await writer.run({ vblock: run.vblock, dataBlock, length: run.length, time: run.time });
        dataBlock += run.length + (rng() < 0.25 ? 1 : 0);
        runs++;
      }
      await writer.endDevice();
    }
    await writer.end();
  } finally {
    await out.close();
  }
  return { bytes: (await stat(file)).size, runs, mappings: n };
}

/** Half single mappings; the rest 2..16, 17..128 or 129..1,024 long. */
function runLength(rng: () => number): number {
  const r = rng();
  if (r < 0.5) return 1;
  if (r < 0.8) return 2 + Math.floor(rng() * 15);
  if (r < 0.95) return 17 + Math.floor(rng() * 112);
  return 129 + Math.floor(rng() * 896);
}

interface PeerRun {
  status: number;
  stderr: string;
  seconds: number;
}

/** Runs `program args`, stdout to `stdoutFile` or nowhere; timed from spawn to exit. */
async function runPeer(
  program: string,
  args: readonly string[],
  stdoutFile?: string,
): Promise<PeerRun> {
  const out = stdoutFile === undefined ? undefined : await open(stdoutFile, 'w');
  try {
    const start = performance.now();
    const child = spawn(program, args, {
      stdio: ['ignore', out === undefined ? 'ignore' : out.fd, 'pipe'],
    });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const [code, signal] = (await once(child, 'close')) as [number | null, string | null];
    const seconds = (performance.now() - start) / 1000;
    return { status: code ?? (signal === null ? 1 : 128), stderr, seconds };
  } finally {
    await out?.close();
  }
}

/** Runs a peer command, records it, and returns its seconds; throws unless it exits 0. */
async function timePeer(
  program: string,
  args: readonly string[],
  commands: string[],
  stdoutFile?: string,
): Promise<number> {
  const line = [program, ...args].join(' ') + (stdoutFile === undefined ? '' : ` > ${stdoutFile}`);
  commands.push(line);
  const result = await runPeer(program, args, stdoutFile);
  if (result.status !== 0) {
    throw new Error(`${line} exited with status ${result.status}: ${result.stderr.trim()}`);
  }
  return result.seconds;
}

// ---------------------------------------------------------------------------------------
// The report

const RIGHT: Align = 'right';

function resultSections(
  n: number,
  cacheBlocks: number | undefined,
  engine: EngineResults,
  peer: PeerResults,
): ReportSection[] {
  const cache =
    cacheBlocks === undefined ? 'the default block cache' : `${cacheBlocks} cache blocks`;
  return [
    {
      heading: `Engine throughput (${formatCount(n)} mappings, ${cache})`,
      body: markdownTable(
        ['operation', 'count', 'seconds', 'per second', 'what'],
        engine.throughput.map((t) => [
          t.operation,
          formatCount(t.count),
          formatSeconds(t.seconds),
          formatRate(t.perSecond),
          t.detail,
        ]),
        ['left', RIGHT, RIGHT, RIGHT, 'left'],
      ),
    },
    {
      heading: 'Commit latency',
      body: markdownTable(
        ['changed mappings per commit', 'commits', 'p50', 'p99', 'max', 'mean'],
        engine.commits.map((c) => [
          formatCount(c.changes),
          formatCount(c.commits),
          formatSeconds(c.p50),
          formatSeconds(c.p99),
          formatSeconds(c.max),
          formatSeconds(c.mean),
        ]),
        ['left', RIGHT, RIGHT, RIGHT, RIGHT, RIGHT],
      ),
    },
    {
      heading: 'Snapshots of the big device',
      body: markdownTable(
        ['snapshots', 'seconds', 'per snapshot', 'commit after'],
        engine.snapshots.map((s) => [
          formatCount(s.snapshots),
          formatSeconds(s.seconds),
          formatSeconds(s.seconds / s.snapshots),
          formatSeconds(s.commitSeconds),
        ]),
        ['left', RIGHT, RIGHT, RIGHT],
      ),
    },
    {
      heading: 'Memory and metadata file after each phase',
      body: markdownTable(
        ['after', 'max RSS', 'heap used', 'file allocated', 'file apparent size', 'blocks used'],
        engine.memory.map((m) => [
          m.after,
          formatBytes(m.maxRssBytes),
          formatBytes(m.heapUsedBytes),
          formatBytes(m.fileAllocatedBytes),
          formatBytes(m.fileApparentBytes),
          m.metadataBlocksUsed === undefined ? '—' : formatCount(m.metadataBlocksUsed),
        ]),
        ['left', RIGHT, RIGHT, RIGHT, RIGHT, RIGHT],
      ),
    },
    {
      heading: `thinp vs thin-provisioning-tools (same XML: ${formatCount(peer.xml.mappings)} mappings, ${XML_DEVICES} devices, ${formatCount(peer.xml.runs)} runs, ${formatBytes(peer.xml.bytes)})`,
      body: peerTable(n, peer.peer),
    },
    {
      heading: 'Restored metadata files',
      body: markdownTable(
        ['file', 'allocated', 'apparent size', 'metadata blocks used'],
        peer.peerFiles.map((f) => [
          f.file,
          formatBytes(f.allocatedBytes),
          formatBytes(f.apparentBytes),
          formatCount(f.metadataBlocksUsed),
        ]),
        ['left', RIGHT, RIGHT, RIGHT],
      ),
    },
  ];
}

function notes(
  n: number,
  cacheBlocks: number | undefined,
  peer: PeerResults,
  seconds: number,
): string[] {
  const yesNo = (b: boolean): string => (b ? 'yes' : 'NO');
  return [
    `The whole run took ${formatSeconds(seconds)}.`,
    'All files are sparse files in one scratch folder under the temp directory (same file ' +
      'system as "disk" above), removed at the end. Data block size 64 KiB (128 sectors).',
    `Insert: one allocDataBlock and one insertMapping per mapping, a commit every ` +
      `${formatCount(INSERT_COMMIT_EVERY)} (included in the time). "random order" inserts into a ` +
      'second device of the same pool, so its tree is as large as the first one.',
    'Lookup: PoolMetadata.lookup on the committed pool, each call through the public API ' +
      '(lock, details, top-level tree, bottom tree).',
    `Commit latency: each transaction overwrites that many random vblocks of device 0 ` +
      '(allocate a new block, remap; the old block is released), then only commit() is ' +
      'timed: writing the dirty blocks, fdatasync, the superblock, fdatasync. Percentiles are ' +
      `nearest-rank over the "commits" samples (p99 of fewer than 100 samples is close to the max).`,
    'Snapshots: createSnapshot of device 0 (the sequential device, plus the overwrites of the ' +
      'commit phase), each O(1): a new top-level entry sharing the root. Batches are cumulative ' +
      '(the 10,000 come after the first 101); the commit after each batch is timed apart.',
    'Memory: max RSS is the process peak so far (process.resourceUsage().maxRSS), heap used is ' +
      'the V8 heap at that moment (no forced GC). "file allocated" is stat blocks × 512 of the ' +
      `engine's metadata file; its apparent size is fixed at format time. "blocks used" is the ` +
      "metadata space map's count of 4 KiB blocks in use. " +
      `${cacheBlocks === undefined ? "The block cache is the engine's default: it follows the metadata in use (the blocks in use and a quarter more, re-sized at every commit), from 1,024 blocks (4 MiB) up to 16,384 (64 MiB)." : `The block cache holds ${formatCount(cacheBlocks)} blocks.`} ` +
      'A sparse file never shrinks, so "file allocated" is the high-water mark of blocks ever ' +
      'written, not the blocks in use. The peer rows sample the file thinp restored (thinp.meta).',
    `Peer: one thin_dump XML written by thinp's DumpWriter (${formatCount(n)} mappings over ` +
      `${XML_DEVICES} devices). thin_restore and restoreMetadata each write a fresh sparse file of ` +
      'the same size; thin_dump / dumpMetadata and thin_check / checkMetadata then read the file ' +
      'thin_restore wrote, so both tools read identical bytes. Peer times are wall time from ' +
      'spawn to exit (process start included); thinp times are in-process wall time. Every ' +
      'file is in the page cache for both tools. Mappings/s is mappings ÷ seconds; "thinp ÷ ' +
      'peer" is thinp seconds ÷ peer seconds, so above 1 means thinp is slower.',
    'restoreMetadata builds the pool in one transaction, bottom-up (leaves packed full and ' +
      'written as they fill, the upper levels, the space maps and the superblock at the end); ' +
      'checkMetadata checks the data space map and the superblock fields too, which ' +
      'thin_check 0.9.0 does not.',
    `thin_dump and thinp's dump printed identical bytes: ${yesNo(peer.dumpsIdentical)}. ` +
      `The dump is byte for byte the generated XML: ${yesNo(peer.roundTripIdentical)}. ` +
      `thin_check accepts the file thinp restored: ${yesNo(peer.thinpRestorePassesThinCheck)}.`,
  ];
}

function peerTable(n: number, peer: PeerTiming[]): string {
  return markdownTable(
    [
      'operation',
      'thinp',
      'thinp mappings/s',
      'thin-provisioning-tools',
      'peer mappings/s',
      'thinp ÷ peer (time)',
    ],
    peer.map((p) => [
      p.operation,
      formatSeconds(p.thinpSeconds),
      formatRate(n / p.thinpSeconds),
      formatSeconds(p.peerSeconds),
      formatRate(n / p.peerSeconds),
      formatRatio(p.ratio),
    ]),
    ['left', RIGHT, RIGHT, RIGHT, RIGHT, RIGHT],
  );
}

function scaleSections(scale: ScaleResults): ReportSection[] {
  const n = scale.mappings;
  return [
    {
      heading: `At ${formatCount(n)} mappings, a process of its own: thinp vs thin-provisioning-tools (same XML: ${XML_DEVICES} devices, ${formatCount(scale.xml.runs)} runs, ${formatBytes(scale.xml.bytes)})`,
      body: peerTable(n, scale.peer),
    },
    {
      heading: `At ${formatCount(n)} mappings: scattered lookups with the default cache`,
      body: markdownTable(
        ['pass', 'lookups', 'mapped', 'seconds', 'per second', 'blocks read per lookup'],
        scale.lookups.map((l) => [
          l.pass,
          formatCount(l.lookups),
          formatCount(l.hits),
          formatSeconds(l.seconds),
          formatRate(l.lookups / l.seconds),
          l.readsPerLookup.toFixed(3),
        ]),
        ['left', RIGHT, RIGHT, RIGHT, RIGHT, RIGHT],
      ),
    },
    {
      heading: `At ${formatCount(n)} mappings: memory`,
      body: markdownTable(
        ['after', 'max RSS', 'heap used', 'file allocated', 'file apparent size'],
        scale.memory.map((m) => [
          m.after,
          formatBytes(m.maxRssBytes),
          formatBytes(m.heapUsedBytes),
          formatBytes(m.fileAllocatedBytes),
          formatBytes(m.fileApparentBytes),
        ]),
        ['left', RIGHT, RIGHT, RIGHT, RIGHT],
      ),
    },
  ];
}

function scaleNotes(scale: ScaleResults | undefined): string[] {
  if (scale === undefined) return [];
  const yesNo = (b: boolean): string => (b ? 'yes' : 'NO');
  return [
    `Scale run: ${formatCount(scale.mappings)} mappings, in a child process (bench/metadata-scale.ts) so that its peak RSS is its own: the same restore, dump and check against the peer as above on an XML of that size, then ${formatCount(scale.lookups[0]?.lookups ?? 0)} lookups at random vblocks of random devices (below each device's highest mapped vblock; most are mapped), twice with the same seed, through PoolMetadata.lookup on the pool thinp restored, opened with the default cache. ` +
      `The cache sized itself from the metadata in use: ${formatCount(scale.cache.capacityBlocks)} blocks (${formatBytes(scale.cache.capacityBlocks * 4096)}) for ${formatCount(scale.cache.metadataBlocksUsed)} blocks in use; it held ${formatCount(scale.cache.cachedBlocks)} at the end. "blocks read per lookup" counts metadata blocks read from the file (the page cache) per lookup.`,
    `Scale run peak RSS: ${formatBytes(scale.maxRssBytes)} (limit ${formatBytes(SCALE_RSS_LIMIT)}: ${yesNo(scale.maxRssBytes <= SCALE_RSS_LIMIT)}). ` +
      `thin_dump and thinp's dump identical: ${yesNo(scale.dumpsIdentical)}; the dump is the generated XML: ${yesNo(scale.roundTripIdentical)}; thin_check accepts thinp's restore: ${yesNo(scale.thinpRestorePassesThinCheck)}.`,
  ];
}
