/**
 * The built `thinp` as a process against a daemon process: an image archive piped into
 * `image load` on stdin, listed, saved to a file and loaded back (the same image, by id),
 * removed; the archives travel as byte streams through the control API.
 */

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { runThinp } from '../support/cli-process.js';
import { DAEMON_POOL_OPTS, DaemonProcess } from '../support/daemon.js';
import { busyboxLayers, dockerSaveTar } from '../support/image-builder.js';
import { readArchive } from '../support/image-reference.js';
import { assertNoLeaks } from '../support/mount-leaks.js';
import { tempDir } from '../support/temp.js';

const dir = await tempDir('thinp-cli-images-');

describe('thinp image, as a process, through the daemon', () => {
  it('loads an archive from stdin, lists, saves and loads it back', async () => {
    const root = path.join(dir, 'root');
    const daemon = await DaemonProcess.start(root, [...DAEMON_POOL_OPTS, 'dm.basesize=512M']);
    const run = (args: string[], input?: Buffer) =>
      runThinp(args, { cwd: dir, globalArgs: ['--root', root], input });
    try {
      const archive = await dockerSaveTar(await busyboxLayers(), { tags: ['piped:1'] });
      const loaded = await run(['image', 'load', '--json'], archive);
      assert.equal(loaded.status, 0, loaded.stderr);
      const [image] = JSON.parse(loaded.stdout);
      assert.deepEqual([image.tags, image.layers, image.created], [['piped:1'], 3, 3]);

      const listed = await run(['image', 'list']);
      assert.match(
        listed.stdout,
        new RegExp(
          `^IMAGE ID +TAGS +LAYERS +SIZE +CONTAINERS +CREATED\\n${image.id.slice(7, 19)} +piped:1 +3 `,
        ),
      );

      const saved = await run(['image', 'save', 'piped:1', '-o', 'piped.tar']);
      assert.equal(saved.status, 0, saved.stderr);
      assert.match(saved.stdout, /^Saved: piped:1 to piped\.tar \(/);
      const savedId = await readArchive(
        path.join(dir, 'piped.tar'),
        dir,
        async (images) => images[0]?.config.digest,
      );

      assert.equal((await run(['image', 'remove', 'piped:1'])).status, 0);
      const again = await run(['image', 'load', '-i', 'piped.tar']);
      assert.deepEqual([again.status, again.stdout], [0, 'Loaded image: piped:1\n'], again.stderr);
      const [back] = JSON.parse((await run(['image', 'list', '--json'])).stdout);
      assert.equal(savedId, image.id, 'saved byte for byte: the same image id');
      assert.equal(back.id, image.id);
      assert.equal((await run(['image', 'remove', back.id])).status, 0);
      assert.deepEqual(JSON.parse((await run(['layer', 'list', '--json'])).stdout), []);
    } finally {
      await daemon.stop();
    }
    await assertNoLeaks(dir);
  });
});
