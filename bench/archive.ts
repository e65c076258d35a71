/**
 * The archive layer against GNU tar on the same tree and the same disk: applying a layer
 * tar (applyLayer vs `tar -x`), writing the whole tree as a diff (exportDiff vs `tar -c`),
 * and walking two trees for their changes and size (listChanges, diffSize). The tree holds
 * many small files and a few large ones, as an image layer does.
 *
 * The archive API is loaded from dist/ when a build is there (plain node workers, as the
 * daemon runs them), else from the sources (workers through tsx, slower to start); the
 * report says which.
 */

import { execFile } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { findOnPath, pathExists } from '../src/util/index.js';
import {
  formatBytes,
  formatCount,
  formatRatio,
  formatSeconds,
  machineInfo,
  markdownTable,
  renderReport,
  writeReport,
} from './report.js';

const run = promisify(execFile);

export const DEFAULT_ARCHIVE_SIZE = 256 * 1024 * 1024;
const DEFAULT_RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));
const REPETITIONS = 3;

export interface ArchiveBenchOptions {
  /** Bytes of file content in the tree. */
  size?: number;
  resultsDir?: string;
  tempDir?: string;
  command?: string;
  log?: (line: string) => void;
}

type ArchiveApi = typeof import('../src/archive/index.js');

/** One operation's best time of the repetitions, and the reference's when there is one. */
interface Row {
  what: string;
  thinp: number;
  reference?: { name: string; seconds: number };
}

export async function runArchiveBench(
  options: ArchiveBenchOptions = {},
): Promise<{ text: string; reportPath: string }> {
  const size = options.size ?? DEFAULT_ARCHIVE_SIZE;
  const log = options.log ?? (() => {});
  if ((await findOnPath('tar', process.env.PATH)) === undefined) {
    throw new Error(
      "GNU tar is not installed: it comes with the Debian package tar; run 'npm run deps:test'",
    );
  }
  const started = new Date();
  const dir = await mkdtemp(path.join(options.tempDir ?? os.tmpdir(), 'thinp-bench-archive-'));
  try {
    const { api, from } = await loadApi();
    log(`archive: making a tree of ${formatBytes(size)}`);
    const files = await makeTree(path.join(dir, 'source'), size);
    const tar = path.join(dir, 'layer.tar');
    await run('tar', ['--numeric-owner', '-C', path.join(dir, 'source'), '-cf', tar, '.']);
    const tarBytes = (await stat(tar)).size;
    const rows = await measure(api, dir, tar, log);
    const machine = await machineInfo(dir);
    const table = markdownTable(
      ['operation', 'thinp', 'reference', 'reference time', 'thinp / reference'],
      rows.map((row) => [
        row.what,
        formatSeconds(row.thinp),
        row.reference?.name ?? '',
        row.reference === undefined ? '' : formatSeconds(row.reference.seconds),
        row.reference === undefined ? '' : formatRatio(row.thinp / row.reference.seconds),
      ]),
      ['left', 'right', 'left', 'right', 'right'],
    );
    const apply = rows[0]?.thinp ?? 1;
    const results = [
      {
        heading: `${formatCount(files)} files, ${formatBytes(size)} of content, a ${formatBytes(tarBytes)} tar`,
        body: table,
      },
    ];
    const text = `${results[0]?.heading}\n\n${table}\n\napplyLayer: ${formatBytes(tarBytes / apply)}/s of tar`;
    const report = renderReport({
      title: `thinp archive benchmark: ${formatBytes(size)} tree`,
      date: started,
      machine,
      commands: [options.command ?? `npm run bench -- archive --size ${size}`],
      results,
      notes: [
        `Best of ${REPETITIONS} runs each, into a fresh directory on the disk of ${dir}.`,
        `The archive API came from ${from}; each call starts one worker process, included in the times.`,
        'applyLayer and tar -x: the same tar, with ownership, modes and times; exportDiff and tar -c: the whole tree to a file.',
        'listChanges and diffSize: the applied tree against the source tree (no changes; both trees walked).',
        `applyLayer reads ${formatBytes(tarBytes / apply)}/s of tar.`,
      ],
    });
    const reportPath = await writeReport(
      options.resultsDir ?? DEFAULT_RESULTS_DIR,
      'archive',
      started,
      report,
    );
    return { text, reportPath };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The build's archive API when there is one, else the sources'. */
async function loadApi(): Promise<{ api: ArchiveApi; from: string }> {
  const built = fileURLToPath(new URL('../dist/archive/index.js', import.meta.url));
  if (await pathExists(built))
    return { api: (await import(built)) as ArchiveApi, from: 'dist/ (plain node)' };
  return {
    api: await import('../src/archive/index.js'),
    from: 'src/ (workers through tsx; run npm run build for dist/)',
  };
}

/** A tree like an image layer: 200 directories of small files and a few large files. */
async function makeTree(root: string, size: number): Promise<number> {
  let left = size;
  let files = 0;
  const big = Math.floor(size / 2);
  for (let i = 0; i < 4; i++) {
    await mkdir(path.join(root, 'opt'), { recursive: true });
    await writeFile(path.join(root, 'opt', `blob${i}`), Buffer.alloc(big / 4, i + 1));
    left -= big / 4;
    files++;
  }
  for (let i = 0; left > 0; i++) {
    const dir = path.join(root, 'usr', `d${i % 200}`);
    if (i < 200) await mkdir(dir, { recursive: true });
    const bytes = Math.min(left, 512 + ((i * 7919) % 16_384));
    await writeFile(path.join(dir, `f${i}`), Buffer.alloc(bytes, i % 251));
    left -= bytes;
    files++;
  }
  return files;
}

async function best(times: number, once: (n: number) => Promise<void>): Promise<number> {
  let fastest = Number.POSITIVE_INFINITY;
  for (let n = 0; n < times; n++) {
    const t0 = performance.now();
    await once(n);
    fastest = Math.min(fastest, (performance.now() - t0) / 1000);
  }
  return fastest;
}

async function fresh(dir: string): Promise<string> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  return dir;
}

async function measure(
  api: ArchiveApi,
  dir: string,
  tar: string,
  log: (line: string) => void,
): Promise<Row[]> {
  const source = path.join(dir, 'source');
  const ours = path.join(dir, 'ours');
  const theirs = path.join(dir, 'theirs');
  log('archive: apply');
  const apply = await best(REPETITIONS, async () => {
    await api.applyLayer(await fresh(ours), createReadStream(tar));
  });
  const untar = await best(REPETITIONS, async () => {
    await run('tar', [
      '--numeric-owner',
      '--same-owner',
      '-p',
      '-C',
      await fresh(theirs),
      '-xf',
      tar,
    ]);
  });
  log('archive: export');
  const exported = await best(REPETITIONS, async () => {
    await pipeline(api.exportDiff(ours, undefined), createWriteStream(path.join(dir, 'diff.tar')));
  });
  const retar = await best(REPETITIONS, async () => {
    await run('tar', ['--numeric-owner', '-C', ours, '-cf', path.join(dir, 'ref.tar'), '.']);
  });
  log('archive: changes and size');
  const changes = await best(REPETITIONS, async () => {
    await api.listChanges(ours, source);
  });
  const size = await best(REPETITIONS, async () => {
    await api.diffSize(ours, source);
  });
  return [
    {
      what: 'applyLayer (tar → directory)',
      thinp: apply,
      reference: { name: 'tar -x', seconds: untar },
    },
    {
      what: 'exportDiff (whole tree → tar)',
      thinp: exported,
      reference: { name: 'tar -c', seconds: retar },
    },
    { what: 'listChanges (two trees)', thinp: changes },
    { what: 'diffSize (two trees)', thinp: size },
  ];
}
