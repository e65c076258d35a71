/**
 * `npm run bench -- containerd`: a private containerd with thinp's proxy snapshotter next to
 * the same containerd's built-in `native` and, where the kernel has overlayfs, `overlayfs`
 * snapshotters, in one run on the same disk: `ctr images import` of an image (MB/s of tar),
 * a snapshot prepared on the image and mounted (`ctr snapshots prepare` + `mounts`, then the
 * mount made), committed, and removed. Each timing is the median of `repeats`; the ratio is
 * peer ÷ thinp for times (above 1: thinp is faster).
 */

import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PrivateContainerd } from '../test/support/containerd.js';
import { DaemonProcess, requireTool, runToolOk } from '../test/support/daemon.js';
import { busyboxLayers, dockerSaveTar, tarOf } from '../test/support/image-builder.js';
import { hasOverlay, median, peerTable, timed } from './peer-runs.js';
import { machineInfo, renderReport, writeReport } from './report.js';

const MiB = 1024 * 1024;
const REF = 'docker.io/thinp-bench/busybox:big';

export interface ContainerdBenchOptions {
  /** Bytes of file content in the image's big layer (default 64 MiB). */
  size?: number;
  repeats?: number;
  resultsDir?: string;
  tempDir?: string;
  command?: string;
  log?: (line: string) => void;
}

interface Result {
  snapshotter: string;
  importSeconds: number;
  prepareSeconds: number;
  commitSeconds: number;
  removeSeconds: number;
}

export async function runContainerdBench(
  options: ContainerdBenchOptions = {},
): Promise<{ text: string; reportPath: string }> {
  const log = options.log ?? (() => {});
  const repeats = options.repeats ?? 5;
  const bytes = options.size ?? 64 * MiB;
  await requireTool('containerd', 'containerd');
  const started = new Date();
  const dir = await mkdtemp(path.join(options.tempDir ?? os.tmpdir(), 'thinp-bench-containerd-'));
  try {
    const tarball = await makeImage(dir, bytes);
    const tarBytes = (await stat(tarball)).size;
    const names = ['thinp', 'native', ...((await hasOverlay()) ? ['overlayfs'] : [])];
    const results: Result[] = [];
    for (const name of names) {
      log(`containerd bench: ${name}`);
      results.push(await measure(dir, name, tarball, repeats));
    }
    const text = render(results, tarBytes, repeats);
    const report = renderReport({
      title: "containerd with thinp's proxy snapshotter against native and overlayfs",
      date: started,
      machine: await machineInfo(dir),
      commands: [options.command ?? 'npm run bench -- containerd'],
      results: [{ heading: 'Times (medians)', body: text }],
      notes: [
        `Image: busybox-static in four layers plus one of ${bytes / MiB} MiB of random files; the tar is ${(tarBytes / MiB).toFixed(0)} MiB.`,
        "Prepare + mount: `ctr snapshots prepare` on the image's top snapshot, `ctr snapshots mounts`, and the mount made with mount(8); unmounted before the commit.",
        'thinp: a loop-mode pool on the same disk, ext4 base device of 10 GiB; thinp hands containerd bind mounts of filesystems it mounted.',
        'Ratios: peer ÷ thinp for times, thinp ÷ peer for rates; above 1 means thinp is faster.',
      ],
    });
    const reportPath = await writeReport(
      options.resultsDir ?? path.join(import.meta.dirname, 'results'),
      'containerd',
      started,
      report,
    );
    return { text, reportPath };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function measure(
  dir: string,
  name: string,
  tarball: string,
  repeats: number,
): Promise<Result> {
  const work = path.join(dir, name);
  let thinp: DaemonProcess | undefined;
  const proxies: Record<string, string> = {};
  if (name === 'thinp') {
    const socket = path.join(work, 'snapshotter.sock');
    thinp = await DaemonProcess.start(
      path.join(work, 'root'),
      ['dm.loopdatasize=64G', 'dm.min_free_space=0%', 'dm.fs=ext4'],
      ['--containerd-snapshotter', socket],
    );
    proxies.thinp = socket;
  }
  const containerd = new PrivateContainerd(path.join(work, 'containerd'), proxies);
  try {
    await containerd.start();
    const imports: number[] = [];
    for (let i = 0; i < repeats; i++) {
      imports.push(
        await timed(() =>
          containerd.ctrOk(['images', 'import', '--snapshotter', name, tarball], 600_000),
        ),
      );
      if (i < repeats - 1) await containerd.ctrOk(['images', 'rm', '--sync', REF]);
    }
    const top = await topSnapshot(containerd, name);
    const mountpoint = path.join(work, 'mnt');
    await mkdir(mountpoint, { recursive: true });
    const prepare: number[] = [];
    const commit: number[] = [];
    const remove: number[] = [];
    for (let i = 0; i < repeats; i++) {
      const key = `bench-active-${i}`;
      prepare.push(
        await timed(async () => {
          await containerd.ctrOk(['snapshots', '--snapshotter', name, 'prepare', key, top]);
          const mounts = await containerd.ctrOk([
            'snapshots',
            '--snapshotter',
            name,
            'mounts',
            mountpoint,
            key,
          ]);
          await runToolOk(await requireTool('sh', 'dash'), ['-c', mounts]);
        }),
      );
      await writeFile(path.join(mountpoint, 'bench-file'), randomBytes(MiB));
      await runToolOk(await requireTool('umount', 'mount'), [mountpoint]);
      commit.push(
        await timed(() =>
          containerd.ctrOk([
            'snapshots',
            '--snapshotter',
            name,
            'commit',
            `bench-committed-${i}`,
            key,
          ]),
        ),
      );
      remove.push(
        await timed(() =>
          containerd.ctrOk(['snapshots', '--snapshotter', name, 'rm', `bench-committed-${i}`]),
        ),
      );
    }
    return {
      snapshotter: name,
      importSeconds: median(imports),
      prepareSeconds: median(prepare),
      commitSeconds: median(commit),
      removeSeconds: median(remove),
    };
  } finally {
    await containerd.destroy();
    await thinp?.stop();
  }
}

/** The committed snapshot the image's top layer unpacked into. */
async function topSnapshot(containerd: PrivateContainerd, name: string): Promise<string> {
  const lines = (await containerd.ctrOk(['snapshots', '--snapshotter', name, 'ls']))
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/));
  const parents = new Set(lines.map((f) => f[1]));
  const top = lines.find((f) => !parents.has(f[0]));
  if (top?.[0] === undefined) throw new Error(`no top snapshot among:\n${lines.join('\n')}`);
  return top[0];
}

function render(results: Result[], tarBytes: number, repeats: number): string {
  const by = (pick: (r: Result) => number) => new Map(results.map((r) => [r.snapshotter, pick(r)]));
  return peerTable(
    results.map((r) => r.snapshotter),
    [
      { operation: 'ctr images import', seconds: by((r) => r.importSeconds), bytes: tarBytes },
      { operation: 'snapshot prepare + mount', seconds: by((r) => r.prepareSeconds) },
      { operation: 'snapshot commit', seconds: by((r) => r.commitSeconds) },
      { operation: 'snapshot remove', seconds: by((r) => r.removeSeconds) },
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
  const file = path.join(dir, 'image.tar');
  await writeFile(
    file,
    await dockerSaveTar([...(await busyboxLayers()), big], { tags: ['thinp-bench/busybox:big'] }),
  );
  return file;
}
