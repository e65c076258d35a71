/**
 * thinp's image archives against the real Docker (Debian's docker.io, a private dockerd
 * started and stopped here): `docker load` accepts what `thinp image save` writes for an
 * image committed from a thinp container, and runs it; `thinp image load` reads what
 * `docker save` writes, with the same image id.
 */

import assert from 'node:assert/strict';
import { createReadStream, createWriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  DAEMON_POOL_OPTS,
  type InProcessDaemon,
  requireTool,
  runToolOk,
  startInProcess,
} from '../support/daemon.js';
import { PrivateDockerd } from '../support/dockerd.js';
import { busyboxLayers, dockerSaveTar } from '../support/image-builder.js';
import { assertNoLeaks } from '../support/mount-leaks.js';
import { thinCheck } from '../support/peers.js';
import { tempDir } from '../support/temp.js';

const dir = await tempDir('thinp-docker-images-');
const layers = await busyboxLayers();

/** Runs `fn` with a private dockerd and a thinp daemon, both stopped after it, whatever happens. */
async function withDaemons(
  fn: (dockerd: PrivateDockerd, thinpd: InProcessDaemon) => Promise<void>,
): Promise<void> {
  const dockerd = await PrivateDockerd.start(path.join(dir, 'docker'));
  let thinpd: InProcessDaemon | undefined;
  try {
    thinpd = await startInProcess(path.join(dir, 'root'), [
      ...DAEMON_POOL_OPTS,
      'dm.basesize=512M',
    ]);
    await fn(dockerd, thinpd);
  } finally {
    try {
      await thinpd?.handle.layers.cleanup();
      await thinpd?.stop();
    } finally {
      await dockerd.stop();
    }
  }
  await assertNoLeaks(dir);
  const check = await thinCheck((thinpd as InProcessDaemon).handle.config.layout.metadataLoopFile);
  assert.equal(check.status, 0, `thin_check: ${check.stderr}`);
}

describe('image archives and the real docker', () => {
  it('docker load takes what thinp image save writes, and docker save what thinp image load reads', () =>
    withDaemons(async (dockerd, thinpd) => {
      const { images, containers } = thinpd.handle.images;
      const archive = path.join(dir, 'busybox.tar');
      await writeFile(archive, await dockerSaveTar(layers, { tags: ['bbt:1'] }));
      const [loaded] = await images.load(createReadStream(archive));

      const c = await containers.create('bbt:1', { name: 'c' });
      const rootfs = await containers.mount('c');
      const chroot = await requireTool('chroot', 'coreutils');
      await runToolOk(chroot, [
        rootfs,
        '/bin/sh',
        '-c',
        'echo from-thinp > /etc/greeting; rm /etc/group',
      ]);
      await containers.unmount('c');
      const committed = await containers.commit(c.name, 'committed:1');

      const saved = path.join(dir, 'saved.tar');
      const [written] = await images.save(['committed:1'], createWriteStream(saved));
      assert.match(await dockerd.run('load', '-i', saved), /Loaded image: committed:1/);
      const inspected = JSON.parse(await dockerd.run('image', 'inspect', 'committed:1'))[0];
      assert.equal(written?.config.digest, committed.id, 'every layer written byte for byte');
      assert.equal(inspected.Id, committed.id, 'docker sees the image thinp committed');
      assert.equal(inspected.RootFS.Layers.length, 4);
      assert.equal(inspected.RootFS.Layers.at(-1), committed.diffId);
      const out = await dockerd.run(
        'run',
        '--rm',
        '--network',
        'none',
        'committed:1',
        '/bin/sh',
        '-c',
        'cat /etc/greeting; ls /etc',
      );
      assert.equal(out, 'from-thinp\ngreeting\nhostname\nhosts\nmtab\npasswd\nresolv.conf\n');

      const fromDocker = path.join(dir, 'from-docker.tar');
      await dockerd.run('load', '-i', archive);
      await dockerd.run('save', 'bbt:1', '-o', fromDocker);
      await containers.remove('c');
      await images.remove('committed:1');
      await images.remove('bbt:1');
      const [again] = await images.load(createReadStream(fromDocker));
      assert.equal(again?.id, loaded?.id, 'the same image id as the tarball docker loaded');
      assert.deepEqual(again?.tags, ['bbt:1']);
      assert.equal(again?.layers, 3);
    }));
});
