/**
 * The direct-mode part of the pool benchmark: the pool engine on a block device (a loop
 * device over a sparse file on the same disk, BlockDevDevice regions for metadata and data)
 * next to the loop-mode pool on files, and fio on a raw region of the same block device, at
 * the same workloads and queue depths, in the same run.
 */

import { execFile } from 'node:child_process';
import { truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { BlockDevDevice } from '../src/block/index.js';
import { ThinPool } from '../src/pool/index.js';
import {
  BLOCK_SIZE,
  COMMIT_INTERVAL_MS,
  fillWhole,
  interleaved,
  LARGE_IO,
  type Measurement,
  type Positions,
  randomPositions,
  SMALL_IO,
  sequentialPositions,
  slotPositions,
} from './pool.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;
/** The metadata region at the start of the loop device. */
const META_BYTES = 64 * MiB;
/** Thin ids of the loop-mode pool's fresh devices in this phase. */
const LOOP_FRESH_ID = 40;

/** fio's numbers for one run on the raw device. */
export interface RawRun {
  iops: number;
  mibPerSecond: number;
}

export interface DirectRow {
  workload: string;
  queueDepth: number;
  loop: Measurement;
  direct: Measurement;
  raw: RawRun;
}

export interface DirectContext {
  dir: string;
  size: number;
  seconds: number;
  depths: readonly number[];
  /** The loop-mode pool, its device `mappedId` of `size` bytes written whole. */
  loopPool: ThinPool;
  mappedId: number;
  commands: string[];
  log: (line: string) => void;
}

/** Runs the phase; the loop device is detached and the pool closed whatever fails. */
export async function runDirectPhase(ctx: DirectContext): Promise<DirectRow[]> {
  const { dir, size } = ctx;
  const dataBytes = (2 + ctx.depths.length) * size;
  const rawOffset = META_BYTES + dataBytes;
  const image = path.join(dir, 'direct.img');
  await writeFile(image, '');
  await truncate(image, rawOffset + size);
  const loop = (await run('losetup', ['--find', '--show', image])).stdout.trim();
  ctx.commands.push(
    `losetup --find --show ${image}   # ${rawOffset + size} bytes, sparse: metadata at 0 ` +
      `(${META_BYTES}), data at ${META_BYTES} (${dataBytes}), fio's raw region at ${rawOffset} (${size})`,
  );
  try {
    return await onDevice(ctx, loop, dataBytes, rawOffset);
  } finally {
    await run('losetup', ['-d', loop]);
  }
}

async function onDevice(
  ctx: DirectContext,
  loop: string,
  dataBytes: number,
  rawOffset: number,
): Promise<DirectRow[]> {
  const meta = await BlockDevDevice.open(loop, { offset: 0, size: META_BYTES });
  const data = await BlockDevDevice.open(loop, { offset: META_BYTES, size: dataBytes });
  const pool = await ThinPool.create(data, meta, {
    blockSize: BLOCK_SIZE,
    commitIntervalMs: COMMIT_INTERVAL_MS,
  });
  try {
    return await workloads(ctx, pool, loop, rawOffset);
  } finally {
    await pool.close();
    await Promise.all([data.close(), meta.close()]);
  }
}

async function workloads(
  ctx: DirectContext,
  direct: ThinPool,
  loop: string,
  rawOffset: number,
): Promise<DirectRow[]> {
  const { size, seconds } = ctx;
  await direct.createThin(1);
  const mappedDirect = direct.device(1, size);
  const mappedLoop = ctx.loopPool.device(ctx.mappedId, size);
  ctx.log(`direct mode: fill ${size} bytes of a thin device on ${loop}, and the raw region`);
  await fillWhole(mappedDirect, size);
  await fio(loop, rawOffset, size, { rw: 'write', bs: LARGE_IO, qd: 8 });
  const rows: DirectRow[] = [];
  const compare = async (
    workload: string,
    ioBytes: number,
    queueDepth: number,
    write: boolean,
    targets: [loop: Parameters<typeof interleaved>[0]['target'], direct: typeof mappedDirect],
    positions: () => Positions,
    rawRw: string,
  ) => {
    ctx.log(`direct mode: ${workload}, queue depth ${queueDepth}`);
    const spec = { workload, ioBytes, queueDepth, seconds, write };
    const [l, d] = await interleaved(
      {
        spec: { ...spec, target: 'loop mode' },
        target: targets[0],
        positions: positions(),
        pool: ctx.loopPool,
      },
      {
        spec: { ...spec, target: 'direct' },
        target: targets[1],
        positions: positions(),
        pool: direct,
      },
    );
    const raw = await fio(loop, rawOffset, size, {
      rw: rawRw,
      bs: ioBytes,
      qd: queueDepth,
      seconds: rawRw === 'write' ? undefined : seconds,
    });
    rows.push({ workload, queueDepth, loop: l, direct: d, raw });
  };
  for (const qd of ctx.depths) {
    await compare(
      '4 KiB random read',
      SMALL_IO,
      qd,
      false,
      [mappedLoop, mappedDirect],
      () => randomPositions(size / SMALL_IO, SMALL_IO, 0xd1 + qd),
      'randread',
    );
  }
  for (const qd of ctx.depths) {
    await compare(
      '4 KiB random overwrite',
      SMALL_IO,
      qd,
      true,
      [mappedLoop, mappedDirect],
      () => slotPositions(size / SMALL_IO, 0xd2 + qd),
      'randwrite',
    );
  }
  for (const [i, qd] of ctx.depths.entries()) {
    await ctx.loopPool.createThin(LOOP_FRESH_ID + i);
    await direct.createThin(10 + i);
    const targets: [typeof mappedLoop, typeof mappedDirect] = [
      ctx.loopPool.device(LOOP_FRESH_ID + i, size),
      direct.device(10 + i, size),
    ];
    await compare(
      '1 MiB sequential write, fresh space',
      LARGE_IO,
      qd,
      true,
      targets,
      () => sequentialPositions(size, LARGE_IO, false),
      'write',
    );
  }
  return rows;
}

/**
 * fio on `size` bytes of `device` from `offset`: libaio with O_DIRECT (the device's own
 * speed), `qd` in flight; timed for `seconds`, or one pass; writes end with an fsync.
 */
async function fio(
  device: string,
  offset: number,
  size: number,
  job: { rw: string; bs: number; qd: number; seconds?: number | undefined },
): Promise<RawRun> {
  const args = [
    '--name=raw',
    `--filename=${device}`,
    `--offset=${offset}`,
    `--size=${size}`,
    `--rw=${job.rw}`,
    `--bs=${job.bs}`,
    `--iodepth=${job.qd}`,
    '--ioengine=libaio',
    '--direct=1',
    '--output-format=json',
    ...(job.rw.includes('write') ? ['--end_fsync=1'] : []),
    ...(job.seconds === undefined
      ? []
      : ['--time_based', `--runtime=${Math.max(1, Math.round(job.seconds))}`]),
  ];
  const { stdout } = await run('fio', args, { maxBuffer: 16 * MiB });
  const report = JSON.parse(stdout.slice(stdout.indexOf('{'))) as {
    jobs: Array<Record<'read' | 'write', { iops: number; bw_bytes: number }>>;
  };
  const side = report.jobs[0]?.[job.rw.includes('read') ? 'read' : 'write'];
  return { iops: side?.iops ?? 0, mibPerSecond: (side?.bw_bytes ?? 0) / MiB };
}
