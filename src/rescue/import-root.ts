/**
 * `rescue docker import`: a legacy root made into a thinp root. thinp's root mirrors
 * Docker's devicemapper directory (devicemapper/{data,metadata} in the kernel's format,
 * metadata/<name> device records in Docker's field names, no thinp.json needed), so the
 * pool is taken over as it is and only names change:
 *
 * - the data file is copied (holes kept: all-zero 1 MiB runs are not written), or, with
 *   `share`, hard-linked (the legacy root must then no longer be used by Docker);
 * - the metadata is copied (the repaired copy when the source was damaged);
 * - each image layer's device becomes the thinp layer named by its chain id's hex, its
 *   parent the layer below (or the base device); a container's `<mount-id>-init` and
 *   `<mount-id>` devices become the layers `<container id>-init` and `<container id>`;
 *   `base` stays `base`; any other device keeps its legacy name as a plain thin device;
 * - image and container records are written under ROOT/graph (images with their tags and
 *   exact config bytes, so their ids stay; containers with their names), and Docker's
 *   tar-split records as thinp's, so that `thinp image save` keeps the ids too.
 *
 * An image whose layers or devices are missing (or lost to damage) is left out, and so is a
 * container whose devices are, or whose image is; the summary says which and why.
 *
 * The target must hold no pool and no records. The source is only read (with `share`, its
 * data file gets a second name and is written by thinp from then on).
 */

import { link, mkdir, open, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { writeStateFile } from '../driver/index.js';
import { BadInputError, ExistsError } from '../util/index.js';
import { convertTarSplit } from './docker-tar-split.js';
import type { LegacyContainer, LegacyImage } from './legacy-root.js';
import { layersOf } from './refs.js';
import type { RescueSession } from './session.js';

const COPY_CHUNK = 1024 * 1024;
const ZEROES = Buffer.alloc(COPY_CHUNK);
const hex = (digest: string) => digest.replace(/^sha256:/, '');

export interface ImportOptions {
  /** Hard-link the data file instead of copying it. */
  share?: boolean;
}

export interface ImportSummary {
  root: string;
  images: string[];
  containers: string[];
  /** Images and containers left out, each with why (a layer or device missing or lost). */
  skipped: string[];
  /** Layers (chain ids) whose tar-split record was carried over; the others save as diffs. */
  tarSplits: string[];
  /** Legacy device hash → thinp device name. */
  devices: Record<string, string>;
  dataShared: boolean;
}

export async function importRoot(
  session: RescueSession,
  target: string,
  options: ImportOptions = {},
): Promise<ImportSummary> {
  await refuseOccupied(target);
  const names = deviceNames(session);
  const dm = path.join(target, 'devicemapper');
  await mkdir(dm, { recursive: true, mode: 0o700 });
  const data = path.join(dm, 'data');
  const shared = options.share === true;
  if (shared) await shareData(session.catalog.paths.dataFile, data);
  else await copySparse(session.catalog.paths.dataFile, data, session.pool.data.size);
  const metadata = session.pool.metadata.device;
  await copySparse(session.pool.metadataFile, path.join(dm, 'metadata'), metadata.size);
  await writeDeviceRecords(session, target, names);
  const skipped: string[] = [];
  const images = await writeImages(session, target, skipped);
  const splits = await writeTarSplits(session, target);
  const containers = await writeContainers(session, target, images, skipped);
  return {
    root: target,
    images,
    containers,
    tarSplits: splits,
    skipped,
    devices: Object.fromEntries([...names].map(([h, n]) => [h === '' ? 'base' : h, n.name])),
    dataShared: shared,
  };
}

interface NewName {
  name: string;
  /** The layer below (a layer's parent), '' for a layer on the base device. */
  parent: string | undefined;
  origin: string | undefined;
}

/** Legacy device hash → its thinp name, parent and origin. */
function deviceNames(session: RescueSession): Map<string, NewName> {
  const { catalog } = session;
  const names = new Map<string, NewName>();
  names.set('', { name: 'base', parent: undefined, origin: undefined });
  for (const layer of catalog.layers.values()) {
    const parent = layer.parent === undefined ? '' : hex(layer.parent);
    names.set(layer.cacheId, {
      name: hex(layer.chainId),
      parent,
      origin: parent === '' ? 'base' : parent,
    });
  }
  for (const c of catalog.containers) {
    if (c.mount === undefined) continue;
    const image = c.mount.parent === undefined ? '' : hex(c.mount.parent);
    const init = c.mount.initId ?? `${c.mount.mountId}-init`;
    const initName = `${c.id}-init`;
    names.set(init, { name: initName, parent: image, origin: image === '' ? 'base' : image });
    names.set(c.mount.mountId, { name: c.id, parent: initName, origin: initName });
  }
  for (const hash of catalog.devices.keys()) {
    if (!names.has(hash)) names.set(hash, { name: hash, parent: undefined, origin: undefined });
  }
  for (const hash of [...names.keys()]) if (!catalog.devices.has(hash)) names.delete(hash);
  return names;
}

async function writeDeviceRecords(
  session: RescueSession,
  target: string,
  names: Map<string, NewName>,
): Promise<void> {
  const dir = path.join(target, 'metadata');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  let highest = 0;
  for (const [hash, n] of names) {
    const r = session.catalog.devices.get(hash);
    if (r === undefined || r.deleted) continue;
    highest = Math.max(highest, r.deviceId);
    await writeStateFile(path.join(dir, n.name), {
      device_id: r.deviceId,
      size: r.size,
      transaction_id: r.transactionId,
      // A layer record not initialized is one whose creation was cut short: thinp removes it.
      initialized: hash === '' || n.parent !== undefined ? true : r.initialized,
      deleted: false,
      ...(n.origin === undefined ? {} : { origin: n.origin }),
      ...(n.parent === undefined ? {} : { parent: n.parent }),
    });
  }
  const set = session.catalog.deviceSet;
  await writeStateFile(path.join(dir, 'deviceset-metadata'), {
    next_device_id: Math.max(highest + 1, set?.nextDeviceId ?? 0),
    BaseDeviceUUID: set?.baseDeviceUuid ?? '',
    BaseDeviceFilesystem: set?.baseDeviceFilesystem ?? '',
  });
  const base = session.catalog.devices.get('');
  await writeStateFile(path.join(dir, 'transaction-metadata'), {
    open_transaction_id: session.pool.metadata.transactionId,
    device_hash: '',
    device_id: base?.deviceId ?? 0,
  });
}

async function writeImages(
  session: RescueSession,
  target: string,
  skipped: string[],
): Promise<string[]> {
  const dir = path.join(target, 'graph', 'images');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const loaded = new Date().toISOString();
  const out: string[] = [];
  for (const image of session.catalog.images) {
    const problem = await imageProblem(session, image);
    if (problem !== undefined) {
      skipped.push(`image ${image.id}: ${problem}`);
      continue;
    }
    const layers = layersOf(session.catalog, image).map((l) => ({
      chainId: l.chainId,
      diffId: l.diffId,
      layer: hex(l.chainId),
      size: l.size,
    }));
    await writeStateFile(path.join(dir, `${hex(image.id)}.json`), {
      id: image.id,
      tags: image.tags,
      config: image.config.toString('utf8'),
      layers,
      loaded,
    });
    out.push(image.id);
  }
  return out;
}

/** Why `image` cannot become a thinp image (a layer or its device is missing), if it cannot. */
async function imageProblem(
  session: RescueSession,
  image: LegacyImage,
): Promise<string | undefined> {
  for (const chainId of image.chain) {
    const layer = session.catalog.layers.get(chainId);
    if (layer === undefined) return `layer ${chainId} is not in the layerdb`;
    const problem = await deviceProblem(session, layer.cacheId);
    if (problem !== undefined) return `layer ${chainId}: ${problem}`;
  }
  return undefined;
}

/** Why the driver's device `hash` is unusable (no record, deleted, not in the pool), if it is. */
async function deviceProblem(session: RescueSession, hash: string): Promise<string | undefined> {
  const record = session.catalog.devices.get(hash);
  if (record === undefined) return `device ${hash} has no record`;
  if (record.deleted) return `device ${hash} is marked deleted`;
  if (!(await session.pool.metadata.exists(record.deviceId))) {
    return `thin device ${record.deviceId} (${hash}) is not in the pool`;
  }
  return undefined;
}

/** Docker's tar-split records as thinp's (ROOT/graph/tar-split/<layer>.split.gz). */
async function writeTarSplits(session: RescueSession, target: string): Promise<string[]> {
  const dir = path.join(target, 'graph', 'tar-split');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const layerdb = path.join(session.catalog.paths.imageDir, 'layerdb', 'sha256');
  const out: string[] = [];
  for (const layer of session.catalog.layers.values()) {
    const from = path.join(layerdb, hex(layer.chainId), 'tar-split.json.gz');
    const to = path.join(dir, `${hex(layer.chainId)}.split.gz`);
    const ok = await convertTarSplit(from, to).then(
      () => true,
      () => rm(to, { force: true }).then(() => false),
    );
    if (ok) out.push(layer.chainId);
  }
  return out;
}

async function writeContainers(
  session: RescueSession,
  target: string,
  images: readonly string[],
  skipped: string[],
): Promise<string[]> {
  const dir = path.join(target, 'graph', 'containers');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const out: string[] = [];
  for (const c of session.catalog.containers) {
    const problem = await containerProblem(session, c, images);
    if (problem !== undefined) {
      skipped.push(`container ${c.name}: ${problem}`);
      continue;
    }
    await writeStateFile(path.join(dir, `${c.id}.json`), {
      id: c.id,
      name: c.name,
      image: c.image,
      created: c.created,
      size: null,
      state: 'ready',
    });
    out.push(c.id);
  }
  return out;
}

async function containerProblem(
  session: RescueSession,
  c: LegacyContainer,
  images: readonly string[],
): Promise<string | undefined> {
  if (c.mount === undefined) return 'no layerdb/mounts record';
  if (!images.includes(c.image)) return `its image ${c.image} is not imported`;
  for (const hash of [c.mount.initId ?? `${c.mount.mountId}-init`, c.mount.mountId]) {
    const problem = await deviceProblem(session, hash);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

async function refuseOccupied(target: string): Promise<void> {
  for (const name of ['thinp.json', 'devicemapper', 'metadata', 'graph']) {
    const there = await stat(path.join(target, name)).catch(() => undefined);
    if (there !== undefined) {
      throw new ExistsError(`${target} already holds a thinp root (${name})`, {
        hint: 'import into a new or empty --root directory',
      });
    }
  }
}

async function shareData(from: string, to: string): Promise<void> {
  await link(from, to).catch((err: unknown) => {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EXDEV') {
      throw new BadInputError(
        `${to} is on another filesystem than ${from}, so it cannot share it`,
        {
          hint: 'put the thinp root on the same filesystem, or import without --share (a copy)',
        },
      );
    }
    throw err;
  });
}

/** Copies the first `size` bytes of `from` (file or device) to a new file, zero runs as holes. */
async function copySparse(from: string, to: string, size: number): Promise<void> {
  const src = await open(from, 'r');
  const dst = await open(to, 'wx', 0o600);
  try {
    const buf = Buffer.alloc(COPY_CHUNK);
    for (let at = 0; at < size; at += COPY_CHUNK) {
      const { bytesRead } = await src.read(buf, 0, Math.min(COPY_CHUNK, size - at), at);
      const chunk = buf.subarray(0, bytesRead);
      if (!chunk.equals(ZEROES.subarray(0, bytesRead))) await dst.write(chunk, 0, bytesRead, at);
    }
    await dst.truncate(size);
    await dst.sync();
  } finally {
    await src.close();
    await dst.close();
  }
}
