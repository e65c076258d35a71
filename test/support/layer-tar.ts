/**
 * Layer tars built in memory with tar-stream, for tests that need exact control over the
 * entries (whiteouts, malicious names, PAX records):
 *
 *     const tar = await buildTar([
 *       { name: 'etc/', type: 'directory' },
 *       { name: 'etc/passwd', content: 'root:x:0:0::/root:/bin/sh\n', mode: 0o644 },
 *       { name: 'etc/.wh.shadow' },
 *       { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
 *       { name: 'cap', content: 'x', pax: { 'SCHILY.xattr.security.capability': raw } },
 *     ]);
 *
 * PAX record values are raw strings (one char per byte), written byte for byte.
 */

import { Readable } from 'node:stream';
import { type Header, pack } from 'tar-stream';
import { paxBody } from '../../src/archive/pax.js';

export interface TarSpec {
  name: string;
  type?: Header['type'];
  content?: string | Buffer;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch (default 1_600_000_000). */
  mtime?: number;
  devmajor?: number;
  devminor?: number;
  /** Extra PAX records written in a PAX header before the entry (raw values). */
  pax?: Record<string, string>;
}

/** The bytes of a tar holding `specs`, in order, with the end-of-archive blocks. */
export async function buildTar(specs: readonly TarSpec[]): Promise<Buffer> {
  const tar = pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of tar) chunks.push(chunk as Buffer);
  })();
  for (const spec of specs) await addEntry(tar, spec);
  tar.finalize();
  await collected;
  return Buffer.concat(chunks);
}

async function addEntry(tar: ReturnType<typeof pack>, spec: TarSpec): Promise<void> {
  const mtime = new Date((spec.mtime ?? 1_600_000_000) * 1000);
  if (spec.pax !== undefined) {
    const body = paxBody(Object.entries(spec.pax));
    await write(tar, { name: 'PaxHeaders/x', type: 'pax-header' as Header['type'], mtime }, body);
  }
  const type = spec.type ?? 'file';
  const content =
    typeof spec.content === 'string'
      ? Buffer.from(spec.content)
      : (spec.content ?? Buffer.alloc(0));
  const header: Header = {
    name: spec.name,
    type,
    mode: spec.mode ?? (type === 'directory' ? 0o755 : 0o644),
    uid: spec.uid ?? 0,
    gid: spec.gid ?? 0,
    mtime,
    size: content.length,
    linkname: spec.linkname ?? '',
    uname: '',
    gname: '',
    devmajor: spec.devmajor ?? 0,
    devminor: spec.devminor ?? 0,
  };
  await write(tar, header, content);
}

function write(
  tar: ReturnType<typeof pack>,
  header: Partial<Header> & { name: string },
  body: Buffer,
): Promise<void> {
  return new Promise((resolve, reject) =>
    tar.entry(header, body, (err) => (err ? reject(err) : resolve())),
  );
}

/** A stream of `bytes`, split into chunks of `chunk` bytes (to exercise every boundary). */
export function streamOf(bytes: Buffer, chunk = 64 * 1024): Readable {
  const parts: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += chunk) parts.push(bytes.subarray(at, at + chunk));
  return Readable.from(parts);
}
