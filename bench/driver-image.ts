/**
 * The image the driver benchmark loads: a `docker save` tarball of three layers written to a
 * file: (1) Debian's static busybox with its applet links, (2) `size` bytes of seeded random
 * data in 256 KiB files spread over 16 folders, (3) a few changed and deleted files.
 */

import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { writeDockerSave } from '../src/graph/image-archive-write.js';
import { parseImageConfig } from '../src/graph/image-config.js';
import { sha256Digest } from '../src/graph/image-digest.js';
import { mulberry32 } from './random.js';

const FILE_BYTES = 256 * 1024;
const MTIME = new Date('2024-01-01T00:00:00Z');
const APPLETS = ['sh', 'ls', 'cat', 'echo', 'mkdir', 'rm', 'cp', 'dd', 'sync'];

interface Entry {
  name: string;
  type?: 'file' | 'directory' | 'symlink';
  data?: Buffer;
  linkname?: string;
  mode?: number;
}

/** An uncompressed layer tar of `entries`. */
async function layerOf(entries: Iterable<Entry>): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const e of entries) {
    const type = e.type ?? 'file';
    const header = {
      name: e.name,
      type,
      mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644),
      mtime: MTIME,
      linkname: e.linkname,
    };
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (type === 'file') pack.entry(header, e.data ?? Buffer.alloc(0), cb);
      else pack.entry(header, cb);
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

function* dataEntries(size: number, seed: number): Generator<Entry> {
  const random = mulberry32(seed);
  for (let d = 0; d < 16; d++) yield { name: `data/d${d}/`, type: 'directory' };
  yield { name: 'data/', type: 'directory' };
  for (let i = 0; i * FILE_BYTES < size; i++) {
    const data = Buffer.allocUnsafe(Math.min(FILE_BYTES, size - i * FILE_BYTES));
    for (let j = 0; j < data.length; j += 4) data.writeUInt32LE((random() * 2 ** 32) >>> 0, j);
    yield { name: `data/d${i % 16}/f${i}`, data };
  }
}

/** The three layer tars. */
export async function benchLayers(size: number): Promise<Buffer[]> {
  const busybox = await readFile('/bin/busybox');
  return [
    await layerOf([
      { name: 'bin/', type: 'directory' },
      { name: 'bin/busybox', data: busybox, mode: 0o755 },
      ...APPLETS.map((a) => ({ name: `bin/${a}`, type: 'symlink' as const, linkname: 'busybox' })),
      { name: 'etc/', type: 'directory' },
      { name: 'etc/passwd', data: Buffer.from('root:x:0:0:root:/root:/bin/sh\n') },
      { name: 'tmp/', type: 'directory', mode: 0o1777 },
    ]),
    await layerOf(dataEntries(size, 7)),
    await layerOf([
      { name: 'data/', type: 'directory' },
      { name: 'data/d0/', type: 'directory' },
      { name: 'data/d0/.wh.f0', data: Buffer.alloc(0) },
      { name: 'etc/', type: 'directory' },
      { name: 'etc/hostname', data: Buffer.from('bench\n') },
    ]),
  ];
}

/** Writes the layers as a docker save tarball tagged `tag` to `file`. */
export async function writeBenchImage(
  file: string,
  layers: readonly Buffer[],
  tag: string,
  tempDir: string,
): Promise<void> {
  const config = parseImageConfig(
    Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: { Cmd: ['/bin/sh'] },
        rootfs: { type: 'layers', diff_ids: layers.map((l) => sha256Digest(l)) },
      }),
    ),
    'config',
  );
  const out = createWriteStream(file);
  await writeDockerSave(
    out,
    [{ config, tags: [tag], layers: layers.map((l) => async () => Readable.from([l])) }],
    tempDir,
  );
}
