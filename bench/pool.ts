/**
 * The pool's data path benchmark: a loop-mode ThinPool (sparse data and metadata files)
 * against plain positional I/O on a sparse file of the same disk, then snapshot creation,
 * reads at snapshot depth 1 and 100, and the cost of copy-on-write.
 *
 *     npm run bench -- pool [--size BYTES] [--seconds S] [--queue-depth N]
 */

import { execFile } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { FileDevice, nativeStatus } from '../src/block/index.js';
import { type ThinDevice, ThinPool } from '../src/pool/index.js';
import { BenchOptionError } from './metadata.js';
import { type DirectRow, runDirectPhase } from './pool-direct.js';

export type { DirectRow } from './pool-direct.js';

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

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** The thin device and plain file size: one pass of the sequential phases. */
export const DEFAULT_SIZE = 1 * GiB;
/** Seconds per timed phase. */
export const DEFAULT_SECONDS = 2.5;
/** The queue depth of the concurrent runs (each workload also runs at depth 1). */
export const DEFAULT_QUEUE_DEPTH = 32;
/** The pool's data block size. */
export const BLOCK_SIZE = 64 * KiB;
/** The small and the large I/O. */
export const SMALL_IO = 4 * KiB;
export const LARGE_IO = 1 * MiB;
/** The pool's commit timer, as the daemon runs it. */
export const COMMIT_INTERVAL_MS = 1000;
/** Snapshot batches of one device: cumulative, each timed on its own. */
export const SNAPSHOT_BATCHES = [1, 100, 10_000] as const;
/** The snapshot chain's length, and the share of blocks each level overwrites. */
export const CHAIN_DEPTH = 100;
export const CHAIN_OVERWRITE_SHARE = 0.01;
/**
 * The fresh-space random write phases write one 4 KiB piece into each block of a region
 * this many times `size`, so that a phase seldom runs out of fresh blocks before its time.
 */
export const FRESH_SPAN_FACTOR = 16;

/** Slices of a read comparison, alternating its two sides. */
const READ_ROUNDS = 6;
/** Concurrency of the untimed fills. */
const FILL_QUEUE_DEPTH = 8;
const DEFAULT_RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));

export interface PoolBenchOptions {
  /** Thin device and plain file size in bytes, a multiple of 1 MiB (default 1 GiB). */
  size?: number;
  /** Seconds per timed phase (default 2.5). */
  seconds?: number;
  /** The concurrent queue depth (default 32); every workload also runs at depth 1. */
  queueDepth?: number;
  /** The metadata block cache of the pool under test (default: the engine's). */
  cacheBlocks?: number;
  /** Where the report goes (default bench/results). */
  resultsDir?: string;
  /** Parent of the scratch folder holding the files (default the system's temp). */
  tempDir?: string;
  /** The command line to record in the report (default: the one these options make). */
  command?: string;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

/** One timed run of one workload at one queue depth on one target. */
export interface Measurement {
  workload: string;
  /** `file`, `pool`, `depth 1`, `unshared`, `shared`… */
  target: string;
  queueDepth: number;
  /** Bytes per operation. */
  ioBytes: number;
  ops: number;
  /** Wall time of the run, the final flush included for writes. */
  seconds: number;
  /** The final flush (pool: commit) alone; 0 for reads. */
  flushSeconds: number;
  iops: number;
  mibPerSecond: number;
  /** Per-operation latency percentiles (nearest rank), in seconds. */
  p50: number;
  p99: number;
  /** The run ran out of positions (fresh blocks, shared blocks, one pass) before its time. */
  exhausted: boolean;
  /** Pool counters during the run (0 for a plain file). */
  commits: number;
  provisions: number;
  copies: number;
}

/** A workload on the plain file and on the thin device, at one queue depth. */
export interface DataPathPair {
  workload: string;
  queueDepth: number;
  file: Measurement;
  pool: Measurement;
  /** pool IOPS ÷ file IOPS: 1 is the limit, below it the pool is slower. */
  ratio: number;
}

export interface SnapshotTiming {
  /** Snapshots in this batch. */
  snapshots: number;
  /** Snapshots of the device after the batch (the batches are cumulative). */
  total: number;
  seconds: number;
  commitSeconds: number;
}

export interface DepthPair {
  workload: string;
  queueDepth: number;
  shallow: Measurement;
  deep: Measurement;
  /** deep IOPS ÷ shallow IOPS: 1 means depth costs nothing. */
  ratio: number;
}

export interface ChainBuild {
  depth: number;
  blocksPerLevel: number;
  seconds: number;
  copies: number;
}

export interface CowPair {
  queueDepth: number;
  unshared: Measurement;
  shared: Measurement;
  /** shared IOPS ÷ unshared IOPS. */
  ratio: number;
}

export interface PoolEnd {
  dataBlocksUsed: number;
  dataBlocksTotal: number;
  metadataBlocksUsed: number;
  metadataBlocksTotal: number;
  dataFileAllocatedBytes: number;
  dataFileApparentBytes: number;
  metadataFileAllocatedBytes: number;
  metadataFileApparentBytes: number;
  commits: number;
  provisions: number;
  copies: number;
  discards: number;
}

export interface PoolBenchResult {
  reportPath: string;
  /** The tables, as printed. */
  text: string;
  size: number;
  phaseSeconds: number;
  queueDepth: number;
  dataPath: DataPathPair[];
  snapshots: SnapshotTiming[];
  chain: ChainBuild;
  depth: DepthPair[];
  cow: CowPair[];
  end: PoolEnd;
  /** New data blocks read as zeros (hole punching works), so partial writes need no zeroing. */
  newBlocksAreZero: boolean;
  /** The untimed fills: seconds to write the whole `size` through each, with the flush. */
  fill: { fileSeconds: number; poolSeconds: number };
  /** Direct mode: the pool on a loop device next to loop mode and raw fio. */
  direct: DirectRow[];
  seconds: number;
}

/** Runs the whole benchmark and writes its report; resolves with the numbers. */
export async function runPoolBench(options: PoolBenchOptions = {}): Promise<PoolBenchResult> {
  const size = options.size ?? DEFAULT_SIZE;
  const seconds = options.seconds ?? DEFAULT_SECONDS;
  const queueDepth = options.queueDepth ?? DEFAULT_QUEUE_DEPTH;
  checkOptions(size, seconds, queueDepth, options.cacheBlocks);
  const log = options.log ?? (() => {});
  const started = new Date();
  const t0 = performance.now();
  const dir = await mkdtemp(path.join(options.tempDir ?? os.tmpdir(), 'thinp-bench-'));
  const command = options.command ?? defaultCommand(options);
  const commands = [command];
  try {
    const run = await bench(dir, size, seconds, queueDepth, options.cacheBlocks, commands, log);
    const total = (performance.now() - t0) / 1000;
    const machine = await machineInfo(dir);
    const results = resultSections(size, queueDepth, run);
    const text = results.map((s) => `${s.heading}\n\n${s.body}`).join('\n\n');
    const report = renderReport({
      title: `thinp pool benchmark: ${formatBytes(size)} devices, ${seconds} s per phase, queue depth 1 and ${queueDepth}`,
      date: started,
      machine,
      commands,
      results,
      notes: notes(size, seconds, options.cacheBlocks, run, total),
    });
    const reportPath = await writeReport(
      options.resultsDir ?? DEFAULT_RESULTS_DIR,
      'pool',
      started,
      report,
    );
    return { reportPath, text, size, phaseSeconds: seconds, queueDepth, ...run, seconds: total };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function checkOptions(
  size: number,
  seconds: number,
  queueDepth: number,
  cacheBlocks: number | undefined,
): void {
  if (!Number.isSafeInteger(size) || size < 4 * MiB || size % MiB !== 0) {
    throw new BenchOptionError(`--size ${size}: give a whole number of MiB, at least 4M`);
  }
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 600) {
    throw new BenchOptionError(`--seconds ${seconds}: give a number above 0, at most 600`);
  }
  if (!Number.isSafeInteger(queueDepth) || queueDepth < 1 || queueDepth > 1024) {
    throw new BenchOptionError(`--queue-depth ${queueDepth}: give a whole number from 1 to 1024`);
  }
  if (cacheBlocks !== undefined && (!Number.isSafeInteger(cacheBlocks) || cacheBlocks < 16)) {
    throw new BenchOptionError(`--cache-blocks ${cacheBlocks}: give a whole number of at least 16`);
  }
}

function defaultCommand(options: PoolBenchOptions): string {
  const parts = ['npm run bench -- pool'];
  if (options.size !== undefined) parts.push(`--size ${options.size}`);
  if (options.seconds !== undefined) parts.push(`--seconds ${options.seconds}`);
  if (options.queueDepth !== undefined) parts.push(`--queue-depth ${options.queueDepth}`);
  if (options.cacheBlocks !== undefined) parts.push(`--cache-blocks ${options.cacheBlocks}`);
  return parts.join(' ');
}

// ---------------------------------------------------------------------------------------
// The run

interface RunResults {
  dataPath: DataPathPair[];
  snapshots: SnapshotTiming[];
  chain: ChainBuild;
  depth: DepthPair[];
  cow: CowPair[];
  end: PoolEnd;
  newBlocksAreZero: boolean;
  fill: { fileSeconds: number; poolSeconds: number };
  direct: DirectRow[];
}

/** Thin device ids. */
const DEV = {
  mapped: 1,
  freshRandom: 10,
  freshSequential: 20,
  cowSnapshot: 30,
  chain: 100,
  snapshots: 1000,
} as const;

/** Data file size: room for every phase's allocations, with slack. Sparse. */
function dataFileSize(size: number): number {
  // mapped (1) + fresh random (2 spans, at most) + sequential (2) + copies (2) + chain (1)
  // + the direct-mode phase's sequential writes (2).
  return (2 * FRESH_SPAN_FACTOR + 10) * size;
}

/** Metadata file size: enough for the chain's shadowed trees; sparse, so it costs nothing. */
function metadataFileSize(size: number): number {
  return Math.min(16 * GiB, Math.max(256 * MiB, Math.ceil(size / 4 / MiB) * MiB));
}

async function bench(
  dir: string,
  size: number,
  seconds: number,
  qd: number,
  cacheBlocks: number | undefined,
  commands: string[],
  log: (line: string) => void,
): Promise<RunResults> {
  const depths = qd === 1 ? [1] : [1, qd];
  const blocks = size / BLOCK_SIZE;
  const freshSpan = FRESH_SPAN_FACTOR * size;
  const opened: FileDevice[] = [];
  const file = async (name: string, bytes: number): Promise<FileDevice> => {
    const dev = await FileDevice.open(path.join(dir, name), { create: { size: bytes } });
    opened.push(dev);
    return dev;
  };
  try {
    const dataBytes = dataFileSize(size);
    const metaBytes = metadataFileSize(size);
    const data = await file('pool.data', dataBytes);
    const meta = await file('pool.meta', metaBytes);
    const pool = await ThinPool.create(data, meta, {
      blockSize: BLOCK_SIZE,
      commitIntervalMs: COMMIT_INTERVAL_MS,
      ...(cacheBlocks === undefined ? {} : { cacheBlocks }),
    });
    commands.push(
      `# in-process: sparse files in ${dir}: pool.data (${dataBytes} bytes), pool.meta ` +
        `(${metaBytes} bytes); ThinPool.create(data, meta, { blockSize: ${BLOCK_SIZE}, ` +
        `commitIntervalMs: ${COMMIT_INTERVAL_MS}${cacheBlocks === undefined ? '' : `, cacheBlocks: ${cacheBlocks}`} })`,
      `# in-process: plain FileDevice sparse files in ${dir}: file-mapped.img (${size} bytes), ` +
        `file-fresh-qdN.img (${freshSpan} bytes), file-seq-qdN.img (${size} bytes)`,
      'sync   # untimed, before every write run',
    );
    try {
      // The mapped device and the mapped file: written whole, untimed, then flushed.
      const fileMapped = await file('file-mapped.img', size);
      await pool.createThin(DEV.mapped);
      const mapped = pool.device(DEV.mapped, size);
      log(`fill: ${formatBytes(size)} into file-mapped.img and into thin device ${DEV.mapped}`);
      const fileSeconds = await fillWhole(fileMapped, size);
      const poolSeconds = await fillWhole(mapped, size);

      const dataPath: DataPathPair[] = [];
      const pair = async (
        workload: string,
        ioBytes: number,
        queueDepth: number,
        write: boolean,
        fileTarget: Target,
        poolTarget: Target,
        positions: () => Positions,
      ): Promise<void> => {
        log(`data path: ${workload}, queue depth ${queueDepth}`);
        const spec = { workload, ioBytes, queueDepth, seconds, write };
        const [f, p] = await interleaved(
          { spec: { ...spec, target: 'file' }, target: fileTarget, positions: positions() },
          { spec: { ...spec, target: 'pool' }, target: poolTarget, positions: positions(), pool },
        );
        dataPath.push({ workload, queueDepth, file: f, pool: p, ratio: p.iops / f.iops });
      };

      // 4 KiB random writes to fresh space: one write into each of the span's blocks, in
      // shuffled order, on a fresh file and a fresh thin device per queue depth.
      for (const [i, depth] of depths.entries()) {
        const fileFresh = await file(`file-fresh-qd${depth}.img`, freshSpan);
        await pool.createThin(DEV.freshRandom + i);
        const thinFresh = pool.device(DEV.freshRandom + i, freshSpan);
        const seed = 0xf5e5 + depth;
        await pair(
          '4 KiB random write, fresh space',
          SMALL_IO,
          depth,
          true,
          fileFresh,
          thinFresh,
          () => blockPositions(freshSpan / BLOCK_SIZE, seed, false),
        );
      }
      for (const depth of depths) {
        await pair('4 KiB random overwrite', SMALL_IO, depth, true, fileMapped, mapped, () =>
          slotPositions(size / SMALL_IO, 0x0e0e + depth),
        );
      }
      for (const depth of depths) {
        await pair('4 KiB random read', SMALL_IO, depth, false, fileMapped, mapped, () =>
          randomPositions(size / SMALL_IO, SMALL_IO, 0x4ead + depth),
        );
      }
      for (const [i, depth] of depths.entries()) {
        const fileSeq = await file(`file-seq-qd${depth}.img`, size);
        await pool.createThin(DEV.freshSequential + i);
        const thinSeq = pool.device(DEV.freshSequential + i, size);
        await pair(
          '1 MiB sequential write, fresh space',
          LARGE_IO,
          depth,
          true,
          fileSeq,
          thinSeq,
          () => sequentialPositions(size, LARGE_IO, false),
        );
      }
      for (const depth of depths) {
        await pair('1 MiB sequential read', LARGE_IO, depth, false, fileMapped, mapped, () =>
          sequentialPositions(size, LARGE_IO, true),
        );
      }

      // Copy-on-write: 4 KiB writes, one per block in shuffled order, to the mapped device
      // while nothing shares it (written in place); then one snapshot of it per queue depth,
      // each written the same way: every write hits a block still shared, and copies it.
      const cow: CowPair[] = [];
      const unshared: Measurement[] = [];
      for (const depth of depths) {
        log(`copy-on-write: unshared, queue depth ${depth}`);
        const positions = blockPositions(blocks, 0xc0c0 + depth, true);
        unshared.push(await measure(cowSpec('unshared', depth, seconds), mapped, positions, pool));
      }
      for (const i of depths.keys()) await pool.createSnapshot(DEV.cowSnapshot + i, DEV.mapped);
      await pool.commit();
      for (const [i, depth] of depths.entries()) {
        log(`copy-on-write: shared, queue depth ${depth}`);
        const snap = pool.device(DEV.cowSnapshot + i, size);
        const positions = blockPositions(blocks, 0xc0e0 + depth, false);
        const shared = await measure(cowSpec('shared', depth, seconds), snap, positions, pool);
        const base = unshared[i];
        if (base !== undefined) {
          cow.push({ queueDepth: depth, unshared: base, shared, ratio: shared.iops / base.iops });
        }
      }

      // The snapshot chain: level k is a snapshot of level k - 1 with 1% of its blocks
      // overwritten (each write copies).
      log(`snapshot chain: ${CHAIN_DEPTH} levels`);
      const chain = await buildChain(pool, size);
      const depth: DepthPair[] = [];
      const shallow = pool.device(DEV.chain + 1, size);
      const deep = pool.device(DEV.chain + CHAIN_DEPTH, size);
      const depthRun = async (
        workload: string,
        ioBytes: number,
        queueDepth: number,
        positions: () => Positions,
      ): Promise<void> => {
        log(`snapshot depth: ${workload}, queue depth ${queueDepth}`);
        const spec = { workload, ioBytes, queueDepth, seconds, write: false };
        const [s, d] = await interleaved(
          { spec: { ...spec, target: 'depth 1' }, target: shallow, positions: positions(), pool },
          {
            spec: { ...spec, target: `depth ${CHAIN_DEPTH}` },
            target: deep,
            positions: positions(),
            pool,
          },
        );
        depth.push({ workload, queueDepth, shallow: s, deep: d, ratio: d.iops / s.iops });
      };
      for (const qdepth of depths) {
        await depthRun('4 KiB random read', SMALL_IO, qdepth, () =>
          randomPositions(size / SMALL_IO, SMALL_IO, 0xde + qdepth),
        );
      }
      for (const qdepth of depths) {
        await depthRun('1 MiB sequential read', LARGE_IO, qdepth, () =>
          sequentialPositions(size, LARGE_IO, true),
        );
      }

      // Direct mode: the same engine on a loop device, next to this pool and raw fio.
      const direct = await runDirectPhase({
        dir,
        size,
        seconds,
        depths,
        loopPool: pool,
        mappedId: DEV.mapped,
        commands,
        log,
      });

      // Snapshot creation: batches of snapshots of the mapped device, last because ten
      // thousand devices make every later lookup of device details a little deeper.
      const snapshots: SnapshotTiming[] = [];
      let nextId: number = DEV.snapshots;
      let total = 0;
      for (const batch of SNAPSHOT_BATCHES) {
        log(`snapshots: ${formatCount(batch)} of thin device ${DEV.mapped}`);
        const start = performance.now();
        for (let i = 0; i < batch; i++) await pool.createSnapshot(nextId++, DEV.mapped);
        const batchSeconds = (performance.now() - start) / 1000;
        const c = performance.now();
        await pool.commit();
        total += batch;
        snapshots.push({
          snapshots: batch,
          total,
          seconds: batchSeconds,
          commitSeconds: (performance.now() - c) / 1000,
        });
      }

      const status = pool.status();
      const [dataAllocated, metaAllocated] = [
        await data.allocatedBytes(),
        await meta.allocatedBytes(),
      ];
      const end: PoolEnd = {
        dataBlocksUsed: status.data.usedBlocks,
        dataBlocksTotal: status.data.totalBlocks,
        metadataBlocksUsed: status.metadata.usedBlocks,
        metadataBlocksTotal: status.metadata.totalBlocks,
        dataFileAllocatedBytes: dataAllocated,
        dataFileApparentBytes: data.size,
        metadataFileAllocatedBytes: metaAllocated,
        metadataFileApparentBytes: meta.size,
        ...pool.counters,
      };
      return {
        dataPath,
        snapshots,
        chain,
        depth,
        cow,
        end,
        newBlocksAreZero: pool.newBlocksAreZero,
        fill: { fileSeconds, poolSeconds },
        direct,
      };
    } finally {
      await pool.close();
    }
  } finally {
    for (const dev of opened) await dev.close().catch(() => undefined);
  }
}

function cowSpec(target: string, queueDepth: number, seconds: number): PhaseSpec {
  return {
    workload: '4 KiB random write, one per block',
    target,
    ioBytes: SMALL_IO,
    queueDepth,
    seconds,
    write: true,
  };
}

/**
 * Builds the chain on top of the mapped device: CHAIN_DEPTH snapshots, each of the one
 * before, each then overwriting 1% of its blocks (at least one) with 4 KiB writes.
 */
async function buildChain(pool: ThinPool, size: number): Promise<ChainBuild> {
  const blocks = size / BLOCK_SIZE;
  const perLevel = Math.max(1, Math.round(blocks * CHAIN_OVERWRITE_SHARE));
  const copiesBefore = pool.counters.copies;
  const start = performance.now();
  let origin: number = DEV.mapped;
  for (let level = 1; level <= CHAIN_DEPTH; level++) {
    const id = DEV.chain + level;
    await pool.createSnapshot(id, origin);
    const dev = pool.device(id, size);
    const positions = blockPositions(blocks, 0xc4a1 + level, false);
    await runWorkers(
      FILL_QUEUE_DEPTH,
      SMALL_IO,
      true,
      () => {
        return positions.remaining() > blocks - perLevel ? positions.next() : undefined;
      },
      (buf, offset) => dev.write(buf, offset),
    );
    origin = id;
  }
  await pool.commit();
  return {
    depth: CHAIN_DEPTH,
    blocksPerLevel: perLevel,
    seconds: (performance.now() - start) / 1000,
    copies: pool.counters.copies - copiesBefore,
  };
}

// ---------------------------------------------------------------------------------------
// Timed runs

/** What a run does I/O on: a plain FileDevice or a thin device. */
type Target = Pick<FileDevice, 'read' | 'write' | 'flush'> | ThinDevice;

interface PhaseSpec {
  workload: string;
  target: string;
  ioBytes: number;
  queueDepth: number;
  seconds: number;
  write: boolean;
}

/** The byte offsets of a run, one per operation; `undefined` once there are none left. */
export interface Positions {
  next(): number | undefined;
  /** Offsets left, or Infinity. */
  remaining(): number;
}

/** One side of an A/B comparison. */
interface Side {
  spec: PhaseSpec;
  target: Target;
  positions: Positions;
  pool?: ThinPool;
}

/**
 * Measures two sides of a comparison. Reads alternate in READ_ROUNDS slices of the run's
 * time (A B, B A, A B…), so a change in the machine's load during the run falls on both
 * sides alike; writes run A then B, each once, so each ends with its one flush.
 */
export async function interleaved(a: Side, b: Side): Promise<[Measurement, Measurement]> {
  const rounds = a.spec.write || b.spec.write ? 1 : READ_ROUNDS;
  const partsA: Slice[] = [];
  const partsB: Slice[] = [];
  const run = async (side: Side, parts: Slice[]): Promise<void> => {
    const spec = { ...side.spec, seconds: side.spec.seconds / rounds };
    if (spec.write) await settle();
    parts.push(await timedSlice(spec, side.target, side.positions, side.pool));
  };
  for (let r = 0; r < rounds; r++) {
    if (r % 2 === 0) {
      await run(a, partsA);
      await run(b, partsB);
    } else {
      await run(b, partsB);
      await run(a, partsA);
    }
  }
  return [combine(a.spec, partsA), combine(b.spec, partsB)];
}

/** Measures one side on its own, in one slice. */
async function measure(
  spec: PhaseSpec,
  target: Target,
  positions: Positions,
  pool: ThinPool | undefined,
): Promise<Measurement> {
  if (spec.write) await settle();
  return combine(spec, [await timedSlice(spec, target, positions, pool)]);
}

const execFileAsync = promisify(execFile);

/**
 * Untimed, before every write run: sync(1) writes back the whole file system (data and
 * journal), so that the run does not pay for the one before it.
 */
async function settle(): Promise<void> {
  await execFileAsync('sync');
}

/** One timed slice of a run: its latencies (ms), wall time and counter deltas. */
interface Slice {
  latencies: number[];
  seconds: number;
  flushSeconds: number;
  exhausted: boolean;
  commits: number;
  provisions: number;
  copies: number;
}

/**
 * Runs `spec.queueDepth` workers, each with its own buffer, doing one awaited operation
 * after another at the offsets of `positions` until the time is up or the offsets run out;
 * a write run then flushes `target` (the pool: a commit) inside the timed region.
 */
async function timedSlice(
  spec: PhaseSpec,
  target: Target,
  positions: Positions,
  pool: ThinPool | undefined,
): Promise<Slice> {
  const before = pool === undefined ? undefined : { ...pool.counters };
  const op = spec.write
    ? (buf: Buffer, offset: number) => target.write(buf, offset)
    : (buf: Buffer, offset: number) => target.read(buf, offset);
  const start = performance.now();
  const deadline = start + spec.seconds * 1000;
  let exhausted = false;
  const latencies = await runWorkers(
    spec.queueDepth,
    spec.ioBytes,
    spec.write,
    () => {
      if (performance.now() >= deadline) return undefined;
      const at = positions.next();
      if (at === undefined) exhausted = true;
      return at;
    },
    op,
  );
  let flushSeconds = 0;
  if (spec.write) {
    const f = performance.now();
    await target.flush();
    flushSeconds = (performance.now() - f) / 1000;
  }
  const seconds = (performance.now() - start) / 1000;
  const after = pool?.counters;
  const delta = (key: 'commits' | 'provisions' | 'copies'): number =>
    after === undefined || before === undefined ? 0 : after[key] - before[key];
  return {
    latencies,
    seconds,
    flushSeconds,
    exhausted,
    commits: delta('commits'),
    provisions: delta('provisions'),
    copies: delta('copies'),
  };
}

/** The slices of one side as one measurement: sums, and percentiles over every call. */
function combine(spec: PhaseSpec, parts: readonly Slice[]): Measurement {
  const sum = (f: (s: Slice) => number): number => parts.reduce((t, s) => t + f(s), 0);
  const sorted = Float64Array.from(parts.flatMap((s) => s.latencies)).sort();
  const at = (p: number): number =>
    (sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)] ?? 0) / 1000;
  const ops = sorted.length;
  const seconds = sum((s) => s.seconds);
  return {
    workload: spec.workload,
    target: spec.target,
    queueDepth: spec.queueDepth,
    ioBytes: spec.ioBytes,
    ops,
    seconds,
    flushSeconds: sum((s) => s.flushSeconds),
    iops: ops / seconds,
    mibPerSecond: (ops * spec.ioBytes) / MiB / seconds,
    p50: at(0.5),
    p99: at(0.99),
    exhausted: parts.some((s) => s.exhausted),
    commits: sum((s) => s.commits),
    provisions: sum((s) => s.provisions),
    copies: sum((s) => s.copies),
  };
}

/**
 * `queueDepth` concurrent loops of `op`, each at the offsets `next` hands out until it
 * returns undefined. Resolves with every operation's latency in milliseconds.
 */
async function runWorkers(
  queueDepth: number,
  ioBytes: number,
  write: boolean,
  next: () => number | undefined,
  op: (buf: Buffer, offset: number) => Promise<void>,
): Promise<number[]> {
  const latencies: number[] = [];
  const worker = async (): Promise<void> => {
    const buf = Buffer.alloc(ioBytes);
    if (write) randomFillSync(buf);
    for (;;) {
      const offset = next();
      if (offset === undefined) return;
      const t = performance.now();
      await op(buf, offset);
      latencies.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: queueDepth }, worker));
  return latencies;
}

/** Writes all of `target` with 1 MiB writes, then flushes; resolves with the seconds. */
export async function fillWhole(target: Target, size: number): Promise<number> {
  const start = performance.now();
  const positions = sequentialPositions(size, LARGE_IO, false);
  await runWorkers(
    FILL_QUEUE_DEPTH,
    LARGE_IO,
    true,
    () => positions.next(),
    (buf, offset) => target.write(buf, offset),
  );
  await target.flush();
  return (performance.now() - start) / 1000;
}

/** Offsets 0, step, 2·step… below `size`; from 0 again at the end when `wrap`. */
export function sequentialPositions(size: number, step: number, wrap: boolean): Positions {
  let next = 0;
  const count = Math.floor(size / step);
  let handed = 0;
  return {
    next() {
      if (next + step > size) {
        if (!wrap) return undefined;
        next = 0;
      }
      const at = next;
      next += step;
      handed++;
      return at;
    },
    remaining: () => (wrap ? Number.POSITIVE_INFINITY : count - handed),
  };
}

/**
 * One 4 KiB piece in each of `blocks` data blocks, blocks in shuffled order, the piece's
 * place inside its block varying with the block. Once through, or round and round.
 */
function blockPositions(blocks: number, seed: number, wrap: boolean): Positions {
  const order = permutation(blocks, seed);
  const slots = BLOCK_SIZE / SMALL_IO;
  let i = 0;
  return {
    next() {
      if (i >= order.length) {
        if (!wrap) return undefined;
        i = 0;
      }
      const block = order[i++] ?? 0;
      return block * BLOCK_SIZE + ((Math.imul(block, 0x9e3779b1) >>> 0) % slots) * SMALL_IO;
    },
    remaining: () => (wrap ? Number.POSITIVE_INFINITY : order.length - i),
  };
}

/** Every 4 KiB slot of `slots`, in shuffled order, round and round: no two alike in flight. */
export function slotPositions(slots: number, seed: number): Positions {
  const order = permutation(slots, seed);
  let i = 0;
  return {
    next() {
      if (i >= order.length) i = 0;
      return (order[i++] ?? 0) * SMALL_IO;
    },
    remaining: () => Number.POSITIVE_INFINITY,
  };
}

/** Uniformly random `step`-aligned offsets among `slots` (reads: repeats are harmless). */
export function randomPositions(slots: number, step: number, seed: number): Positions {
  const rng = mulberry32(seed);
  return {
    next: () => Math.floor(rng() * slots) * step,
    remaining: () => Number.POSITIVE_INFINITY,
  };
}

// ---------------------------------------------------------------------------------------
// The report

const RIGHT: Align = 'right';

function measurementCells(m: Measurement): string[] {
  if (m.ops === 0) return ['0*', formatSeconds(m.seconds), '—', '—', '—', '—'];
  return [
    formatCount(m.ops) + (m.exhausted ? '*' : ''),
    formatSeconds(m.seconds),
    formatRate(m.iops),
    formatRate(m.mibPerSecond),
    formatSeconds(m.p50),
    formatSeconds(m.p99),
  ];
}

const MEASUREMENT_HEADERS = ['ops', 'seconds', 'IOPS', 'MiB/s', 'p50', 'p99'];
const MEASUREMENT_ALIGN: Align[] = [RIGHT, RIGHT, RIGHT, RIGHT, RIGHT, RIGHT];

function resultSections(size: number, qd: number, run: RunResults): ReportSection[] {
  const sizeText = formatBytes(size);
  return [
    {
      heading: `Plain file, the limit: FileDevice on a sparse file (${sizeText}, same disk)`,
      body: markdownTable(
        ['workload', 'queue depth', ...MEASUREMENT_HEADERS, 'flush'],
        run.dataPath.map((p) => [
          p.workload,
          String(p.queueDepth),
          ...measurementCells(p.file),
          p.file.flushSeconds > 0 ? formatSeconds(p.file.flushSeconds) : '—',
        ]),
        ['left', RIGHT, ...MEASUREMENT_ALIGN, RIGHT],
      ),
    },
    {
      heading: `Thin device through the pool API (${formatBytes(BLOCK_SIZE)} blocks, commit every ${COMMIT_INTERVAL_MS / 1000} s) vs the plain file`,
      body: markdownTable(
        [
          'workload',
          'queue depth',
          ...MEASUREMENT_HEADERS,
          'flush',
          'commits',
          'pool ÷ file (IOPS)',
        ],
        run.dataPath.map((p) => [
          p.workload,
          String(p.queueDepth),
          ...measurementCells(p.pool),
          p.pool.flushSeconds > 0 ? formatSeconds(p.pool.flushSeconds) : '—',
          formatCount(p.pool.commits),
          formatRatio(p.ratio),
        ]),
        ['left', RIGHT, ...MEASUREMENT_ALIGN, RIGHT, RIGHT, RIGHT],
      ),
    },
    {
      heading: `Direct mode: the pool on a loop device (BlockDevDevice regions) vs loop mode, and fio on the raw device`,
      body: markdownTable(
        [
          'workload',
          'queue depth',
          'loop mode IOPS',
          'direct IOPS',
          'direct p99',
          'direct ÷ loop',
          'fio raw IOPS',
          'direct ÷ raw',
        ],
        run.direct.map((r) => [
          r.workload,
          String(r.queueDepth),
          formatRate(r.loop.iops),
          formatRate(r.direct.iops),
          formatSeconds(r.direct.p99),
          formatRatio(r.direct.iops / r.loop.iops),
          formatRate(r.raw.iops),
          formatRatio(r.direct.iops / r.raw.iops),
        ]),
        ['left', RIGHT, RIGHT, RIGHT, RIGHT, RIGHT, RIGHT, RIGHT],
      ),
    },
    {
      heading: `Snapshot creation (of thin device ${DEV.mapped}, ${sizeText} written)`,
      body: markdownTable(
        ['snapshots', 'snapshots of the device after', 'seconds', 'per snapshot', 'commit after'],
        run.snapshots.map((s) => [
          formatCount(s.snapshots),
          formatCount(s.total),
          formatSeconds(s.seconds),
          formatSeconds(s.seconds / s.snapshots),
          formatSeconds(s.commitSeconds),
        ]),
        ['left', RIGHT, RIGHT, RIGHT, RIGHT],
      ),
    },
    {
      heading: `Reads at snapshot depth 1 vs ${CHAIN_DEPTH} (each level overwrote ${formatCount(run.chain.blocksPerLevel)} of ${formatCount(size / BLOCK_SIZE)} blocks)`,
      body: markdownTable(
        [
          'workload',
          'queue depth',
          'device',
          ...MEASUREMENT_HEADERS,
          `depth ${CHAIN_DEPTH} ÷ depth 1 (IOPS)`,
        ],
        run.depth.flatMap((d) => [
          [d.workload, String(d.queueDepth), d.shallow.target, ...measurementCells(d.shallow), ''],
          [
            d.workload,
            String(d.queueDepth),
            d.deep.target,
            ...measurementCells(d.deep),
            formatRatio(d.ratio),
          ],
        ]),
        ['left', RIGHT, 'left', ...MEASUREMENT_ALIGN, RIGHT],
      ),
    },
    {
      heading: `Copy-on-write: 4 KiB writes to a fresh snapshot vs an unshared device (queue depth 1 and ${qd})`,
      body: markdownTable(
        [
          'device',
          'queue depth',
          ...MEASUREMENT_HEADERS,
          'flush',
          'copies',
          'commits',
          'shared ÷ unshared (IOPS)',
        ],
        run.cow.flatMap((c) =>
          [c.unshared, c.shared].map((m) => [
            m.target === 'shared' ? 'snapshot (shared blocks)' : 'origin before it (unshared)',
            String(c.queueDepth),
            ...measurementCells(m),
            formatSeconds(m.flushSeconds),
            formatCount(m.copies),
            formatCount(m.commits),
            m === c.shared ? formatRatio(c.ratio) : '',
          ]),
        ),
        ['left', RIGHT, ...MEASUREMENT_ALIGN, RIGHT, RIGHT, RIGHT, RIGHT],
      ),
    },
    {
      heading: 'The pool at the end',
      body: markdownTable(
        ['what', 'value'],
        [
          [
            'data blocks used',
            `${formatCount(run.end.dataBlocksUsed)} of ${formatCount(run.end.dataBlocksTotal)}`,
          ],
          [
            'metadata blocks used',
            `${formatCount(run.end.metadataBlocksUsed)} of ${formatCount(run.end.metadataBlocksTotal)}`,
          ],
          [
            'data file allocated / apparent',
            `${formatBytes(run.end.dataFileAllocatedBytes)} / ${formatBytes(run.end.dataFileApparentBytes)}`,
          ],
          [
            'metadata file allocated / apparent',
            `${formatBytes(run.end.metadataFileAllocatedBytes)} / ${formatBytes(run.end.metadataFileApparentBytes)}`,
          ],
          ['commits', formatCount(run.end.commits)],
          ['blocks provisioned', formatCount(run.end.provisions)],
          ['blocks copied', formatCount(run.end.copies)],
          ['discards', formatCount(run.end.discards)],
          [
            `untimed fill of ${sizeText}: plain file / thin device`,
            `${formatSeconds(run.fill.fileSeconds)} / ${formatSeconds(run.fill.poolSeconds)}`,
          ],
          [
            `snapshot chain: ${CHAIN_DEPTH} levels built in`,
            `${formatSeconds(run.chain.seconds)} (${formatCount(run.chain.copies)} copies)`,
          ],
        ],
        ['left', RIGHT],
      ),
    },
  ];
}

function notes(
  size: number,
  seconds: number,
  cacheBlocks: number | undefined,
  run: RunResults,
  total: number,
): string[] {
  const blocks = size / BLOCK_SIZE;
  const anyExhausted = [
    ...run.dataPath.flatMap((p) => [p.file, p.pool]),
    ...run.cow.flatMap((c) => [c.unshared, c.shared]),
  ].some((m) => m.exhausted);
  const native = nativeStatus();
  return [
    `The whole run took ${formatSeconds(total)}.`,
    'Every file is a sparse file in one scratch folder under the temp directory (same file ' +
      'system as "disk" above), removed at the end. The pool is in loop mode: a FileDevice for ' +
      `data and one for metadata, ${formatBytes(BLOCK_SIZE)} data blocks, its own commit timer ` +
      `at ${COMMIT_INTERVAL_MS} ms (a commit flushes the data file, then writes and syncs the ` +
      `metadata), ${cacheBlocks === undefined ? "the engine's default metadata block cache" : `${formatCount(cacheBlocks)} metadata cache blocks`}.`,
    `Each timed run lasts ${seconds} s, or less when it runs out of positions (marked * in ` +
      `"ops"${anyExhausted ? '' : '; none did'}). Queue depth N is N concurrent loops of one ` +
      'awaited call each, every loop with its own buffer; latency is per call (nearest-rank ' +
      'p50 and p99), so at depth N it includes the wait behind the other N − 1. IOPS is calls ÷ ' +
      'seconds and MiB/s is bytes ÷ seconds, where the seconds of a write run include its ' +
      'final flush (plain file: FileDevice.flush, fdatasync; pool: ThinDevice.flush, a commit), ' +
      'shown in "flush". Reads have no flush.',
    `The two sides of a read comparison (file and pool, depth 1 and depth ${CHAIN_DEPTH}) run in ` +
      `${READ_ROUNDS} alternating slices of ${seconds / READ_ROUNDS} s each (A B, B A, …) and each ` +
      'side sums its slices, so that a change in the load of this shared 2-core machine falls on ' +
      'both sides alike; the rows show the sums. Write runs are one slice each, file first, so ' +
      'that each ends with its one flush. Before every write run an untimed sync(1) writes ' +
      'back the file system (data and journal), so no run pays for the writeback of the one ' +
      'before it.',
    'The plain file is the limit: FileDevice.read / write on a sparse file, the same offsets, ' +
      'sizes and queue depths as the thin device, without mapping, allocation, locks or ' +
      'commits, and with no fdatasync until the final flush (the pool also syncs the data ' +
      'file at every timed commit). "pool ÷ file" is pool IOPS ÷ file IOPS: 1.00× means no ' +
      'overhead, 0.50× half the limit.',
    `"4 KiB random write, fresh space": one 4 KiB write into each ${formatBytes(BLOCK_SIZE)} ` +
      `block of a ${formatBytes(FRESH_SPAN_FACTOR * size)} region, blocks in shuffled order, on a new ` +
      'sparse file and a new thin device for each queue depth: on the pool every write ' +
      `allocates a block and inserts a mapping. ${run.newBlocksAreZero ? 'Hole punching works here, so the pool knows new blocks read as zeros and writes only the 4 KiB (no zeroing of the rest of the block).' : `Hole punching is NOT available (${native.reason ?? 'the filesystem refused'}), so every fresh 4 KiB write also zero-fills the other ${formatBytes(BLOCK_SIZE - SMALL_IO)} of its block.`}`,
    `"4 KiB random overwrite" and "4 KiB random read" run on a device and a file of ` +
      `${formatBytes(size)}, both written whole beforehand (untimed, then flushed): overwrites ` +
      'visit every 4 KiB slot in shuffled order (no two writes overlap), reads pick slots ' +
      'uniformly at random. "1 MiB sequential write, fresh space" writes one pass over a new ' +
      'file and a new thin device per queue depth (16 whole-block provisions per call), ' +
      'stopping at the end; "1 MiB sequential read" reads the written device from offset 0, ' +
      'round and round. With a queue depth above 1, the loops take the next offsets in turn.',
    'The files were written moments before being read and the machine has far more RAM ' +
      'than they hold, so reads come from the page cache on both sides: the read rows ' +
      'measure the CPU cost of each path, not the disk. Writes reach the disk at each flush ' +
      '(and the pool’s timed commits), so large write rows are bound by the disk on both sides.',
    `Snapshots: pool.createSnapshot of thin device ${DEV.mapped} (${formatCount(blocks)} mapped ` +
      'blocks), batches of 1, 100 then 10,000, cumulative; each is O(1) in the metadata (a new ' +
      'device sharing the origin’s mapping tree), so the time per snapshot should stay flat. ' +
      'The commit after each batch is timed apart. This phase runs last so the ten thousand ' +
      'devices do not sit in the other phases’ metadata.',
    `Snapshot depth: device ${DEV.chain + 1} is a snapshot of device ${DEV.mapped}, device ` +
      `${DEV.chain + 2} a snapshot of ${DEV.chain + 1}, and so on to depth ${CHAIN_DEPTH}; every level ` +
      `overwrote ${formatCount(run.chain.blocksPerLevel)} random blocks (${CHAIN_OVERWRITE_SHARE * 100}%, ` +
      '4 KiB each, so each copied its block) before the next snapshot. The reads run on depth ' +
      `1 and on depth ${CHAIN_DEPTH}. As in dm-thin, a snapshot gets its own mapping tree ` +
      '(shared nodes, not a chain of lookups), so a read costs one tree lookup at any depth: ' +
      `the ratio should be about 1.00×.`,
    'Copy-on-write: 4 KiB writes, one per block in shuffled order, first to the mapped device ' +
      'while nothing shares its blocks (each is written in place), then, after one ' +
      'createSnapshot of it and a commit, to the new snapshot, where every write copies its ' +
      `${formatBytes(BLOCK_SIZE)} block (read 64 KiB, write 64 KiB, remap). The snapshot ` +
      'runs continue one shuffled order across queue depths, so each write hits a block that ' +
      'is still shared; "copies" counts the copies the pool made in the run.',
    'Direct mode: a sparse file on the same disk attached as a loop device; the pool engine ' +
      'opens its metadata and data as BlockDevDevice regions of it (buffered I/O, fdatasync ' +
      'at commit, as in dm.datadev/dm.directlvm_device), and runs the same workloads as the ' +
      'loop-mode pool above, the two interleaved as above. "fio raw" is fio (libaio, O_DIRECT, ' +
      'the same block size and queue depth, writes ending with fsync) on a region of the same ' +
      'loop device that no pool uses, written whole beforehand: the block device with no ' +
      'pool at all. Timed fio runs last the phase time rounded to whole seconds (at least 1).',
    'Pool counters ("commits", "copies") are the pool’s own (ThinPool.counters) over the run: ' +
      'the timer’s commits plus the final flush.',
  ];
}
