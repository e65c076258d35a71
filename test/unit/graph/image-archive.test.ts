import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { imagesOfArchive, openLayer } from '../../../src/graph/image-archive-read.js';
import { spoolArchive } from '../../../src/graph/image-archive-spool.js';
import { writeDockerSave } from '../../../src/graph/image-archive-write.js';
import { parseImageConfig } from '../../../src/graph/image-config.js';
import { chainIds } from '../../../src/graph/image-digest.js';
import { BadImageArchiveError, DigestMismatchError } from '../../../src/graph/image-errors.js';
import {
  busyboxLayers,
  dockerSaveTar,
  hexOf,
  imageConfigOf,
  ociLayoutTar,
  sha256,
  tarOf,
} from '../../support/image-builder.js';
import { tempDir } from '../../support/temp.js';

const work = await tempDir('thinp-image-archive-');
const layers = await busyboxLayers();
const diffIds = layers.map((l) => sha256(l));

async function read(archive: Buffer) {
  const spool = await spoolArchive(Readable.from([archive]), work);
  try {
    const images = imagesOfArchive(spool);
    const contents = await Promise.all(
      images.flatMap((image) => image.layers.map((layer) => buffer(openLayer(layer)))),
    );
    return { images, contents };
  } finally {
    await spool.close();
  }
}

async function refusal(archive: Buffer): Promise<Error> {
  try {
    await read(archive);
  } catch (err) {
    return err as Error;
  }
  assert.fail('the archive was accepted');
}

describe('reading image archives', () => {
  for (const layout of ['classic', 'blobs'] as const) {
    test(`reads a docker save tarball in the ${layout} layout, layers and diffIDs checked`, async () => {
      const { images, contents } = await read(
        await dockerSaveTar(layers, { layout, tags: ['bb'] }),
      );
      assert.equal(images.length, 1);
      const [image] = images;
      assert.equal(image?.format, 'docker-save');
      assert.deepEqual(image?.tags, ['bb:latest']);
      assert.deepEqual(image?.config.diffIds, diffIds);
      assert.equal(image?.config.digest, sha256(imageConfigOf(layers)));
      assert.deepEqual(contents, layers);
    });
  }

  test('reads gzip-compressed layers in a docker save tarball, the diffID of the uncompressed tar', async () => {
    const { images, contents } = await read(await dockerSaveTar(layers, { gzipLayers: true }));
    assert.deepEqual(images[0]?.config.diffIds, diffIds);
    assert.equal(images[0]?.layers[0]?.file.compression, 'gzip');
    assert.deepEqual(contents, layers);
  });

  test('follows the symlinks classic docker save writes for a layer that occurs twice', async () => {
    const [one] = layers as [Buffer];
    const config = imageConfigOf([one, one]);
    const dir = hexOf(sha256(one));
    const archive = await tarOf([
      { name: `${dir}/layer.tar`, content: one },
      { name: 'other/', type: 'directory' },
      { name: 'other/layer.tar', type: 'symlink', linkname: `../${dir}/layer.tar` },
      { name: `${hexOf(sha256(config))}.json`, content: config },
      {
        name: 'manifest.json',
        content: JSON.stringify([
          {
            Config: `${hexOf(sha256(config))}.json`,
            RepoTags: null,
            Layers: [`${dir}/layer.tar`, 'other/layer.tar'],
          },
        ]),
      },
    ]);
    const { images, contents } = await read(archive);
    assert.deepEqual(images[0]?.tags, []);
    assert.deepEqual(contents, [one, one]);
  });

  test('reads an OCI image layout with gzip layers and its tag', async () => {
    const { images, contents } = await read(
      await ociLayoutTar(layers, { gzipLayers: true, tag: 'bb:2' }),
    );
    assert.equal(images[0]?.format, 'oci-layout');
    assert.deepEqual(images[0]?.tags, ['bb:2']);
    assert.deepEqual(images[0]?.config.diffIds, diffIds);
    assert.deepEqual(contents, layers);
  });

  test("picks this machine's image from an OCI index of several platforms", async () => {
    const { images } = await read(await ociLayoutTar(layers, { multiPlatform: true }));
    assert.equal(images.length, 1);
    assert.deepEqual(images[0]?.config.diffIds, diffIds);
  });

  test('computes chain IDs as Docker does', () => {
    const chain = chainIds(diffIds as `sha256:${string}`[]);
    assert.equal(chain[0], diffIds[0]);
    assert.equal(chain[1], sha256(`${diffIds[0]} ${diffIds[1]}`));
    assert.equal(chain[2], sha256(`${chain[1]} ${diffIds[2]}`));
  });
});

describe('refusing damaged image archives', () => {
  const flipLayer = (name: string, data: Buffer) => {
    if (!name.endsWith('layer.tar')) return data;
    const copy = Buffer.from(data);
    copy[600] = (copy[600] ?? 0) ^ 0xff;
    return copy;
  };

  test('a layer whose bytes do not match its diffID, naming the layer file', async () => {
    const err = await refusal(await dockerSaveTar(layers, { tamper: flipLayer }));
    assert.ok(err instanceof DigestMismatchError, String(err));
    assert.match(err.message, /[0-9a-f]{64}\/layer\.tar in the image archive/);
    assert.match(err.message, /uncompressed layer/);
    assert.match((err as DigestMismatchError).describe(), /make it again/);
  });

  test('a blob whose bytes do not match its name', async () => {
    const tamper = (name: string, data: Buffer) =>
      name.startsWith('blobs/') && data.length > 10000 ? flipLayer('layer.tar', data) : data;
    const err = await refusal(await ociLayoutTar(layers, { tamper }));
    assert.ok(err instanceof DigestMismatchError, String(err));
    assert.match(err.message, /^blobs\/sha256\/[0-9a-f]{64} in the image archive: its sha256/);
  });

  test('a config whose bytes do not match its name', async () => {
    const tamper = (name: string, data: Buffer) =>
      name.endsWith('.json') && name !== 'manifest.json'
        ? Buffer.from(data.toString().replace('amd64', 'arm64'))
        : data;
    const err = await refusal(await dockerSaveTar(layers, { tamper }));
    assert.ok(err instanceof DigestMismatchError, String(err));
    assert.match(err.message, /[0-9a-f]{64}\.json in the image archive/);
  });

  test('a layer the manifest names but the archive lacks', async () => {
    const err = await refusal(
      await dockerSaveTar(layers, { omit: (n) => n.startsWith(hexOf(diffIds[1] as string)) }),
    );
    assert.ok(err instanceof BadImageArchiveError);
    assert.match(
      err.message,
      /manifest\.json names [0-9a-f]{64}\/layer\.tar, which is not in the image archive/,
    );
  });

  test('a zstd layer, with the way to recompress it', async () => {
    const zstd = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(100)]);
    const archive = await dockerSaveTar([zstd], {});
    const err = await refusal(archive);
    assert.ok(err instanceof BadImageArchiveError);
    assert.match(err.message, /zstd-compressed layer/);
  });

  test('a file that is not an image archive', async () => {
    const err = await refusal(await tarOf([{ name: 'hello.txt', content: 'hi' }]));
    assert.ok(err instanceof BadImageArchiveError);
    assert.match(err.message, /neither manifest\.json nor index\.json/);
    const notTar = await refusal(Buffer.from('this is not a tar at all'.repeat(100)));
    assert.ok(notTar instanceof BadImageArchiveError, String(notTar));
  });

  test('a gzip layer that does not decompress, naming it', async () => {
    const broken = gzipSync(layers[0] as Buffer).subarray(0, 5000);
    const err = await refusal(await tarOf([{ name: 'x/layer.tar', content: broken }]));
    assert.ok(err instanceof BadImageArchiveError);
    assert.match(
      err.message,
      /x\/layer\.tar in the image archive starts as gzip but does not decompress/,
    );
  });
});

describe('writing docker save tarballs', () => {
  test('writes an archive that reads back with the same layers, config and tags', async () => {
    const config = parseImageConfig(imageConfigOf(layers), 'config');
    const out = new PassThrough();
    const written = buffer(out);
    const saved = await writeDockerSave(
      out,
      [{ config, tags: ['bb:latest'], layers: layers.map((l) => async () => Readable.from([l])) }],
      work,
    );
    assert.equal(saved[0]?.config.digest, config.digest, 'same layers, same image id');
    const { images, contents } = await read(await written);
    assert.deepEqual(images[0]?.tags, ['bb:latest']);
    assert.equal(images[0]?.config.digest, config.digest);
    assert.deepEqual(contents, layers);
  });

  test('sets rootfs.diff_ids to the layers written when they differ from the config', async () => {
    const config = parseImageConfig(imageConfigOf(layers), 'config');
    const other = await tarOf([{ name: 'x', content: 'other' }]);
    const archive = path.join(work, 'changed.tar');
    const out = new PassThrough();
    const written = buffer(out);
    const saved = await writeDockerSave(
      out,
      [
        {
          config,
          tags: [],
          layers: [
            async () => Readable.from([layers[0] as Buffer]),
            async () => Readable.from([other]),
          ],
        },
      ],
      work,
    );
    await writeFile(archive, await written);
    const spool = await spoolArchive(createReadStream(archive), work);
    try {
      const [image] = imagesOfArchive(spool);
      assert.deepEqual(image?.config.diffIds, [diffIds[0], sha256(other)]);
      assert.equal(image?.config.digest, saved[0]?.config.digest);
      assert.notEqual(image?.config.digest, config.digest);
      assert.equal(image?.config.json.architecture, 'amd64');
    } finally {
      await spool.close();
    }
  });
});
