/**
 * Builds image archives for tests, from layer tars the test describes: `docker save` in the
 * classic layout and in Docker 25's blobs layout, and OCI image layouts (gzip layers,
 * nested indexes). The busybox layers are real: Debian's static /bin/busybox with its applet
 * links, then whiteouts and an opaque folder, then changed files.
 */

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';

export interface TarEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'fifo' | 'character-device';
  mode?: number;
  content?: string | Buffer;
  linkname?: string;
  uid?: number;
  gid?: number;
  mtime?: Date;
  devmajor?: number;
  devminor?: number;
}

const MTIME = new Date('2024-01-02T03:04:05Z');

/** An uncompressed tar of `entries`, in their order. */
export async function tarOf(entries: readonly TarEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  for (const e of entries) {
    const content = typeof e.content === 'string' ? Buffer.from(e.content) : e.content;
    const type = e.type ?? 'file';
    const defaultMode = type === 'directory' ? 0o755 : type === 'symlink' ? 0o777 : 0o644;
    const header = {
      name: e.name,
      type,
      mode: e.mode ?? defaultMode,
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      mtime: e.mtime ?? MTIME,
      linkname: e.linkname,
      devmajor: e.devmajor,
      devminor: e.devminor,
    };
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error | null) => (err ? reject(err) : resolve());
      if (type === 'file') pack.entry(header, content ?? Buffer.alloc(0), done);
      else pack.entry(header, done);
    });
  }
  pack.finalize();
  await collected;
  return Buffer.concat(chunks);
}

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export function hexOf(digest: string): string {
  return digest.slice('sha256:'.length);
}

/** The applets the base layer links to busybox. */
export const APPLETS = [
  'sh',
  'ls',
  'cat',
  'echo',
  'mkdir',
  'rm',
  'mv',
  'cp',
  'touch',
  'ln',
  'chmod',
  'stat',
  'sync',
  'true',
];

/**
 * Three layers: (1) busybox, its applet links, /etc with files, /var/cache with files;
 * (2) whiteouts of /etc/motd and /var/cache/old, an opaque /opt, a hard link, a fifo;
 * (3) a changed /etc/hostname-like file and a new file in a new folder.
 */
export async function busyboxLayers(): Promise<Buffer[]> {
  const busybox = await readFile('/bin/busybox');
  const base = await tarOf([
    { name: 'bin/', type: 'directory' },
    { name: 'bin/busybox', content: busybox, mode: 0o755 },
    ...APPLETS.map((a) => ({ name: `bin/${a}`, type: 'symlink' as const, linkname: 'busybox' })),
    { name: 'etc/', type: 'directory' },
    { name: 'etc/motd', content: 'welcome\n' },
    { name: 'etc/passwd', content: 'root:x:0:0:root:/root:/bin/sh\n' },
    { name: 'etc/group', content: 'root:x:0:\n' },
    { name: 'opt/', type: 'directory' },
    { name: 'opt/a', content: 'a in layer 1\n' },
    { name: 'opt/keep/', type: 'directory' },
    { name: 'opt/keep/b', content: 'b in layer 1\n' },
    { name: 'var/', type: 'directory' },
    { name: 'var/cache/', type: 'directory' },
    { name: 'var/cache/old', content: 'stale\n' },
    { name: 'var/cache/fresh', content: 'fresh\n', uid: 1000, gid: 1000, mode: 0o600 },
    { name: 'tmp/', type: 'directory', mode: 0o1777 },
  ]);
  const second = await tarOf([
    { name: 'etc/', type: 'directory' },
    { name: 'etc/.wh.motd', content: '' },
    { name: 'var/', type: 'directory' },
    { name: 'var/cache/', type: 'directory' },
    { name: 'var/cache/.wh.old', content: '' },
    { name: 'opt/', type: 'directory' },
    { name: 'opt/.wh..wh..opq', content: '' },
    { name: 'opt/c', content: 'c in layer 2\n' },
    { name: 'opt/c-link', type: 'link', linkname: 'opt/c' },
    { name: 'srv/', type: 'directory' },
    { name: 'srv/pipe', type: 'fifo', mode: 0o644 },
  ]);
  const third = await tarOf([
    { name: 'etc/', type: 'directory' },
    {
      name: 'etc/passwd',
      content: 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n',
    },
    { name: 'home/', type: 'directory' },
    { name: 'home/user/', type: 'directory', uid: 1000, gid: 1000, mode: 0o700 },
    { name: 'home/user/.profile', content: 'export PS1=$\n', uid: 1000, gid: 1000 },
  ]);
  return [base, second, third];
}

export function imageConfigOf(
  layers: readonly Buffer[],
  extra: Record<string, unknown> = {},
): Buffer {
  return Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      created: MTIME.toISOString(),
      config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'] },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => sha256(l)) },
      history: layers.map((_, i) => ({
        created: MTIME.toISOString(),
        created_by: `layer ${i + 1}`,
      })),
      ...extra,
    }),
  );
}

export interface DockerSaveOptions {
  layout?: 'classic' | 'blobs';
  tags?: string[];
  /** Changes a file's bytes after its name was computed (to test refusals). */
  tamper?: (name: string, data: Buffer) => Buffer;
  /** Leaves files out. */
  omit?: (name: string) => boolean;
  gzipLayers?: boolean;
}

/** A docker save tarball of one image made of `layers`. */
export async function dockerSaveTar(
  layers: readonly Buffer[],
  o: DockerSaveOptions = {},
): Promise<Buffer> {
  const config = imageConfigOf(layers);
  const files: TarEntry[] = [];
  const layerNames: string[] = [];
  const blobs = o.layout === 'blobs';
  for (const layer of layers) {
    const data = o.gzipLayers ? gzipSync(layer) : layer;
    const name = blobs
      ? `blobs/sha256/${hexOf(sha256(data))}`
      : `${hexOf(sha256(layer))}/layer.tar`;
    layerNames.push(name);
    files.push({ name, content: data });
  }
  const configName = blobs
    ? `blobs/sha256/${hexOf(sha256(config))}`
    : `${hexOf(sha256(config))}.json`;
  files.push({ name: configName, content: config });
  const manifest = [
    { Config: configName, RepoTags: o.tags ?? ['busybox-test:latest'], Layers: layerNames },
  ];
  files.push({ name: 'manifest.json', content: JSON.stringify(manifest) });
  if (blobs) files.push({ name: 'oci-layout', content: '{"imageLayoutVersion":"1.0.0"}' });
  return tarOf(finish(files, o));
}

export interface OciOptions {
  tag?: string;
  gzipLayers?: boolean;
  /** Wrap the manifest in an index listing other platforms too. */
  multiPlatform?: boolean;
  tamper?: (name: string, data: Buffer) => Buffer;
  omit?: (name: string) => boolean;
}

/** An OCI image layout tar of one image made of `layers`. */
export async function ociLayoutTar(layers: readonly Buffer[], o: OciOptions = {}): Promise<Buffer> {
  const files: TarEntry[] = [{ name: 'oci-layout', content: '{"imageLayoutVersion":"1.0.0"}' }];
  const blob = (data: Buffer, mediaType: string, extra: Record<string, unknown> = {}) => {
    files.push({ name: `blobs/sha256/${hexOf(sha256(data))}`, content: data });
    return { mediaType, digest: sha256(data), size: data.length, ...extra };
  };
  const config = blob(imageConfigOf(layers), 'application/vnd.oci.image.config.v1+json');
  const layerDescriptors = layers.map((l) =>
    o.gzipLayers
      ? blob(gzipSync(l), 'application/vnd.oci.image.layer.v1.tar+gzip')
      : blob(l, 'application/vnd.oci.image.layer.v1.tar'),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config,
      layers: layerDescriptors,
    }),
  );
  const annotations = { 'org.opencontainers.image.ref.name': o.tag ?? 'busybox-oci:1.0' };
  let top = blob(manifest, 'application/vnd.oci.image.manifest.v1+json', {
    platform: { os: 'linux', architecture: 'amd64' },
  });
  if (o.multiPlatform) {
    const other = blob(
      Buffer.from('{"schemaVersion":2,"layers":[],"config":{}}'),
      'application/vnd.oci.image.manifest.v1+json',
      {
        platform: { os: 'linux', architecture: 'riscv64' },
      },
    );
    const nested = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [other, top],
      }),
    );
    top = blob(nested, 'application/vnd.oci.image.index.v1+json');
  }
  files.push({
    name: 'index.json',
    content: JSON.stringify({ schemaVersion: 2, manifests: [{ ...top, annotations }] }),
  });
  return tarOf(finish(files, o));
}

function finish(
  files: TarEntry[],
  o: { tamper?: (name: string, data: Buffer) => Buffer; omit?: (name: string) => boolean },
): TarEntry[] {
  return files
    .filter((f) => !o.omit?.(f.name))
    .map((f) =>
      o.tamper === undefined
        ? f
        : { ...f, content: o.tamper(f.name, Buffer.from(f.content ?? '')) },
    );
}
