/**
 * The first pass over an image archive (a tar, from a file or a pipe): every regular file is
 * copied to a spool folder, and hashed on the way, raw and (for gzip) uncompressed, so each
 * blob's digest and each layer's diffID are known before anything is applied. Symlinks (the
 * classic `docker save` links one layer.tar to another that is identical) are kept as links
 * between archive names.
 *
 * Why spool: a tar can only be read in order, and an archive's manifest may come after its
 * layers (`docker save` writes manifest.json last), so layers cannot be applied as they pass.
 * The spool costs one copy of the archive on disk, never a layer in memory, and lets a layer
 * be read again (verify first, then apply).
 */

import { createHash, type Hash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, type Gunzip } from 'node:zlib';
import tar from 'tar-stream';
import type { Digest } from './image-digest.js';
import { BadImageArchiveError } from './image-errors.js';

export type Compression = 'none' | 'gzip' | 'zstd';

/** A regular file of the archive, copied to the spool. */
export interface SpooledFile {
  /** Its name in the archive, normalised ("blobs/sha256/ab…", "manifest.json"). */
  readonly name: string;
  /** Where its bytes are now. */
  readonly path: string;
  readonly size: number;
  /** sha256 of its bytes as stored. */
  readonly digest: Digest;
  readonly compression: Compression;
  /** sha256 and size of its bytes once decompressed (= digest and size when not compressed). */
  readonly uncompressedDigest: Digest;
  readonly uncompressedSize: number;
  /** Its bytes, kept in memory when it is small (manifests, indexes, configs). */
  readonly small: Buffer | undefined;
}

export interface SpooledArchive {
  readonly dir: string;
  /** The file at archive name `name` (following the archive's symlinks), if any. */
  file(name: string): SpooledFile | undefined;
  /** Removes the spool folder. */
  close(): Promise<void>;
}

/** Copies `input`, an image archive tar, into a new folder under `parentDir`. */
export async function spoolArchive(
  input: Readable,
  parentDir: string,
  onProgress?: (bytesRead: number) => void,
): Promise<SpooledArchive> {
  const dir = await mkdtemp(path.join(parentDir, 'spool-'));
  try {
    const { files, links } = await copyEntries(input, dir, onProgress);
    return spooled(dir, files, links);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** A normalised archive name: no leading "./" or "/", no trailing "/". */
export function archiveName(name: string): string {
  const normal = path.posix.normalize(`/${name}`).slice(1);
  return normal.endsWith('/') ? normal.slice(0, -1) : normal;
}

async function copyEntries(
  input: Readable,
  dir: string,
  onProgress?: (bytesRead: number) => void,
): Promise<{ files: Map<string, SpooledFile>; links: Map<string, string> }> {
  const files = new Map<string, SpooledFile>();
  const links = new Map<string, string>();
  const extract = tar.extract();
  let read = 0;
  input.on('data', (chunk: Buffer) => {
    read += chunk.length;
    onProgress?.(read);
  });
  input.on('error', (err) => extract.destroy(err));
  input.pipe(extract);
  try {
    for await (const entry of extract) {
      const name = archiveName(entry.header.name);
      if (entry.header.type === 'file' || entry.header.type === 'contiguous-file') {
        files.set(name, await copyFile(entry, name, path.join(dir, `f${files.size}`)));
      } else {
        if (entry.header.type === 'symlink' || entry.header.type === 'link') {
          links.set(name, linkTarget(name, entry.header));
        }
        entry.resume();
      }
    }
  } catch (err) {
    if (err instanceof BadImageArchiveError) throw err;
    throw new BadImageArchiveError(`the image archive is not a readable tar (${String(err)})`, {
      hint: "give a file made by 'docker save' or an OCI image layout tar",
      cause: err,
    });
  }
  return { files, links };
}

/** A symlink's target is relative to its folder; a hard link's is an archive name. */
function linkTarget(name: string, header: tar.Header): string {
  const target = header.linkname ?? '';
  if (header.type === 'link') return archiveName(target);
  return archiveName(path.posix.join(path.posix.dirname(name), target));
}

async function copyFile(
  entry: AsyncIterable<unknown>,
  name: string,
  file: string,
): Promise<SpooledFile> {
  const hasher = new DigestingStream(name);
  await pipeline(Readable.from(entry), hasher, createWriteStream(file, { mode: 0o600 }));
  const sums = hasher.sums();
  return { name, path: file, ...sums };
}

function spooled(
  dir: string,
  files: Map<string, SpooledFile>,
  links: Map<string, string>,
): SpooledArchive {
  return {
    dir,
    file(name) {
      let at = archiveName(name);
      for (let hops = 0; hops < 16; hops++) {
        const found = files.get(at);
        if (found !== undefined) return found;
        const next = links.get(at);
        if (next === undefined) return undefined;
        at = next;
      }
      return undefined;
    },
    close: () => rm(dir, { recursive: true, force: true }),
  };
}

// ---------------------------------------------------------------------------------------

/** Files up to this size are also kept in memory: the JSON of manifests and configs. */
export const SMALL_FILE_BYTES = 4 * 1024 * 1024;

const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

function startsWith(chunk: Buffer, magic: readonly number[]): boolean {
  return magic.every((byte, i) => chunk[i] === byte);
}

/**
 * Passes bytes through unchanged while hashing them, and, when they start as gzip, also
 * hashes them decompressed (the diffID of a compressed layer).
 */
class DigestingStream extends Transform {
  private readonly raw: Hash = createHash('sha256');
  private size = 0;
  private compression: Compression | undefined;
  private gunzip: Gunzip | undefined;
  private readonly plain: Hash = createHash('sha256');
  private plainSize = 0;
  private gzipError: Error | null = null;
  private readonly kept: Buffer[] = [];

  /** `name`: the file's name in the archive, for errors. */
  constructor(private readonly name: string) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.compression === undefined) this.start(chunk);
    this.raw.update(chunk);
    this.size += chunk.length;
    if (this.size <= SMALL_FILE_BYTES) this.kept.push(chunk);
    const gunzip = this.gunzip;
    if (gunzip === undefined || gunzip.write(chunk)) {
      done(this.gzipError, chunk);
      return;
    }
    const onDrain = () => {
      gunzip.off('error', onDrain);
      done(this.gzipError, chunk);
    };
    gunzip.once('drain', onDrain).once('error', onDrain);
  }

  override _flush(done: TransformCallback): void {
    if (this.compression === undefined) this.start(Buffer.alloc(0));
    if (this.gunzip === undefined || this.gzipError !== null) {
      done(this.gzipError);
      return;
    }
    this.gunzip.once('end', () => done()).once('error', () => done(this.gzipError));
    this.gunzip.end();
  }

  private start(chunk: Buffer): void {
    if (startsWith(chunk, GZIP_MAGIC)) {
      this.compression = 'gzip';
      const gunzip = createGunzip();
      gunzip.on('data', (out: Buffer) => {
        this.plain.update(out);
        this.plainSize += out.length;
      });
      gunzip.on('error', (err) => {
        this.gzipError = new BadImageArchiveError(
          `${this.name} in the image archive starts as gzip but does not decompress (${err.message})`,
          { hint: 'the archive is damaged; make it again', cause: err },
        );
      });
      this.gunzip = gunzip;
    } else {
      this.compression = startsWith(chunk, ZSTD_MAGIC) ? 'zstd' : 'none';
    }
  }

  sums(): Omit<SpooledFile, 'name' | 'path'> {
    const digest: Digest = `sha256:${this.raw.digest('hex')}`;
    const compression = this.compression ?? 'none';
    const small =
      this.size <= SMALL_FILE_BYTES && compression === 'none'
        ? Buffer.concat(this.kept)
        : undefined;
    if (compression !== 'gzip') {
      return {
        small,
        size: this.size,
        digest,
        compression,
        uncompressedDigest: digest,
        uncompressedSize: this.size,
      };
    }
    return {
      small,
      size: this.size,
      digest,
      compression,
      uncompressedDigest: `sha256:${this.plain.digest('hex')}`,
      uncompressedSize: this.plainSize,
    };
  }
}
