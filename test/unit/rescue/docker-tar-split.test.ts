/**
 * Docker's tar-split records converted into thinp's: segments kept as raw bytes, regular
 * files as name + size, empty entries dropped; a missing, damaged or raw-named record is
 * refused (the caller then writes the layer's diff).
 */

import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { convertTarSplit } from '../../../src/rescue/docker-tar-split.js';
import { tempDir } from '../../support/temp.js';

const dir = await tempDir('thinp-rescue-split-');

async function convert(lines: string[]): Promise<unknown[]> {
  const from = path.join(dir, `in-${Math.random()}.gz`);
  const to = `${from}.out`;
  await writeFile(from, gzipSync(lines.join('\n')));
  await convertTarSplit(from, to);
  const text = gunzipSync(await readFile(to)).toString('utf8');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l));
}

describe("Docker's tar-split records", () => {
  it('become raw segments and files with sizes, entries without contents left out', async () => {
    const header = Buffer.alloc(512, 7).toString('base64');
    const got = await convert([
      JSON.stringify({ type: 2, payload: header, position: 0 }),
      JSON.stringify({ type: 1, name: 'etc/', size: 0, position: 1 }),
      JSON.stringify({ type: 2, payload: header, position: 2 }),
      JSON.stringify({ type: 1, name: 'etc/ü.txt', size: 12, payload: 'AAAA', position: 3 }),
      JSON.stringify({ type: 2, payload: Buffer.alloc(1024).toString('base64'), position: 4 }),
    ]);
    assert.deepEqual(got, [
      { raw: header },
      { raw: header },
      { file: 'etc/ü.txt', size: 12 },
      { raw: Buffer.alloc(1024).toString('base64') },
    ]);
  });

  it('refuses a raw-named file, an unknown type and a missing record', async () => {
    await assert.rejects(
      convert([JSON.stringify({ type: 1, name_raw: 'gA==', size: 3 })]),
      /names its file in raw bytes/,
    );
    await assert.rejects(convert([JSON.stringify({ type: 9 })]), /unknown type 9/);
    await assert.rejects(convertTarSplit(path.join(dir, 'none.gz'), path.join(dir, 'x')), {
      code: 'ENOENT',
    });
  });
});
