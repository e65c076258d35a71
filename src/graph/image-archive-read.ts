/**
 * The images in a spooled image archive, checked: `docker save` tarballs (manifest.json, in
 * the classic `<id>/layer.tar` layout or Docker 25's `blobs/sha256/…` layout) and OCI image
 * layouts (oci-layout, index.json, blobs). Every blob must hash to the digest that names it,
 * every config to its name, and every layer, decompressed, to its diffID in the config;
 * anything else is refused with the file's name, before a single layer is applied.
 */

import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { SMALL_FILE_BYTES, type SpooledArchive, type SpooledFile } from './image-archive-spool.js';
import { type ImageConfig, parseImageConfig, parseObject } from './image-config.js';
import { type Digest, digestHex, parseDigest } from './image-digest.js';
import { BadImageArchiveError, DigestMismatchError, missingFile } from './image-errors.js';
import { normalizeTag } from './image-ref.js';

export interface ArchiveLayer {
  readonly diffId: Digest;
  readonly file: SpooledFile;
}

export interface ArchiveImage {
  readonly format: 'docker-save' | 'oci-layout';
  readonly config: ImageConfig;
  readonly tags: readonly string[];
  readonly layers: readonly ArchiveLayer[];
}

/** The images of the archive, in the archive's order, every digest checked. */
export function imagesOfArchive(spool: SpooledArchive): ArchiveImage[] {
  if (spool.file('manifest.json') !== undefined) return dockerSaveImages(spool);
  if (spool.file('index.json') !== undefined) return ociLayoutImages(spool);
  throw new BadImageArchiveError('the image archive has neither manifest.json nor index.json', {
    hint: "give a file made by 'docker save' or an OCI image layout tar (skopeo copy oci-archive:…)",
  });
}

/** A layer's uncompressed tar. */
export function openLayer(layer: ArchiveLayer): Readable {
  const raw = createReadStream(layer.file.path);
  if (layer.file.compression === 'none') return raw;
  const gunzip = createGunzip();
  raw.on('error', (err) => gunzip.destroy(err));
  return raw.pipe(gunzip);
}

// ---------------------------------------------------------------------------------------
// docker save

interface DockerManifestEntry {
  Config: string;
  RepoTags: string[] | null;
  Layers: string[];
}

function dockerSaveImages(spool: SpooledArchive): ArchiveImage[] {
  const entries = readJson(spool, 'manifest.json', 'the archive');
  if (!Array.isArray(entries)) {
    throw new BadImageArchiveError('manifest.json in the image archive is not a JSON array', {
      hint: "the archive is damaged or not made by 'docker save'; make it again",
    });
  }
  return entries.map((entry, i) => dockerSaveImage(spool, checkManifestEntry(entry, i)));
}

function checkManifestEntry(entry: unknown, i: number): DockerManifestEntry {
  const e = entry as Partial<DockerManifestEntry> | null;
  const ok =
    typeof e === 'object' &&
    e !== null &&
    typeof e.Config === 'string' &&
    Array.isArray(e.Layers) &&
    e.Layers.every((l) => typeof l === 'string') &&
    (e.RepoTags === undefined || e.RepoTags === null || Array.isArray(e.RepoTags));
  if (!ok) {
    throw new BadImageArchiveError(`manifest.json in the image archive: entry ${i} is malformed`, {
      hint: 'each entry needs Config (a file name), Layers (file names) and RepoTags',
    });
  }
  return e as DockerManifestEntry;
}

function dockerSaveImage(spool: SpooledArchive, entry: DockerManifestEntry): ArchiveImage {
  const config = readConfig(spool, entry.Config, 'manifest.json');
  if (config.diffIds.length !== entry.Layers.length) {
    throw new BadImageArchiveError(
      `manifest.json lists ${entry.Layers.length} layers for ${entry.Config}, whose ` +
        `rootfs.diff_ids has ${config.diffIds.length}`,
      { hint: 'the archive is damaged or was edited; make it again with docker save' },
    );
  }
  const layers = entry.Layers.map((name, i) =>
    checkedLayer(spool, name, config.diffIds[i] as Digest, 'manifest.json'),
  );
  const tags = (entry.RepoTags ?? []).map(normalizeTag);
  return { format: 'docker-save', config, tags, layers };
}

/** The digest a file's name promises: `blobs/sha256/<hex>` or classic `<hex>.json`. */
function digestInName(name: string): Digest | undefined {
  const m = /^(?:blobs\/sha256\/([0-9a-f]{64})|([0-9a-f]{64})\.json)$/.exec(name);
  const hex = m?.[1] ?? m?.[2];
  return hex === undefined ? undefined : `sha256:${hex}`;
}

function readConfig(spool: SpooledArchive, name: string, namedBy: string): ImageConfig {
  const file = requireFile(spool, name, namedBy);
  const promised = digestInName(name);
  if (promised !== undefined && promised !== file.digest) {
    throw new DigestMismatchError(name, 'its sha256', promised, file.digest);
  }
  return parseImageConfig(readSmall(file), name);
}

function checkedLayer(
  spool: SpooledArchive,
  name: string,
  diffId: Digest,
  namedBy: string,
): ArchiveLayer {
  const file = requireFile(spool, name, namedBy);
  const promised = digestInName(name);
  if (promised !== undefined && promised !== file.digest) {
    throw new DigestMismatchError(name, 'its sha256', promised, file.digest);
  }
  if (file.compression === 'zstd') {
    throw new BadImageArchiveError(`${name} in the image archive is a zstd-compressed layer`, {
      hint: 'thinp reads uncompressed and gzip layers; recompress it (skopeo copy --dest-compress-format gzip)',
    });
  }
  if (file.uncompressedDigest !== diffId) {
    throw new DigestMismatchError(
      name,
      'the sha256 of the uncompressed layer',
      diffId,
      file.uncompressedDigest,
    );
  }
  return { diffId, file };
}

// ---------------------------------------------------------------------------------------
// OCI image layout

interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  annotations: Record<string, string>;
  platform: { os?: string; architecture?: string } | undefined;
}

const INDEX_TYPES = new Set([
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
]);

function ociLayoutImages(spool: SpooledArchive): ArchiveImage[] {
  const layout = readJson(spool, 'oci-layout', 'the OCI image layout') as {
    imageLayoutVersion?: unknown;
  };
  if (typeof layout?.imageLayoutVersion !== 'string') {
    throw new BadImageArchiveError('oci-layout in the image archive has no imageLayoutVersion', {
      hint: 'this is not an OCI image layout; make it again (skopeo copy … oci-archive:FILE)',
    });
  }
  const index = readJson(spool, 'index.json', 'the OCI image layout');
  return descriptorsOf(index, 'index.json').flatMap((d) => imagesOf(spool, d, tagsOf(d)));
}

function imagesOf(spool: SpooledArchive, d: Descriptor, tags: string[]): ArchiveImage[] {
  const json = parseObject(readBlob(spool, d), blobName(d.digest));
  if (INDEX_TYPES.has(d.mediaType) || Array.isArray(json.manifests)) {
    const chosen = pickPlatform(descriptorsOf(json, blobName(d.digest)));
    return chosen === undefined ? [] : imagesOf(spool, chosen, tags);
  }
  return [ociImage(spool, json, blobName(d.digest), tags)];
}

function ociImage(
  spool: SpooledArchive,
  manifest: Record<string, unknown>,
  name: string,
  tags: string[],
): ArchiveImage {
  const configDescriptor = descriptor(manifest.config, `${name}: config`);
  const config = parseImageConfig(
    readBlob(spool, configDescriptor),
    blobName(configDescriptor.digest),
  );
  const layerDescriptors = Array.isArray(manifest.layers) ? manifest.layers : [];
  if (layerDescriptors.length !== config.diffIds.length) {
    throw new BadImageArchiveError(
      `${name} lists ${layerDescriptors.length} layers, its config ${config.diffIds.length}`,
      { hint: 'the archive is damaged or was edited; make it again' },
    );
  }
  const layers = layerDescriptors.map((l, i) => {
    const d = descriptor(l, `${name}: layers[${i}]`);
    requireBlob(spool, d);
    return checkedLayer(spool, blobName(d.digest), config.diffIds[i] as Digest, name);
  });
  return { format: 'oci-layout', config, tags, layers };
}

function descriptorsOf(index: unknown, file: string): Descriptor[] {
  const manifests = (index as { manifests?: unknown } | null)?.manifests;
  if (!Array.isArray(manifests)) {
    throw new BadImageArchiveError(`${file} in the image archive has no manifests array`, {
      hint: 'this is not an OCI image index; make the archive again',
    });
  }
  return manifests.map((m, i) => descriptor(m, `${file}: manifests[${i}]`));
}

function descriptor(value: unknown, what: string): Descriptor {
  const v = (value ?? {}) as Record<string, unknown>;
  if (typeof v.mediaType !== 'string' || typeof v.size !== 'number') {
    throw new BadImageArchiveError(`${what} is not a descriptor (mediaType, digest, size)`, {
      hint: 'the archive is damaged; make it again',
    });
  }
  return {
    mediaType: v.mediaType,
    digest: parseDigest(v.digest, `${what}: digest`),
    size: v.size,
    annotations: (v.annotations ?? {}) as Record<string, string>,
    platform: v.platform as Descriptor['platform'],
  };
}

function tagsOf(d: Descriptor): string[] {
  const full = d.annotations['io.containerd.image.name'];
  if (full !== undefined) return [normalizeTag(full)];
  const ref = d.annotations['org.opencontainers.image.ref.name'];
  return ref === undefined
    ? []
    : [ref.includes('/') || ref.includes(':') ? normalizeTag(ref) : ref];
}

const ARCH: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  s390x: 's390x',
  ppc64: 'ppc64le',
};

/** The manifest of an index for this machine (linux and its architecture), else the first. */
function pickPlatform(manifests: Descriptor[]): Descriptor | undefined {
  const arch = ARCH[process.arch] ?? process.arch;
  const usable = manifests.filter((m) => m.platform?.architecture !== 'unknown');
  return (
    usable.find((m) => m.platform?.os === 'linux' && m.platform.architecture === arch) ?? usable[0]
  );
}

function blobName(digest: Digest): string {
  return `blobs/sha256/${digestHex(digest)}`;
}

function requireBlob(spool: SpooledArchive, d: Descriptor): SpooledFile {
  const name = blobName(d.digest);
  const file = requireFile(spool, name, 'a descriptor');
  if (file.digest !== d.digest)
    throw new DigestMismatchError(name, 'its sha256', d.digest, file.digest);
  if (file.size !== d.size) {
    throw new DigestMismatchError(name, 'its size', String(d.size), String(file.size));
  }
  return file;
}

function readBlob(spool: SpooledArchive, d: Descriptor): Buffer {
  return readSmall(requireBlob(spool, d));
}

// ---------------------------------------------------------------------------------------

function requireFile(spool: SpooledArchive, name: string, namedBy: string): SpooledFile {
  const file = spool.file(name);
  if (file === undefined) throw missingFile(name, namedBy);
  return file;
}

function readSmall(file: SpooledFile): Buffer {
  if (file.small === undefined) {
    throw new BadImageArchiveError(
      `${file.name} in the image archive should be JSON but is ${file.size} bytes` +
        `${file.compression === 'none' ? '' : `, ${file.compression}-compressed`}`,
      {
        hint: `the archive is damaged or not an image archive (JSON files stay under ${SMALL_FILE_BYTES} bytes)`,
      },
    );
  }
  return file.small;
}

function readJson(spool: SpooledArchive, name: string, namedBy: string): unknown {
  const bytes = readSmall(requireFile(spool, name, namedBy));
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch (err) {
    throw new BadImageArchiveError(`${name} in the image archive is not valid JSON`, {
      hint: 'the archive is damaged; make it again',
      cause: err,
    });
  }
}
