/**
 * The daemon never waits on its own mounts. Here it runs in this process, as in
 * production: several tar applies at once, each unpacking into a filesystem that this very
 * process serves (loop → FUSE → nbdfuse → relay → NBD socket → this event loop), while an
 * NBD client writes another device flat out. If any filesystem work ran in this process
 * (on its event loop or its libuv threads), the applies would wait on I/O that only this
 * process can serve, and never finish: the test would hit its timeout. Every apply must
 * complete, its tree hold what its tar holds, and the NBD writes read back.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, it } from 'node:test';
import {
  DAEMON_POOL_OPTS,
  NbdClient,
  requireTool,
  runToolOk,
  startInProcess,
} from '../support/daemon.js';
import { buildTar, streamOf } from '../support/layer-tar.js';
import { assertNoLeaks } from '../support/mount-leaks.js';
import { thinCheck } from '../support/peers.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
const LAYERS = 4;
const FILES = 24;
const dir = await tempDir('thinp-graph-load-');
const d = await startInProcess(path.join(dir, 'root'), [...DAEMON_POOL_OPTS, 'dm.basesize=512M']);
after(() => d.stop());

it('applies several tars at once while another device is written over NBD', {
  timeout: 300_000,
}, async () => {
  const { layers, deviceSet } = d.handle;
  try {
    await deviceSet.createDevice('disk', 64 * MiB);
    const tars: Buffer[] = [];
    for (let i = 0; i < LAYERS; i++) {
      await layers.create(`load${i}`, undefined);
      const files = Array.from({ length: FILES }, (_, f) => ({
        name: `dir${f % 4}/file${f}`,
        content: randomBytes(256 * 1024 + f),
      }));
      tars.push(await buildTar(files));
    }

    let writing = true;
    const client = await NbdClient.connect(d.handle.config.layout.nbdSocket, 'disk');
    const written = new Map<number, Buffer>();
    const writer = (async () => {
      for (let round = 0; writing; round++) {
        const offset = (round % 64) * MiB;
        const data = randomBytes(MiB);
        await client.write(offset, data);
        written.set(offset, data);
      }
      await client.flush();
    })();

    const sizes = await Promise.all(
      tars.map((tar, i) => layers.applyDiff(`load${i}`, undefined, streamOf(tar))),
    );
    writing = false;
    await writer;
    for (const [offset, data] of written) {
      assert.deepEqual(await client.read(offset, MiB), data, `NBD data at ${offset}`);
    }
    await client.close();
    assert.equal(written.size > 0, true);

    const sh = await requireTool('sh', 'dash');
    for (let i = 0; i < LAYERS; i++) {
      assert.ok((sizes[i] ?? 0) >= FILES * 256 * 1024);
      const root = await layers.get(`load${i}`);
      const listing = await runToolOk(sh, [
        '-c',
        'cd "$1" && find . -type f | sort | xargs sha256sum',
        'sh',
        root,
      ]);
      await layers.put(`load${i}`);
      const expected = Array.from({ length: FILES }, (_, f) => `./dir${f % 4}/file${f}`).sort();
      const lines = listing.trim().split('\n');
      assert.deepEqual(
        lines.map((l) => l.split(/\s+/)[1]),
        expected,
      );
      assert.equal(lines.length, FILES);
      assert.ok(lines.every((l) => /^[0-9a-f]{64} /.test(l)));
    }
  } finally {
    await layers.cleanup();
    await d.stop();
  }
  const check = await thinCheck(d.handle.config.layout.metadataLoopFile);
  assert.equal(check.status, 0, check.stderr);
  await assertNoLeaks(dir);
});
