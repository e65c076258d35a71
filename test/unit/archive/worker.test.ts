/**
 * The archive worker around the operations: errors come back as the same classes, a crash
 * is reported with its signal, the caller's stream is counted and never destroyed, the
 * work never needs the caller's libuv thread pool (the daemon's, which serves the very
 * devices these directories live on), and the worker runs from a build under plain node.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { mkdir, mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  applyLayer,
  BadArchiveError,
  diffSize,
  exportDiff,
  listChanges,
  UnsafeEntryError,
} from '../../../src/archive/index.js';
import { fsOps } from '../../../src/archive/native.js';
import { startWorker } from '../../../src/archive/worker-client.js';
import { InternalError, IoError, NotFoundError } from '../../../src/util/index.js';
import { buildTar, streamOf } from '../../support/layer-tar.js';
import { tempDir } from '../../support/temp.js';
import { assertSameTree, snapshotTree } from '../../support/tree-snapshot.js';

const run = promisify(execFile);
const base = await tempDir('thinp-archive-worker-');
const REPO = fileURLToPath(new URL('../../../', import.meta.url));

async function root(name: string): Promise<string> {
  const dir = path.join(base, name);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** A layer with `files` files in a few directories. */
function manyFiles(files: number): Promise<Buffer> {
  return buildTar(
    Array.from({ length: files }, (_, i) => ({
      name: `d${i % 7}/f${i}`,
      content: `file ${i}\n`.repeat(i % 50),
    })),
  );
}

describe('archive: the worker process', () => {
  it('rebuilds the worker’s errors as the same classes, with entry, message and hint', async () => {
    const tar = await buildTar([
      { name: 'ok', content: 'x' },
      { name: '../evil', content: 'x' },
    ]);
    await assert.rejects(applyLayer(await root('unsafe'), streamOf(tar)), (err: unknown) => {
      assert.ok(err instanceof UnsafeEntryError);
      assert.equal(err.entry, '../evil');
      assert.equal(err.message, "unsafe layer entry '../evil': climbs out of the root with '..'");
      assert.match(err.hint ?? '', /refused as a whole/);
      return true;
    });
    await assert.rejects(
      applyLayer(await root('bad'), streamOf(Buffer.alloc(1024, 1))),
      BadArchiveError,
    );
    await assert.rejects(listChanges(path.join(base, 'absent'), undefined), (err: unknown) => {
      return err instanceof NotFoundError && err.message.includes(path.join(base, 'absent'));
    });
    await assert.rejects(diffSize(await root('x'), path.join(base, 'absent')), NotFoundError);
  });

  it('reports a worker that dies, with its signal', async () => {
    const worker = startWorker(
      { op: 'apply', root: await root('killed') },
      { input: true, output: false },
    );
    worker.child.kill('SIGKILL');
    await assert.rejects(worker.reply, (err: unknown) => {
      return (
        err instanceof InternalError &&
        /archive worker \(apply .*killed\) exited with SIGKILL/.test(err.message)
      );
    });
  });

  it('counts the bytes it reads, and leaves the stream open when the worker fails', async () => {
    const tar = await manyFiles(40);
    const seen: number[] = [];
    const result = await applyLayer(await root('progress'), streamOf(tar, 1000), {
      onProgress: (n) => seen.push(n),
    });
    assert.equal(seen.at(-1), tar.length);
    assert.ok(seen.every((n, i) => i === 0 || n > (seen[i - 1] as number)));
    assert.ok(result.size > 0);

    const input = new PassThrough();
    input.write(Buffer.alloc(1024, 0x41)); // not a tar: the worker gives up at once
    await assert.rejects(applyLayer(await root('open'), input), BadArchiveError);
    assert.equal(input.destroyed, false);
    input.destroy();
  });

  it('stops the worker and passes on the error when the input fails', async () => {
    const input = new PassThrough();
    input.write((await manyFiles(3)).subarray(0, 1024));
    const applying = applyLayer(await root('input-error'), input);
    setTimeout(() => input.destroy(new Error('connection reset by the client')), 50);
    await assert.rejects(applying, /connection reset by the client/);
  });

  it('reports a full filesystem as an IoError naming the layer root', async () => {
    const full = await root('full');
    await run('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'thinp-test', full]);
    try {
      const tar = await buildTar([{ name: 'big', content: Buffer.alloc(1024 * 1024, 1) }]);
      await assert.rejects(applyLayer(full, streamOf(tar)), (err: unknown) => {
        assert.ok(err instanceof IoError, `expected IoError, got ${String(err)}`);
        assert.match(err.message, new RegExp(`layer root ${full}: write failed: ENOSPC`));
        return true;
      });
    } finally {
      await run('umount', [full]);
    }
  });

  it('applies many layers at once, each into its own root', async () => {
    const tars = await Promise.all(Array.from({ length: 8 }, (_, i) => manyFiles(20 + i)));
    const roots = await Promise.all(tars.map((_, i) => root(`parallel-${i}`)));
    const results = await Promise.all(
      tars.map((tar, i) => applyLayer(roots[i] as string, streamOf(tar))),
    );
    for (const [i, tar] of tars.entries()) {
      const changes = await listChanges(roots[i] as string, undefined);
      assert.equal(changes.length, Math.min(20 + i, 7) + 20 + i);
      assert.ok((results[i]?.size ?? 0) < tar.length);
    }
  });

  it('stops the export worker when the reader destroys the stream', async () => {
    const from = await root('export-destroyed');
    await applyLayer(from, streamOf(await manyFiles(300)));
    const stream = exportDiff(from, undefined);
    await new Promise((resolve) => stream.once('readable', resolve));
    assert.equal((await workerChildren()).length, 1, 'the worker waits for its reader');
    stream.destroy();
    for (let tries = 0; tries < 50 && (await workerChildren()).length > 0; tries++)
      await delay(100);
    assert.deepEqual(await workerChildren(), []);
  });

  it('exports a diff whose application gives the same tree', async () => {
    const from = await root('export-from');
    const to = await root('export-to');
    await applyLayer(from, streamOf(await manyFiles(30)));
    await applyLayer(to, exportDiff(from, undefined));
    const options = { mtime: 'seconds', dirMtimes: false, root: false } as const;
    assertSameTree(await snapshotTree(to, options), await snapshotTree(from, options));
  });

  it('fails an export of a missing root on the stream', async () => {
    const stream = exportDiff(path.join(base, 'absent'), undefined);
    await assert.rejects(async () => {
      for await (const _ of stream) {
        // nothing comes
      }
    }, NotFoundError);
  });

  it('works while every thread of this process’s libuv pool is blocked', {
    timeout: 120_000,
  }, async () => {
    const dir = await root('pool');
    const threads = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
    const fifos = Array.from({ length: threads }, (_, i) => path.join(dir, `fifo${i}`));
    for (const fifo of fifos) fsOps().mknod(Buffer.from(fifo), constants.S_IFIFO | 0o600, 0, 0);
    // Each open of a FIFO for reading holds a pool thread until a writer comes.
    const blocked = fifos.map((fifo) => open(fifo, 'r'));
    const tar = await manyFiles(200);
    const probe = stat(dir); // queued behind the blocked opens
    try {
      const late = await Promise.race([probe.then(() => false), delay(300).then(() => true)]);
      assert.ok(late, 'the thread pool should be blocked');
      const target = path.join(dir, 'layer');
      const copy = path.join(dir, 'copy');
      await mkdirOnMainThread(target);
      await mkdirOnMainThread(copy);
      const applied = await applyLayer(target, Readable.from([tar]));
      assert.ok(applied.size > 0);
      assert.equal((await listChanges(target, undefined)).length, 207);
      assert.ok((await diffSize(target, undefined)) > 0);
      await applyLayer(copy, exportDiff(target, undefined));
    } finally {
      for (const fifo of fifos)
        closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
      for (const handle of await Promise.all(blocked)) await handle.close();
      await probe;
    }
    const options = { mtime: 'seconds', dirMtimes: false, root: false } as const;
    assertSameTree(
      await snapshotTree(path.join(dir, 'copy'), options),
      await snapshotTree(path.join(dir, 'layer'), options),
    );
  });

  it('runs from a build, under plain node', { timeout: 180_000 }, async () => {
    const out = await mkdtemp(path.join(REPO, '.archive-build-'));
    try {
      // Layers one level below a folder of the package root, as in dist/, so that the
      // paths to build/Release and package.json hold.
      const build = out;
      const files = ['src/archive/index.ts', 'src/archive/worker.ts'].map((f) =>
        path.join(REPO, f),
      );
      const flags = [
        '--outDir',
        build,
        '--rootDir',
        path.join(REPO, 'src'),
        '--strict',
        '--target',
        'ES2022',
      ];
      flags.push('--lib', 'ES2023', '--module', 'NodeNext');
      await run(process.execPath, [
        path.join(REPO, 'node_modules/typescript/bin/tsc'),
        ...flags,
        '--skipLibCheck',
        '--types',
        'node',
        ...files,
      ]);
      const layer = await root('from-build');
      await writeFile(
        path.join(base, 'build.tar'),
        await buildTar([{ name: 'etc/hostname', content: 'built\n' }]),
      );
      const script = `
        import { createReadStream } from 'node:fs';
        import { applyLayer, listChanges } from ${JSON.stringify(path.join(build, 'archive/index.js'))};
        await applyLayer(${JSON.stringify(layer)}, createReadStream(${JSON.stringify(path.join(base, 'build.tar'))}));
        console.log(JSON.stringify(await listChanges(${JSON.stringify(layer)}, undefined)));`;
      const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], {
        cwd: out,
      });
      assert.deepEqual(JSON.parse(stdout), [
        { path: '/etc', kind: 1 },
        { path: '/etc/hostname', kind: 1 },
      ]);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});

/** The archive workers that this process has started and that still run. */
async function workerChildren(): Promise<string[]> {
  const { stdout } = await run('ps', ['-o', 'args=', '--ppid', String(process.pid)]);
  return stdout.split('\n').filter((line) => line.includes('archive/worker'));
}

/** mkdir without the thread pool (it is blocked in that test). */
async function mkdirOnMainThread(dir: string): Promise<void> {
  const { mkdirSync } = await import('node:fs');
  mkdirSync(dir);
}
