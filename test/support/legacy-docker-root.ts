/**
 * Builds a Docker devicemapper root the way Docker 20.10 left one, with real tools and no
 * Docker: each thin device's filesystem is made by mkfs from a directory tree (`mkfs.ext4
 * -d`, or `mkfs.xfs -p` with a protofile written from the tree), its 64 KiB blocks laid
 * into the pool's data file — a snapshot maps the blocks it shares with its origin to the
 * origin's data blocks and only its changed blocks elsewhere, all-zero blocks stay unmapped —
 * and the pool metadata is made by `thin_restore` from the XML written here. Then the
 * driver's device records and the image store, repositories and container configs, in
 * Docker 20.10's formats.
 */

import { createHash } from 'node:crypto';
import { lstat, mkdir, open, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { requireTool, runToolOk } from './daemon.js';

export const BLOCK = 64 * 1024;
const DATA_BLOCKS = 16384; // a 1 GiB data file, sparse

export interface DeviceSpec {
  /** The driver's hash (`""` for the base device). */
  hash: string;
  /** The device's whole filesystem tree (Docker's `rootfs/` and `id` inside). */
  tree: string;
  fs: 'ext4' | 'xfs';
  size: number;
  /** The origin whose blocks this snapshot shares. */
  origin?: string;
}

export interface BuiltDevice {
  deviceId: number;
  mappedBlocks: number;
  /** Blocks shared with the origin. */
  sharedBlocks: number;
  /** The filesystem's UUID (blkid). */
  uuid: string;
}

/** Makes ROOT/devicemapper with the pool of `devices` (origins first). */
export async function writeLegacyPool(
  root: string,
  work: string,
  devices: readonly DeviceSpec[],
): Promise<Map<string, BuiltDevice>> {
  const dm = path.join(root, 'devicemapper', 'devicemapper');
  await mkdir(dm, { recursive: true });
  const data = await open(path.join(dm, 'data'), 'w+');
  await data.truncate(DATA_BLOCKS * BLOCK);
  const maps = new Map<string, number[]>(); // hash → vblock → data block (-1 unmapped)
  const built = new Map<string, BuiltDevice>();
  const xml: string[] = [];
  let next = 0;
  try {
    for (const [i, d] of devices.entries()) {
      const image = path.join(work, `device-${i}.img`);
      await makeFs(d, image, work);
      const blkid = await requireTool('blkid', 'util-linux');
      const uuid = (await runToolOk(blkid, ['-s', 'UUID', '-o', 'value', image])).trim();
      const origin = d.origin === undefined ? undefined : maps.get(d.origin);
      const img = await open(image, 'r');
      const map: number[] = [];
      let shared = 0;
      try {
        const buf = Buffer.alloc(BLOCK);
        const originBuf = Buffer.alloc(BLOCK);
        for (let vb = 0; vb * BLOCK < d.size; vb++) {
          await img.read(buf, 0, BLOCK, vb * BLOCK);
          const was = origin?.[vb] ?? -1;
          if (was >= 0) {
            await data.read(originBuf, 0, BLOCK, was * BLOCK);
            if (originBuf.equals(buf)) {
              map.push(was);
              shared++;
              continue;
            }
          }
          if (buf.every((b) => b === 0)) {
            map.push(-1);
            continue;
          }
          await data.write(buf, 0, BLOCK, next * BLOCK);
          map.push(next++);
        }
      } finally {
        await img.close();
        await rm(image, { force: true });
      }
      maps.set(d.hash, map);
      const deviceId = i + 1;
      const mapped = map.filter((b) => b >= 0).length;
      built.set(d.hash, { deviceId, mappedBlocks: mapped, sharedBlocks: shared, uuid });
      xml.push(deviceXml(deviceId, map));
    }
  } finally {
    await data.close();
  }
  const xmlFile = path.join(work, 'pool.xml');
  await writeFile(
    xmlFile,
    `<superblock uuid="" time="1" transaction="${devices.length}" flags="0" version="2" data_block_size="${BLOCK / 512}" nr_data_blocks="${DATA_BLOCKS}">\n${xml.join('')}</superblock>\n`,
  );
  const meta = path.join(dm, 'metadata');
  await writeFile(meta, '');
  const fh = await open(meta, 'r+');
  await fh.truncate(16 * 1024 * 1024);
  await fh.close();
  await runToolOk(await requireTool('thin_restore', 'thin-provisioning-tools'), [
    '-i',
    xmlFile,
    '-o',
    meta,
  ]);
  return built;
}

function deviceXml(id: number, map: readonly number[]): string {
  const lines = [];
  const mapped = map.filter((b) => b >= 0).length;
  lines.push(
    `  <device dev_id="${id}" mapped_blocks="${mapped}" transaction="${id}" creation_time="0" snap_time="1">\n`,
  );
  for (let vb = 0; vb < map.length; vb++) {
    const block = map[vb] as number;
    if (block < 0) continue;
    let n = 1;
    while (map[vb + n] === block + n) n++;
    lines.push(
      n === 1
        ? `    <single_mapping origin_block="${vb}" data_block="${block}" time="0"/>\n`
        : `    <range_mapping origin_begin="${vb}" data_begin="${block}" length="${n}" time="0"/>\n`,
    );
    vb += n - 1;
  }
  lines.push('  </device>\n');
  return lines.join('');
}

async function makeFs(d: DeviceSpec, image: string, work: string): Promise<void> {
  const fh = await open(image, 'w');
  await fh.truncate(d.size);
  await fh.close();
  if (d.fs === 'ext4') {
    const mkfs = await requireTool('mkfs.ext4', 'e2fsprogs');
    await runToolOk(mkfs, ['-q', '-F', '-b', '4096', '-E', 'nodiscard', '-d', d.tree, image]);
    return;
  }
  const proto = path.join(work, 'proto.txt');
  await writeFile(proto, await protofileOf(d.tree));
  const mkfs = await requireTool('mkfs.xfs', 'xfsprogs');
  await runToolOk(mkfs, ['-q', '-f', '-p', proto, image]);
}

/** mkfs.xfs's protofile for `tree`: directories, regular files and symlinks. */
async function protofileOf(tree: string): Promise<string> {
  const lines = ['/dev/null', '0 0', `d--755 0 0`];
  const walk = async (dir: string, depth: number) => {
    for (const name of (await readdir(dir)).sort()) {
      const p = path.join(dir, name);
      const st = await lstat(p);
      const mode = (st.mode & 0o777).toString(8).padStart(3, '0');
      const suid = st.mode & 0o4000 ? 'u' : '-';
      const sgid = st.mode & 0o2000 ? 'g' : '-';
      const pad = ' '.repeat(depth);
      if (st.isDirectory()) {
        lines.push(`${pad}${name} d${suid}${sgid}${mode} ${st.uid} ${st.gid}`);
        await walk(p, depth + 1);
        lines.push(`${pad}$`);
      } else if (st.isSymbolicLink()) {
        lines.push(`${pad}${name} l${suid}${sgid}${mode} ${st.uid} ${st.gid} ${await readlink(p)}`);
      } else if (st.isFile()) {
        lines.push(`${pad}${name} -${suid}${sgid}${mode} ${st.uid} ${st.gid} ${p}`);
      } else {
        throw new Error(`the xfs protofile cannot hold ${p}`);
      }
    }
  };
  await walk(tree, 1);
  lines.push('$', '');
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------
// Docker's records

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}
const hex = (d: string) => d.slice('sha256:'.length);

export function chainIdsOf(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) out.push(out.length === 0 ? d : sha256(`${out.at(-1)} ${d}`));
  return out;
}

async function put(file: string, content: string | Buffer): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, content);
}

/** `devicemapper/metadata/<hash>` for each device, and the two global files. */
export async function writeDeviceRecords(
  root: string,
  devices: readonly DeviceSpec[],
  built: Map<string, BuiltDevice>,
  baseFs: 'ext4' | 'xfs',
): Promise<void> {
  const dir = path.join(root, 'devicemapper', 'metadata');
  for (const d of devices) {
    const b = built.get(d.hash) as BuiltDevice;
    await put(
      path.join(dir, d.hash === '' ? 'base' : d.hash),
      JSON.stringify({
        device_id: b.deviceId,
        size: d.size,
        transaction_id: b.deviceId,
        initialized: d.hash === '',
        deleted: false,
      }),
    );
  }
  await put(
    path.join(dir, 'deviceset-metadata'),
    JSON.stringify({
      next_device_id: devices.length + 1,
      BaseDeviceUUID: built.get('')?.uuid ?? '',
      BaseDeviceFilesystem: baseFs,
    }),
  );
  await put(
    path.join(dir, 'transaction-metadata'),
    JSON.stringify({ open_transaction_id: devices.length, device_hash: '', device_id: 1 }),
  );
}

export interface ImageSpec {
  config: Buffer;
  /**
   * Per layer, bottom first: its diffID, the device (cache-id) holding it, and the tar it
   * was applied from, when Docker's tar-split record of it is to be written.
   */
  layers: Array<{ diffId: string; cacheId: string; size: number; tar?: Buffer }>;
  tags: string[];
}

/** imagedb, layerdb and repositories.json of `images`; returns the image ids. */
export async function writeImageStore(
  root: string,
  images: readonly ImageSpec[],
): Promise<string[]> {
  const dir = path.join(root, 'image', 'devicemapper');
  const repos: Record<string, Record<string, string>> = {};
  const ids: string[] = [];
  for (const image of images) {
    const id = sha256(image.config);
    ids.push(id);
    await put(path.join(dir, 'imagedb', 'content', 'sha256', hex(id)), image.config);
    const chain = chainIdsOf(image.layers.map((l) => l.diffId));
    for (const [i, layer] of image.layers.entries()) {
      const ldir = path.join(dir, 'layerdb', 'sha256', hex(chain[i] as string));
      await put(path.join(ldir, 'diff'), layer.diffId);
      await put(path.join(ldir, 'cache-id'), layer.cacheId);
      await put(path.join(ldir, 'size'), String(layer.size));
      if (i > 0) await put(path.join(ldir, 'parent'), chain[i - 1] as string);
      if (layer.tar !== undefined)
        await put(path.join(ldir, 'tar-split.json.gz'), dockerTarSplit(layer.tar));
    }
    for (const tag of image.tags) {
      const repo = tag.slice(0, tag.lastIndexOf(':'));
      repos[repo] = { ...repos[repo], [tag]: id };
    }
  }
  await put(path.join(dir, 'repositories.json'), JSON.stringify({ Repositories: repos }));
  return ids;
}

export interface ContainerSpec {
  id: string;
  name: string;
  image: string;
  /** The chain id of the image's top layer. */
  parent: string;
  mountId: string;
}

/** containers/<id>/config.v2.json and layerdb/mounts/<id>/ of `containers`. */
export async function writeContainers(
  root: string,
  containers: readonly ContainerSpec[],
): Promise<void> {
  for (const c of containers) {
    await put(
      path.join(root, 'containers', c.id, 'config.v2.json'),
      JSON.stringify({
        StreamConfig: {},
        State: { Running: false, ExitCode: 0, Pid: 0 },
        ID: c.id,
        Created: '2021-03-04T05:06:07.000000000Z',
        Path: '/bin/sh',
        Args: [],
        Config: { Hostname: c.id.slice(0, 12), Image: c.image, Cmd: ['/bin/sh'] },
        Image: c.image,
        Name: `/${c.name}`,
        RestartCount: 0,
        Driver: 'devicemapper',
        MountLabel: '',
        ProcessLabel: '',
      }),
    );
    const m = path.join(root, 'image', 'devicemapper', 'layerdb', 'mounts', c.id);
    await put(path.join(m, 'mount-id'), c.mountId);
    await put(path.join(m, 'init-id'), `${c.mountId}-init`);
    await put(path.join(m, 'parent'), c.parent);
  }
}

/**
 * Docker's tar-split record of a ustar `tar` (as tar-stream writes short names): a segment
 * entry (type 2) of the bytes kept as they are, then a file entry (type 1) per tar entry with
 * its name and the size of its contents (0 but for regular files); the crc64 payload of file
 * entries is left out, as thinp does not read it.
 */
export function dockerTarSplit(tar: Buffer): Buffer {
  const lines: string[] = [];
  let pending: Buffer[] = [];
  let position = 0;
  const segment = () => {
    const bytes = Buffer.concat(pending);
    pending = [];
    if (bytes.length > 0) {
      lines.push(
        JSON.stringify({ type: 2, payload: bytes.toString('base64'), position: position++ }),
      );
    }
  };
  let off = 0;
  while (off + 512 <= tar.length) {
    const h = tar.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const field = (at: number, len: number) =>
      h.toString('latin1', at, at + len).replace(/\0.*$/s, '');
    const size = Number.parseInt(field(124, 12).trim() || '0', 8);
    const type = String.fromCharCode(h[156] as number);
    const prefix = field(345, 155);
    const name = prefix === '' ? field(0, 100) : `${prefix}/${field(0, 100)}`;
    pending.push(h);
    off += 512;
    segment();
    const regular = type === '0' || type === '\0' || type === '7';
    lines.push(JSON.stringify({ type: 1, name, size: regular ? size : 0, position: position++ }));
    const padded = Math.ceil(size / 512) * 512;
    if (regular) pending.push(tar.subarray(off + size, off + padded));
    else pending.push(tar.subarray(off, off + padded));
    off += padded;
  }
  pending.push(tar.subarray(off));
  segment();
  return gzipSync(`${lines.join('\n')}\n`);
}
