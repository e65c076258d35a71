/**
 * The vendored dm-thin metadata fixtures (test/fixtures/dm-thin, see its README.md):
 * gzip-compressed metadata images `X.meta.gz`, their `thin_dump` output `X.dump.xml`, and
 * single-edit corruptions `corrupt/X.meta.gz`.
 */

import { readdirSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';

const gunzipAsync = promisify(gunzip);

/** The absolute path of test/fixtures/dm-thin. */
export const FIXTURE_DIR = fileURLToPath(new URL('../fixtures/dm-thin/', import.meta.url));

const CORRUPT = 'corrupt/';
const IMAGE = '.meta.gz';

/** Only non-zero blocks of this size are written, so unpacked images stay sparse. */
const BLOCK = 4096;
const ZEROS = Buffer.alloc(BLOCK);

function imagesIn(dir: string): string[] {
  return readdirSync(dir)
    .filter((entry) => entry.endsWith(IMAGE))
    .map((entry) => entry.slice(0, -IMAGE.length))
    .sort();
}

/** The names of the sound fixtures ("empty-pool", "one-thin", ...), sorted. */
export function fixtureNames(): string[] {
  return imagesIn(FIXTURE_DIR);
}

/** The names of the corrupt fixtures, each with its folder ("corrupt/flip-leaf-byte"). */
export function corruptFixtureNames(): string[] {
  return imagesIn(path.join(FIXTURE_DIR, CORRUPT)).map((name) => `${CORRUPT}${name}`);
}

/**
 * Decompresses fixture `name` ("one-thin" or "corrupt/flip-leaf-byte") to
 * `dir/<basename>.meta`, a sparse file, and returns its path. An existing file is replaced.
 */
export async function unpackFixture(name: string, dir: string): Promise<string> {
  const image = await gunzipAsync(await readFile(path.join(FIXTURE_DIR, `${name}${IMAGE}`)));
  const target = path.join(dir, `${path.basename(name)}.meta`);
  const handle = await open(target, 'w');
  try {
    for (let offset = 0; offset < image.length; offset += BLOCK) {
      const block = image.subarray(offset, offset + BLOCK);
      if (!block.equals(ZEROS.subarray(0, block.length)))
        await handle.write(block, 0, block.length, offset);
    }
    await handle.truncate(image.length);
  } finally {
    await handle.close();
  }
  return target;
}

/** The text of a fixture file, by its path relative to FIXTURE_DIR ("one-thin.dump.xml"). */
export function readFixtureText(relPath: string): Promise<string> {
  return readFile(path.join(FIXTURE_DIR, relPath), 'utf8');
}
