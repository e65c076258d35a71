/**
 * Ground truth for repair tests: every device and mapping of sound metadata, each with the
 * metadata blocks it sits under (the btree nodes on the way from the superblock to its leaf
 * entry). Damage to one of those blocks loses it; damage anywhere else must not.
 */

import { readFile } from 'node:fs/promises';
import { decodeBlockTime, decodeSuperblock } from '../../src/thin/index.js';
import { parseDumpXml } from '../../src/tools/index.js';

const BLOCK = 4096;
const KEYS = 32;

export interface PathedMapping {
  vblock: number;
  dataBlock: number;
  time: number;
  /** Nodes of the top-level and the device's tree above this mapping. */
  path: number[];
  /** Its index in its leaf (the last block of `path`). */
  index: number;
}

export interface PathedDevice {
  id: number;
  /** Nodes of the top-level tree above the device's entry. */
  topPath: number[];
  /** Nodes of the details tree above the device's details. */
  detailsPath: number[];
  mappings: PathedMapping[];
}

/** Every device of the sound metadata file `file`, with paths. */
export async function pathedDevices(file: string): Promise<PathedDevice[]> {
  const image = await readFile(file);
  const block = (loc: number) => image.subarray(loc * BLOCK, (loc + 1) * BLOCK);
  const sb = decodeSuperblock(block(0));
  const leaves = (root: number, visit: (node: Buffer, i: number, path: number[]) => void) => {
    const walk = (loc: number, path: number[]) => {
      const node = block(loc);
      const flags = node.readUInt32LE(4);
      const n = node.readUInt32LE(16);
      const max = node.readUInt32LE(20);
      const here = [...path, loc];
      for (let i = 0; i < n; i++) {
        if (flags === 1) walk(Number(node.readBigUInt64LE(KEYS + 8 * max + 8 * i)), here);
        else visit(node, i, here);
      }
    };
    walk(root, []);
  };
  const detailsPaths = new Map<number, number[]>();
  leaves(sb.deviceDetailsRoot, (node, i, path) => {
    detailsPaths.set(Number(node.readBigUInt64LE(KEYS + 8 * i)), path);
  });
  const devices: PathedDevice[] = [];
  leaves(sb.dataMappingRoot, (node, i, topPath) => {
    const max = node.readUInt32LE(20);
    const id = Number(node.readBigUInt64LE(KEYS + 8 * i));
    const root = Number(node.readBigUInt64LE(KEYS + 8 * max + 8 * i));
    const mappings: PathedMapping[] = [];
    leaves(root, (leaf, j, path) => {
      const leafMax = leaf.readUInt32LE(20);
      const { dataBlock, time } = decodeBlockTime(leaf, KEYS + 8 * leafMax + 8 * j);
      const vblock = Number(leaf.readBigUInt64LE(KEYS + 8 * j));
      mappings.push({ vblock, dataBlock, time, path: [...topPath, ...path], index: j });
    });
    devices.push({ id, topPath, detailsPath: detailsPaths.get(id) ?? [], mappings });
  });
  return devices;
}

/** Every tree node of `devices` (top-level, details and mapping trees). */
export function treeBlocks(devices: PathedDevice[]): number[] {
  const blocks = new Set<number>();
  for (const d of devices) {
    for (const b of [...d.topPath, ...d.detailsPath]) blocks.add(b);
    for (const m of d.mappings) for (const b of m.path) blocks.add(b);
  }
  return [...blocks].sort((a, b) => a - b);
}

/** Device id → vblock → "dataBlock:time", from thin_dump XML. */
export function dumpMappings(xml: string): Map<number, Map<number, string>> {
  const devices = new Map<number, Map<number, string>>();
  for (const device of parseDumpXml(xml).devices) {
    const mappings = new Map<number, string>();
    for (const run of device.runs) {
      for (let i = 0; i < run.length; i++) {
        mappings.set(run.vblock + i, `${run.dataBlock + i}:${run.time}`);
      }
    }
    devices.set(device.info.devId, mappings);
  }
  return devices;
}

/**
 * What repair must keep: devices whose entry survives, without mappings under `damaged`.
 * A leaf in `cut` (block → entries left) loses only its entries from that index on.
 */
export function expectedAfterDamage(
  devices: PathedDevice[],
  damaged: ReadonlySet<number>,
  cut: ReadonlyMap<number, number> = new Map(),
): Map<number, Map<number, string>> {
  const kept = new Map<number, Map<number, string>>();
  for (const d of devices) {
    if (d.topPath.some((b) => damaged.has(b))) continue;
    const mappings = new Map<number, string>();
    for (const m of d.mappings) {
      const leaf = m.path.at(-1) as number;
      const left = cut.get(leaf);
      const lost = left === undefined ? m.path.some((b) => damaged.has(b)) : m.index >= left;
      if (!lost) mappings.set(m.vblock, `${m.dataBlock}:${m.time}`);
    }
    kept.set(d.id, mappings);
  }
  return kept;
}
