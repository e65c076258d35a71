/**
 * `kill -9` of the daemon in the middle of `image load`, then a new daemon on the same root:
 * the metadata is clean (thin_check), and the records and the pool agree: either the image
 * is there with every one of its layers, or neither the image nor any of its layers is (the
 * intent the load wrote names them, and the new daemon removes them). No intent is left,
 * and a second load then succeeds. A few rounds, each killed at a random moment.
 */

import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiClient } from '../../src/api/index.js';
import { chainIds, digestHex } from '../../src/graph/image-digest.js';
import { DAEMON_POOL_OPTS, DaemonProcess } from '../support/daemon.js';
import { busyboxLayers, dockerSaveTar, sha256, tarOf } from '../support/image-builder.js';
import { assertNoLeaks } from '../support/mount-leaks.js';
import { thinCheck } from '../support/peers.js';
import { tempDir } from '../support/temp.js';

const ROUNDS = 3;
const dir = await tempDir('thinp-image-kill-');
const OPTS = [...DAEMON_POOL_OPTS, 'dm.basesize=512M'];

/** Busybox, then 16 MiB of files (so that the load takes a while), then small changes. */
async function bigImage(): Promise<{ archive: Buffer; layerIds: string[] }> {
  const [base, , third] = await busyboxLayers();
  const files = Array.from({ length: 64 }, (_, i) => ({
    name: `data/f${i}`,
    content: Buffer.alloc(256 * 1024, i + 1),
  }));
  const data = await tarOf([{ name: 'data/', type: 'directory' }, ...files]);
  const layers = [base as Buffer, data, third as Buffer];
  const chain = chainIds(layers.map((l) => sha256(l) as `sha256:${string}`));
  return {
    archive: await dockerSaveTar(layers, { tags: ['big:1'] }),
    layerIds: chain.map(digestHex),
  };
}

describe('kill -9 during image load', () => {
  test('leaves the image whole or gone, never half, and the metadata clean', async (t) => {
    const root = path.join(dir, 'root');
    const { archive, layerIds } = await bigImage();
    const file = path.join(dir, 'big.tar');
    await writeFile(file, archive);
    let outcomes = '';
    for (let round = 0; round < ROUNDS; round++) {
      const daemon = await DaemonProcess.start(root, OPTS);
      const client = new ApiClient(path.join(root, 'thinp.sock'));
      const loading = client.loadImage(createReadStream(file)).then(
        () => 'loaded',
        () => 'cut',
      );
      await sleep(randomInt(200, 3000));
      await daemon.kill9();
      outcomes += `${await loading} `;
      const check = await thinCheck(path.join(root, 'devicemapper', 'metadata'));
      assert.equal(check.status, 0, `thin_check after the kill: ${check.stderr}`);

      const again = await DaemonProcess.start(root, OPTS);
      try {
        const images = await client.listImages();
        const layers = (await client.listLayers()).map((l) => l.id).sort();
        if (images.length === 0) assert.deepEqual(layers, [], 'no image, so no layer of it');
        else assert.deepEqual(layers, [...layerIds].sort(), 'the image and all its layers');
        assert.deepEqual(await readdir(path.join(root, 'graph', 'intents')), []);
        const splits = (await readdir(path.join(root, 'graph', 'tar-split'))).sort();
        const expected = images.length === 0 ? [] : layerIds.map((l) => `${l}.split.gz`).sort();
        assert.deepEqual(splits, expected, 'a tar-split record for each layer, and no other');
        await client.removeImage('big:1').catch(() => undefined);
        assert.deepEqual(await client.listLayers(), []);
      } finally {
        await again.stop();
      }
    }
    t.diagnostic(`loads: ${outcomes}`);
    const daemon = await DaemonProcess.start(root, OPTS);
    try {
      const client = new ApiClient(path.join(root, 'thinp.sock'));
      const [loaded] = await client.loadImage(createReadStream(file));
      assert.equal(loaded?.layers, 3, `a load after the kills (${outcomes})`);
    } finally {
      await daemon.stop();
    }
    await assertNoLeaks(dir);
    const check = await thinCheck(path.join(root, 'devicemapper', 'metadata'));
    assert.equal(check.status, 0, `thin_check at the end: ${check.stderr}`);
  });
});
