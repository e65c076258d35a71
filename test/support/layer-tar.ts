/**
 * Layer tars built in memory, for tests that need exact control over the entries
 * (whiteouts, malicious names, PAX records). Written with the archive layer's TarWriter, whose
 * output GNU tar reads (test/peers/archive-gnu-tar.test.ts):
 *
 *     const tar = await buildTar([
 *       { name: 'etc/', type: 'directory' },
 *       { name: 'etc/passwd', content: 'root:x:0:0::/root:/bin/sh\n', mode: 0o644 },
 *       { name: 'etc/.wh.shadow' },
 *       { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
 *       { name: 'cap', content: 'x', pax: { 'SCHILY.xattr.security.capability': raw } },
 *     ]);
 *
 * Names are text (written as UTF-8) unless `raw`; PAX values are raw (one char per byte).
 */

import { PassThrough, Readable } from 'node:stream';
import { TarWriter, type WriteType } from '../../src/archive/tar-writer.js';

export interface TarSpec {
  name: string;
  type?: WriteType;
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
  /** Whether `name` and `linkname` are raw already (one char per byte). */
  raw?: boolean;
}

/** The bytes of a tar holding `specs`, in order, with the end-of-archive blocks. */
export async function buildTar(specs: readonly TarSpec[]): Promise<Buffer> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (chunk: Buffer) => chunks.push(chunk));
  const tar = new TarWriter(out);
  for (const spec of specs) {
    const type = spec.type ?? 'file';
    const content =
      typeof spec.content === 'string'
        ? Buffer.from(spec.content)
        : (spec.content ?? Buffer.alloc(0));
    const raw = (text: string) => (spec.raw === true ? text : Buffer.from(text).toString('latin1'));
    const header = {
      name: raw(spec.name),
      type,
      mode: spec.mode ?? (type === 'directory' ? 0o755 : 0o644),
      uid: spec.uid ?? 0,
      gid: spec.gid ?? 0,
      size: content.length,
      mtime: spec.mtime ?? 1_600_000_000,
      linkname: raw(spec.linkname ?? ''),
      devmajor: spec.devmajor ?? 0,
      devminor: spec.devminor ?? 0,
    };
    await tar.entry(
      header,
      Object.entries(spec.pax ?? {}),
      content.length > 0 ? [content] : undefined,
    );
  }
  await tar.end();
  return Buffer.concat(chunks);
}

/** A stream of `bytes`, split into chunks of `chunk` bytes (to exercise every boundary). */
export function streamOf(bytes: Buffer, chunk = 64 * 1024): Readable {
  const parts: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += chunk) parts.push(bytes.subarray(at, at + chunk));
  return Readable.from(parts);
}
