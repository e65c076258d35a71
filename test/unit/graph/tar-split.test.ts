import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, it } from 'node:test';
import { applyLayer } from '../../../src/archive/index.js';
import { replayTar, TarSplitRecorder } from '../../../src/graph/tar-split.js';
import { busyboxLayers, tarOf } from '../../support/image-builder.js';
import { tempDir } from '../../support/temp.js';

const dir = await tempDir('thinp-tar-split-');
let n = 0;

/** Applies `tars` into one folder, recording each; the record files. */
async function applyRecorded(root: string, tars: readonly Buffer[]): Promise<string[]> {
  const records: string[] = [];
  await mkdir(root, { recursive: true });
  for (const tar of tars) {
    const record = path.join(dir, `r${n++}.split.gz`);
    const recorder = new TarSplitRecorder(record);
    await applyLayer(root, Readable.from([tar]).pipe(recorder));
    await recorder.finished();
    records.push(record);
  }
  return records;
}

describe('tar-split records', () => {
  it('replays each busybox layer byte for byte from the tree it was applied to', async () => {
    const layers = await busyboxLayers();
    // Each layer's files are read from a tree where only that layer was applied on its parent.
    for (const [i, tar] of layers.entries()) {
      const root = path.join(dir, `tree${i}`);
      const records = await applyRecorded(root, layers.slice(0, i + 1));
      const replayed = await buffer(replayTar(records.at(-1) as string, root));
      assert.ok(
        replayed.equals(tar),
        `layer ${i + 1}: ${replayed.length} bytes replayed, ${tar.length} expected`,
      );
    }
  });

  it('keeps long names (PAX and GNU), hard links, devices and trailing bytes', async () => {
    const long = `${'d'.repeat(120)}/${'f'.repeat(150)}`;
    const tar = await tarOf([
      { name: `${'d'.repeat(120)}/`, type: 'directory' },
      { name: long, content: 'long name\n'.repeat(100) },
      { name: 'link', type: 'link', linkname: long },
      { name: 'empty', content: '' },
      { name: 'odd', content: Buffer.alloc(513, 7) },
    ]);
    const withTrailer = Buffer.concat([tar, Buffer.alloc(4096)]);
    const root = path.join(dir, 'long');
    const [record] = await applyRecorded(root, [withTrailer]);
    const replayed = await buffer(replayTar(record as string, root));
    assert.ok(replayed.equals(withTrailer));
  });

  it('fails the replay when a file changed since, so the caller can fall back', async () => {
    const root = path.join(dir, 'changed');
    const tar = await tarOf([{ name: 'a', content: 'original' }]);
    const [record] = await applyRecorded(root, [tar]);
    await writeFile(path.join(root, 'a'), 'changed!!');
    await assert.rejects(
      buffer(replayTar(record as string, root)),
      /replay of .* failed: changed: a/,
    );
  });
});
