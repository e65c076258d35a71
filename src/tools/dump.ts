/**
 * thin_dump: the metadata of a pool as thin_dump 0.9.0's XML (dm-thin-format.md §13.2).
 *
 * The dump reads the superblock and the trees directly: devices in the order of the
 * top-level mapping tree, their details from the details tree. Like thin_dump it does not
 * open the space maps, so metadata whose space maps are damaged can still be dumped (and
 * restored). Every block read is still checked (checksum, location, node structure): damage
 * on the way stops the dump with a `MetadataCorruptError` that names the block.
 */

import type { BlockDevice } from '../block/index.js';
import {
  BlockManager,
  type BTreeInfo,
  btree,
  NODE,
  type Node,
  plainValue,
  TransactionManager,
  u32Words,
  valueAsU64,
} from '../pdata/index.js';
import {
  blockTimeDataBlock,
  blockTimeTime,
  checkSuperblockForOpen,
  DETAILS_SIZE,
  type DeviceDetails,
  dataBlockOfWords,
  decodeDetails,
  decodeSuperblock,
  type Superblock,
  superblockValidator,
  timeOfWord,
} from '../thin/index.js';
import { MetadataCorruptError, NotFoundError } from '../util/index.js';
import { type DumpSink, DumpWriter } from './xml/dump-writer.js';
import type { SuperblockInfo } from './xml/metadata-image.js';

export interface DumpOptions {
  /** Dump the held metadata snapshot instead of the live trees (thin_dump -m). */
  metadataSnap?: boolean;
}

/** Where a dump reads its trees from, and what it says about the pool. */
interface DumpSource {
  superblock: SuperblockInfo;
  mappingRoot: number;
  detailsRoot: number;
}

/** Writes the metadata on `device` to `sink` as thin_dump XML. Never writes to `device`. */
export async function dumpMetadata(
  device: BlockDevice,
  sink: DumpSink,
  options: DumpOptions = {},
): Promise<void> {
  const tm = new TransactionManager(new BlockManager(device));
  const trees = readOnlyTrees(tm);
  const source = await dumpSource(tm, options.metadataSnap === true);
  const devices = await readDevices(trees, source);
  const writer = new DumpWriter(sink);
  await writer.superblock(source.superblock);
  for (const { id, details, root } of devices) {
    await writer.device({
      devId: id,
      mappedBlocks: details.mappedBlocks,
      transaction: details.transactionId,
      creationTime: details.creationTime,
      snapTime: details.snapshottedTime,
    });
    await btree.walkLeaves(trees.bottom, root, (leaf) => {
      addLeaf(writer, leaf);
      return writer.flush();
    });
    await writer.endDevice();
  }
  await writer.end();
}

/** Adds the mappings of a bottom-level leaf (keys already checked by the node validator). */
function addLeaf(writer: DumpWriter, leaf: Node): void {
  const n = leaf.nrEntries;
  const words = u32Words(leaf.buf);
  if (words === undefined) {
    const at = leaf.valueOffset(0);
    for (let i = 0; i < n; i++) {
      const v = at + 8 * i;
      writer.addMapping(leaf.key(i), blockTimeDataBlock(leaf.buf, v), blockTimeTime(leaf.buf, v));
    }
    return;
  }
  const keys = NODE.keys >> 2;
  const values = leaf.valueOffset(0) >> 2;
  for (let i = 0; i < n; i++) {
    const vblock = (words[keys + 2 * i + 1] as number) * 2 ** 32 + (words[keys + 2 * i] as number);
    const lo = words[values + 2 * i] as number;
    const hi = words[values + 2 * i + 1] as number;
    writer.addMapping(vblock, dataBlockOfWords(lo, hi), timeOfWord(lo));
  }
}

interface ReadOnlyTrees {
  top: BTreeInfo;
  bottom: BTreeInfo;
  details: BTreeInfo;
}

/** The thin trees with plain values: a walk never touches reference counts. */
function readOnlyTrees(tm: TransactionManager): ReadOnlyTrees {
  return {
    top: { tm, valueType: plainValue(8) },
    bottom: { tm, valueType: plainValue(8) },
    details: { tm, valueType: plainValue(DETAILS_SIZE) },
  };
}

async function dumpSource(tm: TransactionManager, metadataSnap: boolean): Promise<DumpSource> {
  const sb = readSuperblock(await tm.read(0, superblockValidator), 0);
  if (!metadataSnap) return sourceOf(sb, sb.dataSpaceMap.nrBlocks);
  if (sb.heldRoot === 0) {
    throw new NotFoundError(`${tm.bm.device.name} holds no metadata snapshot`, {
      hint: 'dump the live metadata without -m/--metadata-snap, or reserve a metadata snapshot first',
    });
  }
  const held = readSuperblock(await tm.read(sb.heldRoot, superblockValidator), sb.heldRoot);
  // thin_dump -m prints nr_data_blocks="0": the held copy has no data space map.
  return sourceOf(held, 0);
}

function readSuperblock(buf: Buffer, location: number): Superblock {
  const sb = decoded('superblock', location, () => decodeSuperblock(buf, location));
  checkSuperblockForOpen(sb, location);
  return sb;
}

/** `decode()`, with a field beyond 2^53 reported as damage to `structure`. */
function decoded<T>(structure: string, block: number | undefined, decode: () => T): T {
  try {
    return decode();
  } catch (error) {
    if (error instanceof RangeError)
      throw new MetadataCorruptError(structure, block, error.message);
    throw error;
  }
}

function sourceOf(sb: Superblock, nrDataBlocks: number): DumpSource {
  return {
    superblock: {
      uuid: '',
      time: sb.time,
      transaction: sb.transId,
      flags: sb.flags,
      version: sb.version,
      dataBlockSize: sb.dataBlockSize,
      nrDataBlocks,
    },
    mappingRoot: sb.dataMappingRoot,
    detailsRoot: sb.deviceDetailsRoot,
  };
}

interface DumpedDevice {
  id: number;
  details: DeviceDetails;
  /** Root of the device's mapping tree. */
  root: number;
}

/**
 * The devices of the top-level tree, in id order, with their details. A device with a
 * mapping tree but no details is damage (thin_dump fails on it too); details without a
 * mapping tree are left out, as thin_dump leaves them out.
 */
async function readDevices(trees: ReadOnlyTrees, source: DumpSource): Promise<DumpedDevice[]> {
  const details = new Map<number, DeviceDetails>();
  await btree.walk(trees.details, source.detailsRoot, (id, value) => {
    details.set(
      id,
      decoded(`details of thin device ${id}`, undefined, () => decodeDetails(value)),
    );
  });
  const devices: DumpedDevice[] = [];
  await btree.walk(trees.top, source.mappingRoot, (id, value) => {
    const found = details.get(id);
    if (found === undefined) {
      throw new MetadataCorruptError(
        'device details tree',
        source.detailsRoot,
        `thin device ${id} has a mapping tree but no details`,
      );
    }
    const root = decoded('top-level mapping tree', undefined, () => valueAsU64(value));
    devices.push({ id, details: found, root });
  });
  return devices;
}
