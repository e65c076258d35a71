/**
 * `npm run bench -- docker`: a private dockerd on thinp (the graphdriver plugin) next to the
 * same dockerd on `vfs` and, where the kernel has overlayfs, `overlay2`, in one run, on the
 * same disk: `docker load` of an image (MB/s of tar), `docker run` of a command that exits
 * (create + start + exit), `docker rm`, and a container writing a file with fsync (MB/s).
 * Each timing is the median of `repeats`; the tables give thinp's time or rate next to each
 * peer's and the ratio (for times, peer ÷ thinp: above 1 means thinp is faster).
 *
 * The dockerds and thinp's daemon are real processes started here and always stopped, with
 * their mounts undone (the test helpers of test/support do it for the tests too).
 */

import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DaemonProcess, requireTool } from '../test/support/daemon.js';
import { PrivateDockerd } from '../test/support/dockerd.js';
import { busyboxLayers, dockerSaveTar, tarOf } from '../test/support/image-builder.js';
import { hasOverlay, median, peerTable, timed } from './peer-runs.js';
import { machineInfo, renderReport, writeReport } from './report.js';

export const DEFAULT_WRITE_BYTES = 1024 * 1024 * 1024;
const DEFAULT_REPEATS = 5;
const IMAGE = 'thinp-bench/busybox:big';
const MiB = 1024 * 1024;

export interface DockerBenchOptions {
  /** Bytes a container writes (default 1 GiB). */
  size?: number;
  repeats?: number;
  /** Bytes of file content in the image's big layer (default 64 MiB). */
  imageBytes?: number;
  resultsDir?: string;
  tempDir?: string;
  command?: string;
  log?: (line: string) => void;
}

interface DriverResult {
  driver: string;
  loadSeconds: number;
  runSeconds: number;
  rmSeconds: number;
  writeSeconds: number;
}

export async function runDockerBench(
  options: DockerBenchOptions = {},
): Promise<{ text: string; reportPath: string }> {
  const log = options.log ?? (() => {});
  const writeBytes = options.size ?? DEFAULT_WRITE_BYTES;
  const repeats = options.repeats ?? DEFAULT_REPEATS;
  await requireTool('dockerd', 'docker.io');
  const started = new Date();
  const dir = await mkdtemp(path.join(options.tempDir ?? os.tmpdir(), 'thinp-bench-docker-'));
  try {
    const tarball = await makeImage(dir, options.imageBytes ?? 64 * MiB);
    const tarBytes = (await stat(tarball)).size;
    const drivers = ['thinp', 'vfs', ...((await hasOverlay()) ? ['overlay2'] : [])];
    const results: DriverResult[] = [];
    for (const driver of drivers) {
      log(`docker bench: ${driver}`);
      results.push(await measureDriver(dir, driver, tarball, writeBytes, repeats));
    }
    const text = render(results, tarBytes, writeBytes, repeats);
    const report = renderReport({
      title: 'dockerd on thinp against vfs and overlay2',
      date: started,
      machine: await machineInfo(dir),
      commands: [options.command ?? 'npm run bench -- docker'],
      results: [{ heading: 'Times and rates (medians)', body: text }],
      notes: [
        `Image: busybox-static in four layers plus one of ${formatMiB(options.imageBytes ?? 64 * MiB)} of random files; the tar is ${formatMiB(tarBytes)}.`,
        '`docker run`: `docker run --network none IMAGE true`, create + start + exit, then `docker rm` timed apart.',
        `Write: \`dd bs=1M count=${writeBytes / MiB} conv=fsync\` of zeros inside a container; the rate counts the bytes over the whole \`docker run\`.`,
        'thinp: a loop-mode pool (sparse files on the same disk), xfs base device of 10 GiB; the dockerds share nothing but the disk.',
        'Ratios: for times, peer ÷ thinp; for rates, thinp ÷ peer; above 1 means thinp is faster.',
      ],
    });
    const reportPath = await writeReport(
      options.resultsDir ?? path.join(import.meta.dirname, 'results'),
      'docker',
      started,
      report,
    );
    return { text, reportPath };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function measureDriver(
  dir: string,
  driver: string,
  tarball: string,
  writeBytes: number,
  repeats: number,
): Promise<DriverResult> {
  const work = path.join(dir, driver);
  let thinp: DaemonProcess | undefined;
  let storageDriver = driver;
  if (driver === 'thinp') {
    storageDriver = `thinp-bench-${process.pid}`;
    thinp = await DaemonProcess.start(
      path.join(work, 'root'),
      ['dm.loopdatasize=64G', 'dm.min_free_space=0%'],
      ['--docker-plugin', `/run/docker/plugins/${storageDriver}.sock`],
    );
  }
  const docker = new PrivateDockerd(path.join(work, 'docker'), {
    storageDriver,
    experimental: driver === 'thinp',
  });
  try {
    await docker.start();
    const load: number[] = [];
    for (let i = 0; i < repeats; i++) {
      load.push(await timed(() => docker.dockerOk(['load', '-i', tarball], 600_000)));
      if (i < repeats - 1) await docker.dockerOk(['rmi', IMAGE]);
    }
    const run: number[] = [];
    const rmTimes: number[] = [];
    for (let i = 0; i < repeats; i++) {
      const name = `run-${i}`;
      run.push(
        await timed(() =>
          docker.dockerOk(['run', '--network', 'none', '--name', name, IMAGE, 'true']),
        ),
      );
      rmTimes.push(await timed(() => docker.dockerOk(['rm', name])));
    }
    const count = writeBytes / MiB;
    const write: number[] = [];
    for (let i = 0; i < Math.min(repeats, 3); i++) {
      write.push(
        await timed(() =>
          docker.dockerOk(
            [
              'run',
              '--rm',
              '--network',
              'none',
              IMAGE,
              'dd',
              'if=/dev/zero',
              'of=/big',
              'bs=1M',
              `count=${count}`,
              'conv=fsync',
            ],
            1_800_000,
          ),
        ),
      );
    }
    return {
      driver,
      loadSeconds: median(load),
      runSeconds: median(run),
      rmSeconds: median(rmTimes),
      writeSeconds: median(write),
    };
  } finally {
    await docker.destroy();
    await thinp?.stop();
  }
}

function render(
  results: DriverResult[],
  tarBytes: number,
  writeBytes: number,
  repeats: number,
): string {
  const by = (pick: (r: DriverResult) => number) =>
    new Map(results.map((r) => [r.driver, pick(r)]));
  return peerTable(
    results.map((r) => r.driver),
    [
      { operation: 'docker load', seconds: by((r) => r.loadSeconds), bytes: tarBytes },
      { operation: 'docker run (create + start + exit)', seconds: by((r) => r.runSeconds) },
      { operation: 'docker rm', seconds: by((r) => r.rmSeconds) },
      {
        operation: `container writes ${formatMiB(writeBytes)} (fsync)`,
        seconds: by((r) => r.writeSeconds),
        bytes: writeBytes,
      },
    ],
    repeats,
  );
}

async function makeImage(dir: string, bytes: number): Promise<string> {
  const files = Math.max(1, Math.round(bytes / MiB));
  const big = await tarOf([
    { name: 'data/', type: 'directory' },
    ...Array.from({ length: files }, (_, i) => ({ name: `data/f${i}`, content: randomBytes(MiB) })),
  ]);
  const tools = await tarOf([
    { name: 'bin/', type: 'directory' },
    ...['dd'].map((a) => ({ name: `bin/${a}`, type: 'symlink' as const, linkname: 'busybox' })),
  ]);
  const file = path.join(dir, 'image.tar');
  await writeFile(
    file,
    await dockerSaveTar([...(await busyboxLayers()), tools, big], { tags: [IMAGE] }),
  );
  return file;
}

function formatMiB(bytes: number): string {
  return `${(bytes / MiB).toFixed(0)} MiB`;
}
