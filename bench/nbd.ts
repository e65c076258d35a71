/**
 * thinp's NBD server against the servers users would pick instead, each a separate process
 * on a UNIX socket in the same scratch folder, driven by fio's nbd engine: the thinp daemon
 * on a loop-mode pool, qemu-nbd on a qcow2 image with 64 KiB clusters, and nbdkit's file
 * plugin on a sparse raw file (no thin provisioning: the upper bound). Then reads at
 * snapshot depth 1, 10 and 50 (thinp snapshots vs a qcow2 backing chain) and the time to
 * create 1,000 snapshots vs 1,000 qcow2 overlays. Every workload where thinp is slower than
 * qemu-nbd runs once more under `node --cpu-prof`, and the report sums up the profile.
 *
 *     npm run bench -- nbd [--size BYTES] [--seconds S] [--queue-depth N] [--repeats N]
 */

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { access, mkdir, mkdtemp, open, readdir, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ApiClient } from '../src/api/index.js';
import { loadConfig } from '../src/config/index.js';
import { findOnPath } from '../src/util/index.js';
import { BenchOptionError, MissingPeerError } from './metadata.js';
import { mulberry32 } from './random.js';
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

const execFileAsync = promisify(execFile);

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** The size of the filled region every overwrite and read runs on. */
export const DEFAULT_SIZE = 1 * GiB;
/** fio's `--runtime` per job. */
export const DEFAULT_SECONDS = 5;
/**
 * Runs of every data-path job per server; each row reports the median. The three servers
 * take turns job by job, so that a change in the machine's load falls on all of them.
 */
export const DEFAULT_REPEATS = 3;
/** The concurrent queue depth (every workload also runs at depth 1). */
export const DEFAULT_QUEUE_DEPTH = 32;
/**
 * The goal of every data-path row: thinp's IOPS at least this many times qemu-nbd's (qcow2)
 * and nbdkit's (raw file), measured in the same run.
 */
export const GOAL = { vsQemu: 1.5, vsNbdkit: 0.8 } as const;

/** Whether a row meets the goal. */
export function meetsGoal(row: Pick<DataPathRow, 'vsQemu' | 'vsNbdkit'>): boolean {
  return row.vsQemu >= GOAL.vsQemu && row.vsNbdkit >= GOAL.vsNbdkit;
}

/** The chain depths whose top is read. */
export const CHAIN_DEPTHS: readonly number[] = [1, 10, 50];
/** Snapshots (thinp) and overlays (qcow2) created in the creation phase. */
export const SNAPSHOT_COUNT = 1000;
/** thinp's data block and qcow2's cluster. */
export const CLUSTER = 64 * KiB;
/** The share of a chain level's blocks that each level overwrites (4 KiB into each). */
export const CHAIN_WRITE_SHARE = 0.01;
/**
 * A fresh-space write run writes 4 KiB into random 64 KiB blocks of its own region, this
 * many times `size` (so that few writes land in a block already written), at most `size`
 * / 4 KiB of them.
 */
export const FRESH_SPAN_FACTOR = 16;

const DEFAULT_RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));
const THINP_BIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const THINP_DAEMON = fileURLToPath(new URL('../dist/daemon/main.js', import.meta.url));
/** PATH, then the sbin folders a non-root PATH often lacks. */
const SEARCH_PATH = [process.env.PATH ?? '', '/usr/sbin', '/sbin'].join(path.delimiter);

/** The programs this benchmark runs, and the Debian package of each. */
const TOOLS = {
  fio: 'fio',
  'qemu-nbd': 'qemu-utils',
  'qemu-img': 'qemu-utils',
  'qemu-io': 'qemu-utils',
  nbdkit: 'nbdkit',
} as const;
type Tool = keyof typeof TOOLS;

export interface NbdBenchOptions {
  /** The filled region's size in bytes, a whole number of MiB (default 1 GiB). */
  size?: number;
  /** fio's runtime per job (default 10). */
  seconds?: number;
  /** The concurrent queue depth (default 32); every workload also runs at depth 1. */
  queueDepth?: number;
  /** Runs of each data-path job per server, the median reported (default 3). */
  repeats?: number;
  /** The chain depths whose top is read (default 1, 10, 50). */
  chainDepths?: readonly number[];
  /** Snapshots and overlays to create (default 1,000). */
  snapshots?: number;
  /** Profile thinp where it is below the goal (GOAL; default true). */
  profile?: boolean;
  /** Where the report goes (default bench/results). */
  resultsDir?: string;
  /** Parent of the scratch folder holding the images and sockets (default the system's temp). */
  tempDir?: string;
  /** The command line to record in the report (default: the one these options make). */
  command?: string;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

export type ServerName = 'thinp' | 'qemu-nbd' | 'nbdkit';
export const SERVERS: readonly ServerName[] = ['thinp', 'qemu-nbd', 'nbdkit'];

/** One fio job's result. */
export interface FioResult {
  iops: number;
  mibPerSecond: number;
  /** Completion latency percentile, seconds. */
  p99: number;
  ios: number;
  /** fio's runtime of the job, seconds. */
  seconds: number;
  /** The job ran out of its region before its runtime (no `--time_based`). */
  exhausted: boolean;
  /** The lowest and highest IOPS of the runs whose median this is (one run: its own). */
  spread?: { min: number; max: number; runs: number };
}

export interface Workload {
  key: string;
  label: string;
  rw: 'randwrite' | 'randread' | 'write' | 'read';
  bs: number;
  /** Writes into a region of its own that nothing wrote before. */
  fresh: boolean;
}

export const WORKLOADS: readonly Workload[] = [
  {
    key: 'fresh',
    label: '4 KiB random write, fresh space',
    rw: 'randwrite',
    bs: 4 * KiB,
    fresh: true,
  },
  { key: 'overwrite', label: '4 KiB random overwrite', rw: 'randwrite', bs: 4 * KiB, fresh: false },
  { key: 'randread', label: '4 KiB random read', rw: 'randread', bs: 4 * KiB, fresh: false },
  { key: 'seqwrite', label: '1 MiB sequential write', rw: 'write', bs: 1 * MiB, fresh: true },
  { key: 'seqread', label: '1 MiB sequential read', rw: 'read', bs: 1 * MiB, fresh: false },
];

export interface DataPathRow {
  workload: string;
  queueDepth: number;
  results: Record<ServerName, FioResult>;
  /** thinp IOPS ÷ the peer's. */
  vsQemu: number;
  vsNbdkit: number;
}

export interface DepthRow {
  depth: number;
  queueDepth: number;
  thinp: FioResult;
  qcow2: FioResult;
}

export interface SnapshotCreation {
  target: string;
  count: number;
  seconds: number;
}

export interface ProfileFunction {
  name: string;
  where: string;
  selfSeconds: number;
  share: number;
}

export interface ProfileSummary {
  workload: string;
  queueDepth: number;
  /** thinp ÷ qemu-nbd and thinp ÷ nbdkit of the row profiled. */
  ratio: number;
  vsNbdkit: number;
  file: string;
  sampledSeconds: number;
  idleShare: number;
  gcShare: number;
  top: ProfileFunction[];
  /** Busy time by part of the code: `src/nbd`, `node:net`… with its share of busy time. */
  areas: { area: string; share: number }[];
  sentence: string;
}

export interface NbdBenchResult {
  reportPath: string;
  text: string;
  size: number;
  phaseSeconds: number;
  queueDepth: number;
  dataPath: DataPathRow[];
  depth: DepthRow[];
  snapshots: SnapshotCreation[];
  profiles: ProfileSummary[];
  seconds: number;
}

/** Runs the whole benchmark and writes its report; resolves with the numbers. */
export async function runNbdBench(options: NbdBenchOptions = {}): Promise<NbdBenchResult> {
  const size = options.size ?? DEFAULT_SIZE;
  const seconds = options.seconds ?? DEFAULT_SECONDS;
  const queueDepth = options.queueDepth ?? DEFAULT_QUEUE_DEPTH;
  const repeats = options.repeats ?? DEFAULT_REPEATS;
  const depths = [...(options.chainDepths ?? CHAIN_DEPTHS)].sort((a, b) => a - b);
  const snapshots = options.snapshots ?? SNAPSHOT_COUNT;
  checkOptions(size, seconds, queueDepth, depths, snapshots);
  if (!Number.isSafeInteger(repeats) || repeats < 1 || repeats > 20) {
    throw new BenchOptionError(`--repeats ${repeats}: give a whole number from 1 to 20`);
  }
  const tools = await findTools();
  await access(THINP_BIN).catch(() => {
    throw new MissingPeerError(`${THINP_BIN} is missing: run 'npm run build' first`);
  });
  const log = options.log ?? (() => {});
  const started = new Date();
  const t0 = performance.now();
  const dir = await mkdtemp(path.join(options.tempDir ?? os.tmpdir(), 'thinp-bench-nbd-'));
  const commands = [options.command ?? defaultCommand(options)];
  const ctx: Context = {
    dir,
    size,
    seconds,
    queueDepths: queueDepth === 1 ? [1] : [1, queueDepth],
    repeats,
    depths,
    snapshots,
    tools,
    commands,
    log,
    children: new Set(),
  };
  try {
    const run = await bench(ctx, options.profile ?? true);
    const total = (performance.now() - t0) / 1000;
    const machine = await machineInfo(dir);
    const results = resultSections(ctx, run);
    const text = results.map((s) => `${s.heading}\n\n${s.body}`).join('\n\n');
    const report = renderReport({
      title:
        `thinp NBD benchmark vs qemu-nbd and nbdkit: ${formatBytes(size)}, ${seconds} s per ` +
        `fio job, queue depth ${ctx.queueDepths.join(' and ')}`,
      date: started,
      machine,
      commands,
      results,
      notes: notes(ctx, run, total),
    });
    const reportPath = await writeReport(
      options.resultsDir ?? DEFAULT_RESULTS_DIR,
      'nbd',
      started,
      report,
    );
    return { reportPath, text, size, phaseSeconds: seconds, queueDepth, ...run, seconds: total };
  } finally {
    for (const child of ctx.children) child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
}

function checkOptions(
  size: number,
  seconds: number,
  queueDepth: number,
  depths: readonly number[],
  snapshots: number,
): void {
  if (!Number.isSafeInteger(size) || size < 4 * MiB || size % MiB !== 0) {
    throw new BenchOptionError(`--size ${size}: give a whole number of MiB, at least 4M`);
  }
  if (!Number.isFinite(seconds) || seconds < 0.1 || seconds > 600) {
    throw new BenchOptionError(`--seconds ${seconds}: give a number from 0.1 to 600`);
  }
  if (!Number.isSafeInteger(queueDepth) || queueDepth < 1 || queueDepth > 1024) {
    throw new BenchOptionError(`--queue-depth ${queueDepth}: give a whole number from 1 to 1024`);
  }
  if (depths.length === 0 || depths.some((d) => !Number.isSafeInteger(d) || d < 1 || d > 500)) {
    throw new BenchOptionError(
      `chain depths ${depths.join(', ')}: give whole numbers from 1 to 500`,
    );
  }
  if (!Number.isSafeInteger(snapshots) || snapshots < 1) {
    throw new BenchOptionError(`snapshots ${snapshots}: give a whole number of at least 1`);
  }
}

function defaultCommand(options: NbdBenchOptions): string {
  const parts = ['npm run bench -- nbd'];
  if (options.size !== undefined) parts.push(`--size ${options.size}`);
  if (options.seconds !== undefined) parts.push(`--seconds ${options.seconds}`);
  if (options.queueDepth !== undefined) parts.push(`--queue-depth ${options.queueDepth}`);
  if (options.repeats !== undefined) parts.push(`--repeats ${options.repeats}`);
  return parts.join(' ');
}

/** Every program's path, or a `MissingPeerError` naming the missing ones and their packages. */
async function findTools(): Promise<Record<Tool, string>> {
  const names = Object.keys(TOOLS) as Tool[];
  const found = await Promise.all(names.map((n) => findOnPath(n, SEARCH_PATH)));
  const missing = names.filter((_, i) => found[i] === undefined);
  if (missing.length > 0) {
    const packages = [...new Set(missing.map((n) => TOOLS[n]))];
    throw new MissingPeerError(
      `${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not installed: the ` +
        'benchmark runs thinp and its peers in the same run. They come with the Debian ' +
        `package${packages.length === 1 ? '' : 's'} ${packages.join(', ')}; install ` +
        `${packages.length === 1 ? 'it' : 'them'} with 'npm run deps:test'`,
    );
  }
  return Object.fromEntries(names.map((n, i) => [n, found[i] ?? n])) as Record<Tool, string>;
}

// ---------------------------------------------------------------------------------------
// Processes

interface Context {
  dir: string;
  size: number;
  seconds: number;
  queueDepths: number[];
  repeats: number;
  depths: number[];
  snapshots: number;
  tools: Record<Tool, string>;
  commands: string[];
  log: (line: string) => void;
  /** Servers still running, killed if the run fails. */
  children: Set<ChildProcess>;
}

/** A shell word, quoted only when it needs to be. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}

function commandLine(file: string, args: readonly string[], env?: string): string {
  const program = file === process.execPath ? 'node' : path.basename(file);
  return [...(env === undefined ? [] : [env]), program, ...args].map(shellWord).join(' ');
}

/** Runs a program to completion; throws with its stderr unless it exits 0. */
async function runOk(
  ctx: Context,
  file: string,
  args: readonly string[],
  options: { record?: boolean; timeoutMs?: number } = {},
): Promise<string> {
  if (options.record !== false) ctx.commands.push(commandLine(file, args));
  try {
    const { stdout } = await execFileAsync(file, args, {
      encoding: 'utf8',
      maxBuffer: 64 * MiB,
      timeout: options.timeoutMs ?? 30 * 60_000,
      killSignal: 'SIGKILL',
      env: { ...process.env, PATH: SEARCH_PATH },
    });
    return stdout;
  } catch (err) {
    const failure = err as { stderr?: string; stdout?: string };
    throw new Error(
      `${commandLine(file, args)} failed: ${(failure.stderr ?? '').trim() || (failure.stdout ?? '').trim() || String(err)}`,
    );
  }
}

/** A server process, its output kept for error messages. */
class Server {
  output = '';
  readonly exited: Promise<number | null>;
  private ended = false;

  constructor(
    ctx: Context,
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    ctx.children.add(child);
    child.stdout?.setEncoding('utf8').on('data', (s: string) => {
      this.output += s;
    });
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      this.output += s;
    });
    this.exited = once(child, 'close').then(([code]) => {
      this.ended = true;
      ctx.children.delete(child);
      return code as number | null;
    });
  }

  static spawn(
    ctx: Context,
    name: string,
    file: string,
    args: readonly string[],
    env: Record<string, string> = {},
    shown?: string,
  ): Server {
    const envText = Object.entries(env)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    ctx.commands.push(shown ?? `${commandLine(file, args, envText || undefined)} &`);
    const child = spawn(file, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: SEARCH_PATH, HOME: process.env.HOME ?? '/root', ...env },
    });
    return new Server(ctx, name, child);
  }

  /** Resolves once `ready()` does, or throws when the process exits or 30 s pass. */
  async waitFor(ready: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (this.ended) throw new Error(`${this.name} exited before it served:\n${this.output}`);
      if (await ready()) return;
      if (Date.now() > deadline) {
        throw new Error(`${this.name} did not start in 30 s:\n${this.output}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  /** SIGTERM, a clean stop (the daemon commits, a profile is written). */
  async stop(): Promise<void> {
    if (!this.ended) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 60_000);
    await this.exited;
    clearTimeout(timer);
  }
}

function canConnect(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

// ---------------------------------------------------------------------------------------
// The three servers

/** Where each job writes, in one export of `exportSize(size)` bytes. */
interface Layout {
  exportSize: number;
  /** The region every overwrite and read runs on, filled beforehand. */
  main: { offset: number; size: number };
  /** Next unused byte: fresh regions are handed out from here. */
  next: number;
}

function newLayout(size: number, repeats: number): Layout {
  // main + (sequential + fresh) per queue depth, for every run and the profile reruns.
  const exportSize = size + (repeats + 1) * 2 * (size + FRESH_SPAN_FACTOR * size);
  return { exportSize, main: { offset: 0, size }, next: size };
}

function freshRegion(layout: Layout, bytes: number): { offset: number; size: number } {
  const region = { offset: layout.next, size: bytes };
  if (region.offset + bytes > layout.exportSize) throw new Error('the export is out of regions');
  layout.next += bytes;
  return region;
}

interface Target {
  server: ServerName;
  /** fio's `--uri`. */
  uri(exportName?: string): string;
  layout: Layout;
}

/** The flags each server runs with: the same durability (see `fairnessNotes`). */
const QEMU_NBD_FLAGS = [
  '--format=qcow2',
  '--cache=writeback',
  '--aio=threads',
  '--discard=unmap',
  '--persistent',
  '--shared=8',
];
const NBDKIT_FLAGS = ['--foreground', '--threads=16'];

interface ThinpDaemon {
  server: Server;
  root: string;
  socket: string;
  api: ApiClient;
}

function thinpStorageOpts(size: number, repeats: number): string[] {
  const layout = newLayout(size, repeats);
  // The export, the chain's device and its copies; a sparse file, so it costs what is used.
  const data = Math.ceil((layout.exportSize + 4 * size) / MiB);
  return [
    `dm.loopdatasize=${data}M`,
    `dm.loopmetadatasize=${Math.max(1024, Math.ceil(size / 64 / MiB))}M`,
    'dm.min_free_space=0%',
  ];
}

/**
 * `thinp daemon` on `root`, as the CLI starts it. With `profileDir`, the daemon process
 * proper (dist/daemon/main.js, which the CLI launches with the configuration it resolved) is
 * started directly under `node --cpu-prof`: Node refuses that flag in NODE_OPTIONS.
 */
async function startThinp(ctx: Context, root: string, profileDir?: string): Promise<ThinpDaemon> {
  const storageOpts = thinpStorageOpts(ctx.size, ctx.repeats);
  let server: Server;
  if (profileDir === undefined) {
    const args = [THINP_BIN, '--root', root];
    for (const o of storageOpts) args.push('--storage-opt', o);
    args.push('daemon');
    server = Server.spawn(ctx, 'thinp daemon', process.execPath, args);
  } else {
    const config = await loadConfig({ root, storageOpts, env: { PATH: SEARCH_PATH } });
    server = Server.spawn(
      ctx,
      'thinp daemon',
      process.execPath,
      [
        '--cpu-prof',
        `--cpu-prof-dir=${profileDir}`,
        THINP_DAEMON,
        JSON.stringify({ config, nbd: [] }),
      ],
      {},
      `node --cpu-prof --cpu-prof-dir=${profileDir} ${THINP_DAEMON} "$LAUNCH" &   # LAUNCH: the JSON { config, nbd: [] } that 'thinp --root ${root} ${storageOpts.map((o) => `--storage-opt ${o}`).join(' ')} daemon' hands its daemon process`,
    );
  }
  await server.waitFor(async () => server.output.includes('Serving the control API'));
  return {
    server,
    root,
    socket: path.join(root, 'nbd.sock'),
    api: new ApiClient(path.join(root, 'thinp.sock')),
  };
}

/** `thinp device create NAME --size BYTES` on `root`, through its daemon. */
async function createThinpDevice(ctx: Context, root: string, name: string, size: number) {
  await runOk(ctx, process.execPath, [
    THINP_BIN,
    '--root',
    root,
    'device',
    'create',
    name,
    '--size',
    String(size),
  ]);
}

async function startQemuNbd(ctx: Context, image: string, socket: string): Promise<Server> {
  const server = Server.spawn(ctx, 'qemu-nbd', ctx.tools['qemu-nbd'], [
    `--socket=${socket}`,
    ...QEMU_NBD_FLAGS,
    image,
  ]);
  await server.waitFor(() => canConnect(socket));
  return server;
}

async function createQcow2(ctx: Context, file: string, size: number, backing?: string) {
  const args = ['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${CLUSTER}`];
  if (backing !== undefined) args.push('-b', backing, '-F', 'qcow2');
  args.push(file);
  if (backing === undefined) args.push(String(size));
  await runOk(ctx, ctx.tools['qemu-img'], args);
}

// ---------------------------------------------------------------------------------------
// fio

interface FioJob {
  name: string;
  workload: Workload;
  queueDepth: number;
  region: { offset: number; size: number };
  /** Loop over the region until the runtime is up. */
  timeBased: boolean;
  /** Writes: fio's `--end_fsync=1`, a FLUSH at the end. */
  flush: boolean;
  /** Untimed (fills): no `--runtime`. */
  untimed?: boolean;
  /** At most this many bytes of I/O. */
  ioSize?: number;
  /** Shown in the report's commands (default true). */
  record?: boolean;
}

function fioArgs(ctx: Context, uri: string, job: FioJob, output: string): string[] {
  const w = job.workload;
  const args = [
    `--name=${job.name}`,
    '--ioengine=nbd',
    `--uri=${uri}`,
    `--rw=${w.rw}`,
    `--bs=${w.bs}`,
    `--iodepth=${job.queueDepth}`,
    `--offset=${job.region.offset}`,
    `--size=${job.region.size}`,
  ];
  if (w.rw === 'randwrite' && w.fresh) {
    // One 4 KiB write per 64 KiB block: every write allocates a block (thinp) or a
    // cluster (qcow2). blockalign turns fio's random map off, hence the huge region.
    args.push(`--blockalign=${CLUSTER}`, '--norandommap');
  }
  if (job.ioSize !== undefined) args.push(`--io_size=${job.ioSize}`);
  if (job.untimed !== true) args.push(`--runtime=${Math.round(ctx.seconds * 1000)}ms`);
  if (job.timeBased) args.push('--time_based');
  if (job.flush) args.push('--end_fsync=1');
  args.push('--randrepeat=1', '--output-format=json', `--output=${output}`);
  return args;
}

interface FioJson {
  jobs?: Array<{
    error?: number;
    job_runtime?: number;
    read?: FioSide;
    write?: FioSide;
  }>;
}
interface FioSide {
  iops?: number;
  bw_bytes?: number;
  total_ios?: number;
  runtime?: number;
  clat_ns?: { percentile?: Record<string, number> };
}

let fioRuns = 0;

async function runFio(ctx: Context, uri: string, job: FioJob): Promise<FioResult> {
  const output = path.join(ctx.dir, `fio-${++fioRuns}.json`);
  const args = fioArgs(ctx, uri, job, output);
  await runOk(ctx, ctx.tools.fio, args, { record: job.record !== false });
  const parsed = JSON.parse(await readFile(output, 'utf8')) as FioJson;
  await rm(output, { force: true });
  const first = parsed.jobs?.[0];
  const side = job.workload.rw.includes('read') ? first?.read : first?.write;
  if (first === undefined || side === undefined || (first.error ?? 0) !== 0) {
    throw new Error(`fio ${job.name}: no result (error ${first?.error}) in ${output}`);
  }
  const runtimeMs = side.runtime ?? first.job_runtime ?? 0;
  const p99 = side.clat_ns?.percentile?.['99.000000'] ?? 0;
  return {
    iops: side.iops ?? 0,
    mibPerSecond: (side.bw_bytes ?? 0) / MiB,
    p99: p99 / 1e9,
    ios: side.total_ios ?? 0,
    seconds: runtimeMs / 1000,
    exhausted: !job.timeBased && job.untimed !== true && runtimeMs < ctx.seconds * 1000 * 0.95,
  };
}

/** The job of `workload` at `queueDepth` on `layout`, taking fresh regions as it needs. */
function jobOf(
  ctx: Context,
  server: string,
  layout: Layout,
  workload: Workload,
  queueDepth: number,
): FioJob {
  const name = `${server}-${workload.key}-qd${queueDepth}`;
  const write = workload.rw.includes('write');
  if (workload.key === 'fresh') {
    const region = freshRegion(layout, FRESH_SPAN_FACTOR * ctx.size);
    // As many writes as the span has blocks over FRESH_SPAN_FACTOR: few land twice.
    const ioSize = (region.size / CLUSTER / FRESH_SPAN_FACTOR) * workload.bs;
    return { name, workload, queueDepth, region, timeBased: false, flush: true, ioSize };
  }
  if (workload.key === 'seqwrite') {
    const region = freshRegion(layout, ctx.size);
    return { name, workload, queueDepth, region, timeBased: false, flush: true };
  }
  return { name, workload, queueDepth, region: layout.main, timeBased: true, flush: write };
}

const FILL: Workload = { key: 'fill', label: 'fill', rw: 'write', bs: 1 * MiB, fresh: true };
const WARM: Workload = { key: 'warm', label: 'warm', rw: 'read', bs: 1 * MiB, fresh: false };

/**
 * Writes the main region whole, untimed, with a flush: what overwrites and reads run on.
 * Then reads it once, untimed: thinp writes 1 MiB writes around the page cache (the
 * kernel's dm-thin has none under it), and the reads are to measure each server's path
 * with the region in RAM, as the others have it after their writes.
 */
async function fill(ctx: Context, uri: string, region: { offset: number; size: number }) {
  const job = { queueDepth: 8, region, timeBased: false, untimed: true };
  await runFio(ctx, uri, { ...job, name: 'fill', workload: FILL, flush: true });
  await runFio(ctx, uri, { ...job, name: 'warm', workload: WARM, flush: false });
}

/**
 * Every workload at every queue depth on every target, `ctx.repeats` times: job by job, the
 * targets take turns (first one first, then the next: the order rotates), so that a change
 * in the machine's load falls on all of them alike. Each result is the run of median IOPS,
 * with the spread of the runs.
 */
async function dataPaths(
  ctx: Context,
  targets: readonly Target[],
): Promise<Map<ServerName, Map<string, FioResult>>> {
  const runs = new Map<ServerName, Map<string, FioResult[]>>();
  for (const target of targets) {
    ctx.log(`${target.server}: fill ${formatBytes(ctx.size)}`);
    await fill(ctx, target.uri(), target.layout.main);
    runs.set(target.server, new Map());
  }
  let turn = 0;
  for (let run = 0; run < ctx.repeats; run++) {
    for (const workload of WORKLOADS) {
      for (const qd of ctx.queueDepths) {
        const key = `${workload.key}/${qd}`;
        const order = targets.map((_, i) => targets[(i + turn) % targets.length] as Target);
        turn++;
        for (const target of order) {
          ctx.log(
            `${target.server}: ${workload.label}, queue depth ${qd}, run ${run + 1} of ${ctx.repeats}`,
          );
          const job = jobOf(ctx, target.server, target.layout, workload, qd);
          // The commands section shows each job once.
          const result = await runFio(ctx, target.uri(), { ...job, record: run === 0 });
          const perKey = runs.get(target.server) as Map<string, FioResult[]>;
          perKey.set(key, [...(perKey.get(key) ?? []), result]);
        }
      }
    }
  }
  if (ctx.repeats > 1) {
    ctx.commands.push(
      `# each fio job above ran ${ctx.repeats} times, the servers taking turns job by job`,
    );
  }
  const results = new Map<ServerName, Map<string, FioResult>>();
  for (const [server, perKey] of runs) {
    results.set(server, new Map([...perKey].map(([key, all]) => [key, medianRun(all)])));
  }
  return results;
}

/** The run of median IOPS (the lower middle one of an even count), with the spread. */
export function medianRun(runs: readonly FioResult[]): FioResult {
  const sorted = [...runs].sort((a, b) => a.iops - b.iops);
  const median = sorted[Math.floor((sorted.length - 1) / 2)];
  if (median === undefined) throw new Error('no fio run to take the median of');
  return {
    ...median,
    spread: {
      min: (sorted[0] as FioResult).iops,
      max: (sorted[sorted.length - 1] as FioResult).iops,
      runs: sorted.length,
    },
  };
}

// ---------------------------------------------------------------------------------------
// The run

interface RunResults {
  dataPath: DataPathRow[];
  depth: DepthRow[];
  snapshots: SnapshotCreation[];
  profiles: ProfileSummary[];
  /** Blocks each chain level writes. */
  chainBlocksPerLevel: number;
  chainBuild: { thinp: number; qcow2: number };
}

/** `count` distinct 4 KiB-aligned offsets, each in a different 64 KiB block of `size`. */
function levelOffsets(size: number, count: number, seed: number): number[] {
  const blocks = size / CLUSTER;
  const rng = mulberry32(seed);
  const chosen = new Set<number>();
  while (chosen.size < Math.min(count, blocks)) chosen.add(Math.floor(rng() * blocks));
  return [...chosen].map((b) => b * CLUSTER + Math.floor(rng() * (CLUSTER / (4 * KiB))) * 4 * KiB);
}

function qemuIoWrites(offsets: readonly number[], level: number): string[] {
  const pattern = `0x${((level % 250) + 1).toString(16)}`;
  return offsets.flatMap((o) => ['-c', `write -q -P ${pattern} ${o} 4k`]);
}

async function bench(ctx: Context, profile: boolean): Promise<RunResults> {
  const blocksPerLevel = Math.max(1, Math.round((ctx.size / CLUSTER) * CHAIN_WRITE_SHARE));
  const maxDepth = ctx.depths[ctx.depths.length - 1] ?? 1;
  const depthReads = { thinp: new Map<string, FioResult>(), qcow2: new Map<string, FioResult>() };
  const chainBuild = { thinp: 0, qcow2: 0 };
  const snapshots: SnapshotCreation[] = [];
  const readJob = (name: string, qd: number): FioJob => ({
    name,
    workload: WORKLOADS[2] as Workload,
    queueDepth: qd,
    region: { offset: 0, size: ctx.size },
    timeBased: true,
    flush: false,
  });

  // The data path: the three servers up at once, taking turns job by job (dataPaths).
  const qemuDir = path.join(ctx.dir, 'qemu');
  const nbdkitDir = path.join(ctx.dir, 'nbdkit');
  const root = path.join(ctx.dir, 'thinp-root');
  const layout = newLayout(ctx.size, ctx.repeats);
  await mkdir(qemuDir);
  await mkdir(nbdkitDir);
  const image = path.join(qemuDir, 'img.qcow2');
  const qemuSocket = path.join(qemuDir, 'nbd.sock');
  await createQcow2(ctx, image, layout.exportSize);
  const qemu = await startQemuNbd(ctx, image, qemuSocket);
  const raw = path.join(nbdkitDir, 'raw.img');
  const nbdkitSocket = path.join(nbdkitDir, 'nbd.sock');
  ctx.commands.push(`truncate -s ${layout.exportSize} ${raw}`);
  const handle = await open(raw, 'w');
  await handle.truncate(layout.exportSize);
  await handle.close();
  const nbdkit = Server.spawn(ctx, 'nbdkit', ctx.tools.nbdkit, [
    ...NBDKIT_FLAGS,
    '--unix',
    nbdkitSocket,
    'file',
    `file=${raw}`,
    'cache=default',
  ]);
  await nbdkit.waitFor(() => canConnect(nbdkitSocket));
  const daemon = await startThinp(ctx, root);
  await createThinpDevice(ctx, root, 'vol', layout.exportSize);
  const uri = (name = 'vol') => `nbd+unix:///${name}?socket=${daemon.socket}`;
  const results = await dataPaths(ctx, [
    { server: 'thinp', uri, layout },
    { server: 'qemu-nbd', uri: () => `nbd+unix:///?socket=${qemuSocket}`, layout: { ...layout } },
    { server: 'nbdkit', uri: () => `nbd+unix:///?socket=${nbdkitSocket}`, layout: { ...layout } },
  ]);
  await qemu.stop();
  await nbdkit.stop();
  await rm(nbdkitDir, { recursive: true, force: true });

  // thinp: the snapshot chain and its reads, then the snapshots; its root stays for the
  // profile reruns.
  {
    ctx.log(`thinp: a snapshot chain of ${maxDepth}`);
    await createThinpDevice(ctx, root, 'chain0', ctx.size);
    await fill(ctx, uri('chain0'), { offset: 0, size: ctx.size });
    const tChain = performance.now();
    for (let k = 1; k <= maxDepth; k++) {
      ctx.commands.push(
        `# in-process: new ApiClient('${daemon.api.socketPath}').createDevice('chain${k}', { origin: 'chain${k - 1}' })`,
        `qemu-io -f raw '${uri(`chain${k}`)}' -c 'write -q -P PATTERN OFFSET 4k' …   # the same offsets as qcow2 level ${k}`,
      );
      await daemon.api.createDevice(`chain${k}`, { origin: `chain${k - 1}` });
      const writes = qemuIoWrites(levelOffsets(ctx.size, blocksPerLevel, 0xc4a1 + k), k);
      await runOk(ctx, ctx.tools['qemu-io'], ['-f', 'raw', uri(`chain${k}`), ...writes], {
        record: false,
      });
    }
    chainBuild.thinp = (performance.now() - tChain) / 1000;
    for (const d of ctx.depths) {
      for (const qd of ctx.queueDepths) {
        ctx.log(`thinp chain: 4 KiB random read at depth ${d}, queue depth ${qd}`);
        depthReads.thinp.set(
          `${d}/${qd}`,
          await runFio(ctx, uri(`chain${d}`), readJob(`thinp-depth${d}-qd${qd}`, qd)),
        );
      }
    }

    ctx.log(`thinp: ${formatCount(ctx.snapshots)} snapshots of vol`);
    ctx.commands.push(
      `# in-process, timed: for i in 1..${ctx.snapshots}: await new ApiClient('${daemon.api.socketPath}').createDevice('snap' + i, { origin: 'vol' })`,
    );
    const t = performance.now();
    for (let i = 1; i <= ctx.snapshots; i++)
      await daemon.api.createDevice(`snap${i}`, { origin: 'vol' });
    snapshots.push({
      target: 'thinp (control API, one request each)',
      count: ctx.snapshots,
      seconds: (performance.now() - t) / 1000,
    });
    await daemon.server.stop();
  }

  // qcow2: 1,000 overlays, then the backing chain and its reads.
  {
    const dir = qemuDir;
    const socket = qemuSocket;
    ctx.log(`qemu-nbd: ${formatCount(ctx.snapshots)} overlays of img.qcow2`);
    const overlays = path.join(dir, 'overlays');
    await mkdir(overlays);
    ctx.commands.push(
      `for i in $(seq 1 ${ctx.snapshots}); do qemu-img create -q -f qcow2 -o cluster_size=${CLUSTER} -b ${image} -F qcow2 ${overlays}/ovl$i.qcow2; done   # timed`,
    );
    const t = performance.now();
    for (let i = 1; i <= ctx.snapshots; i++) {
      await runOk(
        ctx,
        ctx.tools['qemu-img'],
        [
          'create',
          '-q',
          '-f',
          'qcow2',
          '-o',
          `cluster_size=${CLUSTER}`,
          '-b',
          image,
          '-F',
          'qcow2',
          path.join(overlays, `ovl${i}.qcow2`),
        ],
        { record: false },
      );
    }
    snapshots.push({
      target: 'qemu-img create -b (qcow2 overlay)',
      count: ctx.snapshots,
      seconds: (performance.now() - t) / 1000,
    });
    await rm(dir, { recursive: true, force: true });

    ctx.log(`qcow2: a backing chain of ${maxDepth}`);
    await mkdir(dir);
    const level = (k: number) => path.join(dir, `level${k}.qcow2`);
    await createQcow2(ctx, level(0), ctx.size);
    const fillServer = await startQemuNbd(ctx, level(0), socket);
    await fill(ctx, `nbd+unix:///?socket=${socket}`, { offset: 0, size: ctx.size });
    await fillServer.stop();
    const tChain = performance.now();
    for (let k = 1; k <= maxDepth; k++) {
      await createQcow2(ctx, level(k), ctx.size, level(k - 1));
      const writes = qemuIoWrites(levelOffsets(ctx.size, blocksPerLevel, 0xc4a1 + k), k);
      ctx.commands.push(
        `qemu-io -f qcow2 ${level(k)} -c 'write -q -P PATTERN OFFSET 4k' …   # ${blocksPerLevel} writes, one in each of ${blocksPerLevel} random 64 KiB blocks`,
      );
      await runOk(ctx, ctx.tools['qemu-io'], ['-f', 'qcow2', level(k), ...writes], {
        record: false,
      });
    }
    chainBuild.qcow2 = (performance.now() - tChain) / 1000;
    for (const d of ctx.depths) {
      const top = await startQemuNbd(ctx, level(d), socket);
      for (const qd of ctx.queueDepths) {
        ctx.log(`qcow2 chain: 4 KiB random read at depth ${d}, queue depth ${qd}`);
        const uri = `nbd+unix:///?socket=${socket}`;
        depthReads.qcow2.set(
          `${d}/${qd}`,
          await runFio(ctx, uri, readJob(`qcow2-depth${d}-qd${qd}`, qd)),
        );
      }
      await top.stop();
    }
    await rm(dir, { recursive: true, force: true });
  }

  const rows: DataPathRow[] = [];
  for (const workload of WORKLOADS) {
    for (const qd of ctx.queueDepths) {
      const key = `${workload.key}/${qd}`;
      const of = (s: ServerName): FioResult => {
        const r = results.get(s)?.get(key);
        if (r === undefined) throw new Error(`no result for ${s} ${key}`);
        return r;
      };
      const r = { thinp: of('thinp'), 'qemu-nbd': of('qemu-nbd'), nbdkit: of('nbdkit') };
      rows.push({
        workload: workload.label,
        queueDepth: qd,
        results: r,
        vsQemu: r.thinp.iops / r['qemu-nbd'].iops,
        vsNbdkit: r.thinp.iops / r.nbdkit.iops,
      });
    }
  }

  // Every workload below the goal, once more under --cpu-prof.
  const profiles: ProfileSummary[] = [];
  if (profile) {
    for (const row of rows.filter((r) => !meetsGoal(r))) {
      const workload = WORKLOADS.find((w) => w.label === row.workload) as Workload;
      const profileDir = path.join(ctx.dir, `profile-${workload.key}-qd${row.queueDepth}`);
      ctx.log(`thinp profile: ${workload.label}, queue depth ${row.queueDepth}`);
      const spawned = performance.now();
      const daemon = await startThinp(ctx, root, profileDir);
      const pid = daemon.server.child.pid;
      const job = jobOf(ctx, 'thinp-profile', layout, workload, row.queueDepth);
      const jobStart = performance.now();
      await runFio(ctx, `nbd+unix:///vol?socket=${daemon.socket}`, job);
      const jobEnd = performance.now();
      await daemon.server.stop();
      const file = await profileFile(profileDir, pid);
      // Only the samples while fio ran: not the daemon's start (module loading) and stop.
      const window = { from: (jobStart - spawned) * 1000, to: (jobEnd - spawned) * 1000 };
      profiles.push({
        ...summarizeProfile(JSON.parse(await readFile(file, 'utf8')) as CpuProfile, window),
        workload: workload.label,
        queueDepth: row.queueDepth,
        ratio: row.vsQemu,
        vsNbdkit: row.vsNbdkit,
        file: path.basename(file),
      });
    }
  }
  await rm(root, { recursive: true, force: true });

  const depth: DepthRow[] = [];
  for (const d of ctx.depths) {
    for (const qd of ctx.queueDepths) {
      const thinp = depthReads.thinp.get(`${d}/${qd}`);
      const qcow2 = depthReads.qcow2.get(`${d}/${qd}`);
      if (thinp === undefined || qcow2 === undefined) throw new Error(`no depth ${d} result`);
      depth.push({ depth: d, queueDepth: qd, thinp, qcow2 });
    }
  }
  return {
    dataPath: rows,
    depth,
    snapshots,
    profiles,
    chainBlocksPerLevel: blocksPerLevel,
    chainBuild,
  };
}

/** The daemon's profile in `dir` (the CLI wrapping it writes one too). */
async function profileFile(dir: string, pid: number | undefined): Promise<string> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile'));
  const mine = files.find((f) => pid !== undefined && f.includes(`.${pid}.`));
  const chosen = mine ?? files.sort().at(-1);
  if (chosen === undefined) throw new Error(`no .cpuprofile written in ${dir}`);
  return path.join(dir, chosen);
}

// ---------------------------------------------------------------------------------------
// CPU profiles

interface CpuProfile {
  nodes: Array<{
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    hitCount?: number;
  }>;
  samples?: number[];
  timeDeltas?: number[];
  startTime: number;
  endTime: number;
}

const REPO = fileURLToPath(new URL('..', import.meta.url));

function whereOf(url: string, line: number): string {
  if (url === '') return '';
  const file = url.startsWith('file://') ? fileURLToPath(url) : url;
  const short = file.startsWith(REPO) ? file.slice(REPO.length) : file;
  return `${short}:${line + 1}`;
}

/** Native functions without a script: Node's bindings of file and socket calls. */
const NATIVE_FILE_CALLS = new Set([
  'writeBuffer',
  'writeBuffers',
  'read',
  'readBuffers',
  'open',
  'openFileHandle',
  'close',
  'fstat',
  'lstat',
  'stat',
  'fsync',
  'fdatasync',
  'ftruncate',
]);
const NATIVE_SOCKET_CALLS = new Set(['writev', 'writeGeneric', 'onStreamRead']);

function areaOf(name: string, url: string): string {
  if (name === '(garbage collector)') return 'garbage collection';
  if (name === '(program)') return 'native code outside JavaScript';
  if (url === '' && NATIVE_FILE_CALLS.has(name)) return 'file system calls (native)';
  if (url === '' && NATIVE_SOCKET_CALLS.has(name)) return 'socket writes (native)';
  const file = url.startsWith('file://') ? fileURLToPath(url) : url;
  const rel = file.startsWith(REPO) ? file.slice(REPO.length) : file;
  const src = /^(?:dist|src)\/([a-z-]+)\//.exec(rel);
  if (src !== null) return `thinp ${src[1]}`;
  if (/^node:internal\/(fs|streams\/|stream)/.test(rel) || rel.startsWith('node:fs')) {
    return rel.includes('fs') ? 'Node file system calls' : 'Node streams';
  }
  if (/^node:(internal\/)?(net|stream_base|tcp|pipe)/.test(rel)) return 'Node sockets';
  if (rel.startsWith('node:')) return 'Node internals';
  if (rel === '') return `native (${name || 'anonymous'})`;
  return 'other';
}

/** Self time per function of a `.cpuprofile`, its idle and GC share and its busy areas. */
export function summarizeProfile(
  profile: CpuProfile,
  window: { from: number; to: number } = { from: 0, to: Number.POSITIVE_INFINITY },
): Omit<ProfileSummary, 'workload' | 'queueDepth' | 'ratio' | 'vsNbdkit' | 'file'> {
  const selfMicros = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  const total = Math.max(1, profile.endTime - profile.startTime);
  if (samples.length > 0) {
    let at = 0;
    for (const [i, id] of samples.entries()) {
      at += deltas[i] ?? 0;
      if (at < window.from || at > window.to) continue;
      const dt = deltas[i + 1] ?? total / samples.length;
      selfMicros.set(id, (selfMicros.get(id) ?? 0) + Math.max(0, dt));
    }
  } else {
    const hits = profile.nodes.reduce((s, n) => s + (n.hitCount ?? 0), 0) || 1;
    for (const n of profile.nodes) selfMicros.set(n.id, ((n.hitCount ?? 0) / hits) * total);
  }
  const byFunction = new Map<string, ProfileFunction>();
  const byArea = new Map<string, number>();
  let idle = 0;
  let gc = 0;
  let sampled = 0;
  for (const node of profile.nodes) {
    const micros = selfMicros.get(node.id) ?? 0;
    if (micros === 0) continue;
    sampled += micros;
    const { functionName, url, lineNumber } = node.callFrame;
    const name = functionName || '(anonymous)';
    if (name === '(idle)') {
      idle += micros;
      continue;
    }
    if (name === '(garbage collector)') gc += micros;
    const area = areaOf(name, url);
    byArea.set(area, (byArea.get(area) ?? 0) + micros);
    const where = whereOf(url, lineNumber);
    const key = `${name} ${where}`;
    const entry = byFunction.get(key) ?? { name, where, selfSeconds: 0, share: 0 };
    entry.selfSeconds += micros / 1e6;
    byFunction.set(key, entry);
  }
  const busy = Math.max(1, sampled - idle);
  const top = [...byFunction.values()]
    .sort((a, b) => b.selfSeconds - a.selfSeconds)
    .slice(0, 10)
    .map((f) => ({ ...f, share: (f.selfSeconds * 1e6) / sampled }));
  const areas = [...byArea.entries()]
    .map(([area, micros]) => ({ area, share: micros / busy }))
    .sort((a, b) => b.share - a.share);
  const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
  const idleShare = idle / Math.max(1, sampled);
  const topAreas = areas
    .slice(0, 3)
    .map((a) => `${a.area} ${pct(a.share)}`)
    .join(', ');
  const hottest = top.find((f) => !f.name.startsWith('('));
  const sentence =
    `The daemon was idle ${pct(idleShare)} of the ${(sampled / 1e6 || 0).toFixed(1)} s sampled ` +
    `(waiting for fio's requests or for the disk); of its busy time, ${topAreas}` +
    (hottest === undefined
      ? '.'
      : `; the hottest function is ${hottest.name} (${hottest.where || 'native'}, ` +
        `${pct(hottest.share)} of all samples).`);
  return {
    sampledSeconds: sampled / 1e6,
    idleShare,
    gcShare: gc / Math.max(1, sampled),
    top,
    areas,
    sentence,
  };
}

// ---------------------------------------------------------------------------------------
// The report

function latency(seconds: number): string {
  return seconds > 0 ? formatSeconds(seconds) : '—';
}

function mib(x: number): string {
  return x >= 100 ? formatCount(x) : x.toPrecision(3);
}

function resultSections(ctx: Context, run: RunResults): ReportSection[] {
  const sections: ReportSection[] = [];
  const right: Align[] = [
    'left',
    'right',
    'left',
    'right',
    'right',
    'right',
    'right',
    'right',
    'right',
  ];
  const dataRows: string[][] = [];
  for (const row of run.dataPath) {
    for (const server of SERVERS) {
      const r = row.results[server];
      dataRows.push([
        row.workload,
        String(row.queueDepth),
        server,
        `${formatRate(r.iops)}${r.exhausted ? ' *' : ''}`,
        r.spread === undefined || r.spread.runs < 2
          ? '—'
          : `${formatRate(r.spread.min)} – ${formatRate(r.spread.max)}`,
        mib(r.mibPerSecond),
        latency(r.p99),
        server === 'thinp' ? formatRatio(row.vsQemu) : '',
        server === 'thinp' ? formatRatio(row.vsNbdkit) : '',
      ]);
    }
  }
  sections.push({
    heading: 'The data path through fio',
    body: markdownTable(
      [
        'workload',
        'QD',
        'server',
        `IOPS (median of ${ctx.repeats})`,
        'IOPS, all runs',
        'MiB/s',
        'p99',
        'thinp ÷ qemu-nbd',
        'thinp ÷ nbdkit',
      ],
      dataRows,
      right,
    ),
  });
  sections.push({
    heading: 'Ratios (IOPS, thinp ÷ peer)',
    body: markdownTable(
      [
        'workload',
        'QD',
        'thinp ÷ qemu-nbd (qcow2)',
        'thinp ÷ nbdkit (raw)',
        `goal (≥ ${GOAL.vsQemu.toFixed(2)}× qemu-nbd, ≥ ${GOAL.vsNbdkit.toFixed(2)}× nbdkit)`,
      ],
      run.dataPath.map((r) => [
        r.workload,
        String(r.queueDepth),
        formatRatio(r.vsQemu),
        formatRatio(r.vsNbdkit),
        meetsGoal(r) ? 'met' : 'below',
      ]),
      ['left', 'right', 'right', 'right', 'left'],
    ),
  });

  const first = new Map<number, DepthRow>();
  for (const row of run.depth) if (!first.has(row.queueDepth)) first.set(row.queueDepth, row);
  sections.push({
    heading: `4 KiB random reads at snapshot depth ${ctx.depths.join(', ')}`,
    body: markdownTable(
      [
        'depth',
        'QD',
        'thinp IOPS',
        'thinp p99',
        'qcow2 IOPS',
        'qcow2 p99',
        'thinp ÷ qcow2',
        `thinp ÷ depth ${ctx.depths[0]}`,
        `qcow2 ÷ depth ${ctx.depths[0]}`,
      ],
      run.depth.map((row) => {
        const base = first.get(row.queueDepth) ?? row;
        return [
          String(row.depth),
          String(row.queueDepth),
          formatRate(row.thinp.iops),
          latency(row.thinp.p99),
          formatRate(row.qcow2.iops),
          latency(row.qcow2.p99),
          formatRatio(row.thinp.iops / row.qcow2.iops),
          formatRatio(row.thinp.iops / base.thinp.iops),
          formatRatio(row.qcow2.iops / base.qcow2.iops),
        ];
      }),
      ['right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
    ),
  });

  const thinpSnap = run.snapshots[0];
  sections.push({
    heading: `Creating ${formatCount(ctx.snapshots)} snapshots`,
    body: markdownTable(
      ['target', 'snapshots', 'total', 'per snapshot', 'per second', 'thinp ÷ this (time)'],
      run.snapshots.map((s) => [
        s.target,
        formatCount(s.count),
        formatSeconds(s.seconds),
        formatSeconds(s.seconds / s.count),
        formatRate(s.count / s.seconds),
        thinpSnap === undefined ? '' : formatRatio(thinpSnap.seconds / s.seconds),
      ]),
      ['left', 'right', 'right', 'right', 'right', 'right'],
    ),
  });

  const profileParts: string[] = [];
  if (run.profiles.length === 0) {
    profileParts.push('Every workload met the goal, so no profile was taken.');
  }
  for (const p of run.profiles) {
    profileParts.push(
      `**${p.workload}, queue depth ${p.queueDepth}** (thinp ÷ qemu-nbd ${formatRatio(p.ratio)}, ` +
        `÷ nbdkit ${formatRatio(p.vsNbdkit)}; ` +
        `profile ${p.file}, ${p.sampledSeconds.toFixed(1)} s sampled, idle ` +
        `${(p.idleShare * 100).toFixed(0)}%, GC ${(p.gcShare * 100).toFixed(1)}%)`,
      markdownTable(
        ['function', 'where', 'self', 'of samples'],
        p.top.map((f) => [
          f.name,
          f.where || '—',
          formatSeconds(f.selfSeconds),
          `${(f.share * 100).toFixed(1)}%`,
        ]),
        ['left', 'left', 'right', 'right'],
      ),
      `Busy time by area: ${p.areas
        .slice(0, 6)
        .map((a) => `${a.area} ${(a.share * 100).toFixed(0)}%`)
        .join(', ')}.`,
      p.sentence,
    );
  }
  sections.push({
    heading: 'Profiles where thinp is below the goal',
    body: profileParts.join('\n\n'),
  });
  return sections;
}

function notes(ctx: Context, run: RunResults, total: number): string[] {
  return [
    'Fair flags. All three servers keep data in the host page cache and make it durable ' +
      'when the client sends FLUSH: thinp writes through buffered pwrite to its loop data ' +
      'file (a write of 256 KiB or more around the page cache, with O_DIRECT: ' +
      'dm.uncached_write_min; and no readahead of its own on the data file, as the ' +
      "kernel's dm-thin has none below the client) and commits (fdatasync of data and " +
      'metadata) on FLUSH and on its 1 s timer; ' +
      'qemu-nbd runs with --cache=writeback (buffered, FLUSH → fdatasync of the qcow2 file) ' +
      'and --aio=threads; nbdkit file runs with cache=default (buffered, FLUSH → fdatasync). ' +
      'cache=none (O_DIRECT) for qemu-nbd alone would send its reads to the disk while ' +
      "the others read the page cache: not the same policy. fio's write jobs end with " +
      '--end_fsync=1, a FLUSH, so every write run ends durable on every server. ' +
      '--discard=unmap and --shared=8 only let qemu-nbd accept trims and several ' +
      'connections, as the others do; fio opens one connection per job.',
    'The three servers run at once, each a separate process on a UNIX socket in the same ' +
      `scratch folder (${ctx.dir}), so on the same disk: qemu-nbd, nbdkit and the thinp ` +
      'daemon (`node dist/cli/main.js daemon`, whose data file is a sparse loop file with ' +
      '64 KiB blocks). fio drives one at a time: every job runs on the three back to back ' +
      `(the order rotating from job to job), ${ctx.repeats} time${ctx.repeats === 1 ? '' : 's'} ` +
      'over; each row is the run of median IOPS, and "IOPS, all runs" the lowest and highest, ' +
      "so that the machine's drift in load falls on every server alike and shows. " +
      'Each serves one export holding every region: the main region of ' +
      `${formatBytes(ctx.size)} (filled untimed with 1 MiB writes, then flushed, then read ` +
      "once untimed, so that every server's reads start from the page cache: thinp's 1 MiB " +
      'writes go around it) for the ' +
      'overwrites and reads, and a region of its own for each write-to-fresh-space run.',
    `4 KiB random write, fresh space: 4 KiB writes at random 64 KiB-aligned offsets of a ` +
      `region ${FRESH_SPAN_FACTOR} × size, at most size ÷ 64 KiB of them (fio --blockalign, ` +
      `--norandommap, --io_size), so nearly every write allocates a thin block or a qcow2 ` +
      'cluster (a raw file allocates a page). 1 MiB sequential write: one pass over a fresh ' +
      'region of size. Both stop at the end of their region (marked *) or of --runtime. ' +
      'The other runs loop (--time_based) on the filled main region; the same seeds ' +
      '(--randrepeat=1) on every server.',
    "IOPS and MiB/s are fio's; p99 is the 99th percentile of fio's completion latency " +
      '(clat, from submission to completion). The ratios are of IOPS: above 1.00× thinp is ' +
      "faster. Everything fits in RAM, so reads measure each server's CPU path, not the disk.",
    `Snapshot depth: a device (thinp) and a qcow2 image with 64 KiB clusters, each filled ` +
      `whole, then a chain of ${Math.max(...ctx.depths)} snapshots (thinp: ` +
      'createSnapshot through the control API, each of the one before) or overlays ' +
      '(qemu-img create -b); each level gets 4 KiB writes with qemu-io into ' +
      `${run.chainBlocksPerLevel} random 64 KiB blocks (1%, the same offsets on both; each ` +
      'write copies its block or cluster). Building the chain took ' +
      `${formatSeconds(run.chainBuild.thinp)} for thinp and ${formatSeconds(run.chainBuild.qcow2)} ` +
      'for qcow2, qemu-io starts included. Reads run on the top of each depth: thinp serves ' +
      'every level from the one daemon, qemu-nbd is restarted on level N with the flags above.',
    `Snapshot creation: ${formatCount(ctx.snapshots)} snapshots of the written device, one ` +
      'control API request each (HTTP over the UNIX socket, each committed by the daemon), ' +
      `vs ${formatCount(ctx.snapshots)} qemu-img create -b runs, each a process start: the ` +
      'way each is driven from a shell script or an orchestrator.',
    `Profiles: for every row below the goal (thinp ÷ qemu-nbd under ${GOAL.vsQemu.toFixed(2)}× or ` +
      `thinp ÷ nbdkit under ${GOAL.vsNbdkit.toFixed(2)}×), the daemon is started ` +
      'again on the same root under node --cpu-prof (the daemon process itself, with the ' +
      'configuration thinp daemon would hand it), the same fio job runs once (writes into a new region), and the daemon stops with SIGTERM, which ' +
      "writes the profile. Only the samples taken while fio ran count (not the daemon's start " +
      "and stop); self time is V8's sample attribution.",
    `The whole run took ${formatSeconds(total)}.`,
  ];
}
