import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { thinp } from '../../support/cli.js';
import { busyboxLayers, dockerSaveTar } from '../../support/image-builder.js';
import { tempDir } from '../../support/temp.js';

const dir = await tempDir('thinp-cli-images-');
const root = path.join(dir, 'root');
const opts = [
  '--root',
  root,
  '--storage-opt',
  'dm.loopdatasize=1G',
  '--storage-opt',
  'dm.loopmetadatasize=16M',
];
const cli = (...args: string[]) => thinp([...opts, ...args], { cwd: dir });

describe('thinp image and container without a daemon', () => {
  before(async () => {
    assert.equal((await cli('pool', 'create')).status, 0);
    await writeFile(
      path.join(dir, 'busybox.tar'),
      await dockerSaveTar((await busyboxLayers()).slice(0, 1)),
    );
  });

  it('lists no images and no containers, in tables and in JSON', async () => {
    assert.deepEqual(await cli('image', 'list'), {
      status: 0,
      stdout: 'IMAGE ID  TAGS  LAYERS  SIZE  CONTAINERS  CREATED\n',
      stderr: '',
    });
    assert.deepEqual(JSON.parse((await cli('image', 'list', '--json')).stdout), []);
    assert.deepEqual(JSON.parse((await cli('container', 'list', '--json')).stdout), []);
  });

  it('a load needs the daemon, says how to start it, and leaves no layer behind', async () => {
    const r = await cli('image', 'load', '-i', 'busybox.tar');
    assert.equal(r.status, 1);
    assert.match(
      r.stderr,
      /^thinp: .*needs the thinp daemon, which serves the devices; start it with 'thinp daemon'/,
    );
    assert.deepEqual(JSON.parse((await cli('layer', 'list', '--json')).stdout), []);
    assert.deepEqual(JSON.parse((await cli('image', 'list', '--json')).stdout), []);
  });

  it('names what is missing: the archive, the image, the container', async () => {
    const missing = await cli('image', 'load', '-i', 'nothing.tar');
    assert.deepEqual(
      [missing.status, missing.stderr],
      [
        1,
        "thinp: there is no file nothing.tar; give the path of an image archive (made by 'docker save' or an OCI tool)\n",
      ],
    );
    const image = await cli('container', 'create', '--image', 'busybox');
    assert.equal(image.status, 1);
    assert.match(
      image.stderr,
      /^thinp: there is no image busybox; list the images with 'thinp image list'/,
    );
    const container = await cli('container', 'mount', 'c1');
    assert.equal(container.status, 1);
    assert.match(
      container.stderr,
      /^thinp: there is no container c1; list the containers with 'thinp container list'/,
    );
    const save = await cli('image', 'save', 'busybox', '-o', 'out.tar');
    assert.equal(save.status, 1);
    assert.match(save.stderr, /^thinp: there is no image busybox/);
  });

  it('checks its arguments before anything else', async () => {
    const r = await cli('container', 'create', '--image', 'b', '--size', '12Q');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--size/);
  });
});
