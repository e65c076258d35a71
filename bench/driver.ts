/**
 * The storage driver benchmark: what a user of images and containers waits for, on thinp
 * (an in-process daemon: thin snapshots with xfs, mounted through nbdfuse + losetup) and, in
 * the same run on the same disk, on Docker's reference approach that runs here without
 * devicemapper: plain directories as Docker's vfs driver keeps them (each layer a full copy
 * of its parent, `cp -a`, with the tar applied on top; a container = a copy for the init
 * layer + a copy for its own), and overlayfs for the mount when the kernel allows it.
 *
 *     npm run bench -- driver [--size BYTES]     (the image's data layer, default 64M)
 *
 * One run of each operation; the ratio is thinp's time over the reference's (below 1: thinp
 * is faster), and for the load, thinp's MB/s over the reference's (above 1: thinp is faster).
 */

import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { applyLayer, exportDiff } from '../src/archive/index.js';
import { loadConfig } from '../src/config/index.js';
import { startDaemon } from '../src/daemon/index.js';
import { setupInitLayer } from '../src/graph/init-layer.js';
import { benchLayers, writeBenchImage } from './driver-image.js';
import {
  formatBytes,
  formatRatio,
  formatSeconds,
  machineInfo,
  markdownTable,
  renderReport,
  writeReport,
} from './report.js';

const run = promisify(execFile);
const DEFAULT_RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));
export const DEFAULT_DATA_SIZE = 64 * 1024 * 1024;
const TAG = 'bench:1';
/** What the user does in the container before committing it. */
const CHANGES =
  'set -e; cd "$1"; mkdir -p work; dd if=/dev/urandom of=work/blob bs=1M count=8 2>/dev/null; rm -r data/d1; echo x > etc/hostname';
const SEARCH_PATH = [process.env.PATH ?? '', '/usr/sbin', '/sbin'].join(path.delimiter);

export interface DriverBenchOptions {
  size?: number;
  resultsDir?: string;
  tempDir?: string;
  command?: string;
  log?: (line: string) => void;
}

/** Seconds each operation took; `load` also in bytes of tar. */
export interface DriverTimes {
  load: number;
  create: number;
  mount: number | undefined;
  unmount: number | undefined;
  commit: number;
  remove: number;
}

export interface DriverBenchResult {
  text: string;
  reportPath: string;
  archiveBytes: number;
  thinp: DriverTimes;
  plain: DriverTimes;
  overlay: { mount: number; unmount: number } | undefined;
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const value = await fn();
  return [value, (performance.now() - t0) / 1000];
}

async function sh(script: string, ...args: string[]): Promise<void> {
  await run('sh', ['-c', script, 'sh', ...args], { env: { PATH: SEARCH_PATH } });
}

export async function runDriverBench(o: DriverBenchOptions = {}): Promise<DriverBenchResult> {
  const size = o.size ?? DEFAULT_DATA_SIZE;
  const log = o.log ?? (() => {});
  const started = new Date();
  const dir = await mkdtemp(path.join(o.tempDir ?? os.tmpdir(), 'thinp-bench-driver-'));
  try {
    const layers = await benchLayers(size);
    const archive = path.join(dir, 'image.tar');
    await writeBenchImage(archive, layers, TAG, dir);
    const archiveBytes = (await stat(archive)).size;
    log(`driver: image of ${formatBytes(archiveBytes)}; thinp`);
    const thinp = await benchThinp(path.join(dir, 'root'), archive);
    log('driver: plain directories');
    const plain = await benchPlain(path.join(dir, 'plain'), layers);
    log('driver: overlayfs mount');
    const overlay = await benchOverlay(path.join(dir, 'overlay'), path.join(dir, 'plain'));
    await rm(path.join(dir, 'plain'), { recursive: true, force: true });
    const results = sections(archiveBytes, thinp, plain, overlay);
    const text = results.map((s) => `${s.heading}\n\n${s.body}`).join('\n\n');
    const report = renderReport({
      title: `thinp storage driver benchmark: an image of ${formatBytes(archiveBytes)}`,
      date: started,
      machine: await machineInfo(dir),
      commands: [o.command ?? `npm run bench -- driver --size ${size}`],
      results,
      notes: NOTES,
    });
    const reportPath = await writeReport(
      o.resultsDir ?? DEFAULT_RESULTS_DIR,
      'driver',
      started,
      report,
    );
    return { text, reportPath, archiveBytes, thinp, plain, overlay };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function benchThinp(root: string, archive: string): Promise<DriverTimes> {
  const storageOpts = [
    'dm.loopdatasize=8G',
    'dm.loopmetadatasize=128M',
    'dm.min_free_space=0%',
    'dm.basesize=1G',
  ];
  const config = await loadConfig({ root, storageOpts, env: { PATH: SEARCH_PATH } });
  const handle = await startDaemon(config, { log: () => {} });
  try {
    const { images, containers } = handle.images;
    // The base device is made on first need: make it before the clock starts.
    await handle.layers.create('bench-warm-up', undefined);
    await handle.layers.remove('bench-warm-up');
    const [, load] = await timed(() => images.load(createReadStream(archive)));
    const [, create] = await timed(() => containers.create(TAG, { name: 'bench' }));
    const [rootfs, mount] = await timed(() => containers.mount('bench'));
    await sh(CHANGES, rootfs);
    const [, unmount] = await timed(() => containers.unmount('bench'));
    const [committed, commit] = await timed(() => containers.commit('bench', 'bench:2'));
    const [, remove] = await timed(async () => {
      await containers.remove('bench');
      await images.remove(committed.id);
      await images.remove(TAG);
    });
    return { load, create, mount, unmount, commit, remove };
  } finally {
    try {
      await handle.layers.cleanup();
    } finally {
      await handle.stop();
    }
  }
}

/** Docker's vfs driver: each layer a full copy of its parent with the tar applied. */
async function benchPlain(dir: string, layers: readonly Buffer[]): Promise<DriverTimes> {
  await mkdir(dir, { recursive: true });
  const layerDir = (i: number) => path.join(dir, `layer${i}`);
  const [, load] = await timed(async () => {
    for (const [i, tar] of layers.entries()) {
      if (i === 0) await mkdir(layerDir(0));
      else await run('cp', ['-a', layerDir(i - 1), layerDir(i)]);
      await applyLayer(layerDir(i), Readable.from([tar]));
    }
  });
  const top = layerDir(layers.length - 1);
  const init = path.join(dir, 'c-init');
  const rw = path.join(dir, 'c');
  const [, create] = await timed(async () => {
    await run('cp', ['-a', top, init]);
    await setupInitLayer(init, 'bench');
    await run('cp', ['-a', init, rw]);
  });
  await sh(CHANGES, rw);
  const committed = path.join(dir, 'committed');
  const [, commit] = await timed(async () => {
    const diff = exportDiff(rw, init);
    await run('cp', ['-a', top, committed]);
    await applyLayer(committed, diff);
  });
  const [, remove] = await timed(async () => {
    for (const d of [rw, init, committed]) await rm(d, { recursive: true, force: true });
    for (let i = layers.length - 1; i >= 0; i--) await rm(layerDir(i), { recursive: true });
  });
  // The layers are made again for the overlay mount, which needs lower folders.
  await mkdir(layerDir(0));
  await applyLayer(layerDir(0), Readable.from([layers[0] as Buffer]));
  return { load, create, mount: undefined, unmount: undefined, commit, remove };
}

/** overlayfs over a lower folder: the container mount of Docker's overlay2. */
async function benchOverlay(
  dir: string,
  plain: string,
): Promise<{ mount: number; unmount: number } | undefined> {
  const lower = path.join(plain, 'layer0');
  const [upper, work, merged] = ['upper', 'work', 'merged'].map((d) => path.join(dir, d)) as [
    string,
    string,
    string,
  ];
  for (const d of [upper, work, merged]) await mkdir(d, { recursive: true });
  const options = `lowerdir=${lower},upperdir=${upper},workdir=${work}`;
  try {
    const [, mount] = await timed(() =>
      run('mount', ['-t', 'overlay', 'overlay', '-o', options, merged]),
    );
    const [, unmount] = await timed(() => run('umount', [merged]));
    return { mount, unmount };
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------

function sections(
  archiveBytes: number,
  thinp: DriverTimes,
  plain: DriverTimes,
  overlay: DriverBenchResult['overlay'],
) {
  const mbps = (seconds: number) => archiveBytes / 1e6 / seconds;
  const cell = (s: number | undefined) => (s === undefined ? '—' : formatSeconds(s));
  const ratio = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined ? '—' : formatRatio(a / b);
  const refMount = overlay?.mount;
  const refUnmount = overlay?.unmount;
  const rows = [
    [
      'image load (MB/s of tar)',
      `${mbps(thinp.load).toFixed(1)} MB/s`,
      `${mbps(plain.load).toFixed(1)} MB/s`,
      formatRatio(mbps(thinp.load) / mbps(plain.load)),
    ],
    ['container create', cell(thinp.create), cell(plain.create), ratio(thinp.create, plain.create)],
    [
      'container mount',
      cell(thinp.mount),
      `${cell(refMount)} (overlayfs)`,
      ratio(thinp.mount, refMount),
    ],
    [
      'container unmount',
      cell(thinp.unmount),
      `${cell(refUnmount)} (overlayfs)`,
      ratio(thinp.unmount, refUnmount),
    ],
    ['container commit', cell(thinp.commit), cell(plain.commit), ratio(thinp.commit, plain.commit)],
    [
      'remove container and images',
      cell(thinp.remove),
      cell(plain.remove),
      ratio(thinp.remove, plain.remove),
    ],
  ];
  return [
    {
      heading: 'Images and containers: thinp next to plain directories (vfs) and overlayfs',
      body: markdownTable(['operation', 'thinp', 'reference', 'thinp / reference'], rows, [
        'left',
        'right',
        'right',
        'right',
      ]),
    },
  ];
}

const NOTES = [
  'One run of each operation, in this order, on one machine; the reference runs right after thinp on the same disk.',
  'thinp: an in-process daemon on a loop-mode pool; layers are xfs snapshots mounted through nbdfuse + losetup; every tar is applied and diffed in the archive worker process.',
  "Reference: Docker's vfs layout on plain directories (a layer or container = `cp -a` of its parent, the tar applied with the same archive code); its mount is overlayfs (`mount -t overlay`), since vfs does not mount.",
  'Load ratio: thinp MB/s over the reference MB/s (above 1: thinp is faster). Other ratios: thinp time over the reference time (below 1: thinp is faster).',
  "thinp's base device (mkfs) is made before the clock starts, as it is once per pool.",
  'Commit: the diff of the container against its init layer, applied as a new layer on the image (thinp also hashes it for the chain ID).',
];
