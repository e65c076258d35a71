/**
 * thin_repair: fresh, sound metadata rebuilt from whatever can still be read of damaged
 * metadata. The pool is read from the superblock's roots or, when the superblock is
 * unusable, from the newest roots a scan of every block finds (find-roots.ts); every
 * readable device and mapping is kept (salvage.ts); the result is written through the
 * restore path, so that every reference count — data blocks from the mappings, metadata
 * blocks from the blocks written — is computed anew, as is each device's mapped count. The
 * held metadata snapshot is not carried over, and needs_check is cleared.
 *
 * Reads `input` only; formats and writes `output`. The report says precisely what was lost.
 */

import type { BlockDevice } from '../../block/index.js';
import {
  decodeSuperblock,
  MAX_DATA_BLOCK_SECTORS,
  MIN_DATA_BLOCK_SECTORS,
  SUPERBLOCK_MAGIC,
  type Superblock,
  TIME_LIMIT,
} from '../../thin/index.js';
import { BadInputError } from '../../util/index.js';
import { BLOCK_KIND, BlockReader } from '../check/block-reader.js';
import { restoreEvents } from '../restore.js';
import type { XmlEvent } from '../xml/metadata-image.js';
import { findRoots } from './find-roots.js';
import type { LostSpan, RepairReport } from './report.js';
import { type SalvagedPool, salvagePool } from './salvage.js';
import { type LostRange, SalvageWalker } from './salvage-walker.js';

export { formatRepairReport, type LostSpan, nothingLost, type RepairReport } from './report.js';

/** Values for superblock fields, used instead of those read (thin_repair's overrides). */
export interface RepairOptions {
  transactionId?: number;
  /** In 512-byte sectors. */
  dataBlockSize?: number;
  nrDataBlocks?: number;
  /** Used only when the superblock gives no usable value (the pool's configuration). */
  fallback?: { dataBlockSize?: number; nrDataBlocks?: number; transactionId?: number };
}

/** Where the pool is read from. */
interface Source {
  kind: 'superblock' | 'scan';
  superblockProblem: string | null;
  mappingRoot: number | undefined;
  detailsRoot: number | undefined;
  scannedNodes: number | null;
  sb: Superblock | undefined;
}

/** Rebuilds the metadata of `input` on `output` and reports what was lost. */
export async function repairMetadata(
  input: BlockDevice,
  output: BlockDevice,
  options: RepairOptions = {},
): Promise<RepairReport> {
  const reader = new BlockReader(input);
  const source = await readSource(reader);
  const fields = poolFields(source, options, input.name);
  const walker = new SalvageWalker(reader);
  const pool =
    source.mappingRoot === undefined
      ? emptyPool()
      : await salvagePool(walker, {
          mappingRoot: source.mappingRoot,
          detailsRoot: source.detailsRoot,
          nrDataBlocks: fields.nrDataBlocks,
        });
  // Unless given, no lower than a device's own: the pool's id never falls behind them.
  const transactionId =
    options.transactionId ?? Math.max(fields.transactionId ?? 0, guessTransaction(pool));
  if (fields.transactionId === undefined) {
    fields.inferred.push(
      `transaction id ${transactionId}, the highest of the devices' (give --transaction-id to set it)`,
    );
  }
  const state = {
    transactionId,
    time: Math.min(TIME_LIMIT - 1, Math.max(source.sb?.time ?? 0, pool.maxTime)),
    dataBlockSize: fields.dataBlockSize,
    nrDataBlocks: fields.nrDataBlocks,
  };
  await restoreEvents(imageEvents(pool, state), output);
  return {
    source: source.kind,
    superblockProblem: source.superblockProblem,
    ...state,
    inferred: fields.inferred,
    roots: { mapping: source.mappingRoot ?? null, details: source.detailsRoot ?? null },
    scannedNodes: source.scannedNodes,
    ...losses(pool),
    droppedHeldRoot:
      source.sb !== undefined && source.sb.heldRoot !== 0 ? source.sb.heldRoot : null,
    damagedBlocks: [...walker.damaged]
      .sort((a, b) => a[0] - b[0])
      .map(([block, problem]) => ({ block, problem })),
  };
}

/** What the salvaged pool kept and lost, as the report says it. */
function losses(pool: SalvagedPool): Pick<RepairReport, 'kept' | 'lost'> {
  return {
    kept: {
      devices: pool.devices.length,
      mappings: pool.devices.reduce((sum, d) => sum + d.mappings, 0),
    },
    lost: {
      devices: pool.lostDevices.map((d) => ({
        id: d.id,
        block: d.block ?? null,
        problem: d.problem,
      })),
      deviceRanges: pool.lostDeviceRanges.map(toSpan),
      details: pool.devices.filter((d) => d.detailsLost).map((d) => detailsLoss(pool, d.id)),
      mappings: pool.devices
        .filter((d) => d.lost.length > 0)
        .map((d) => ({ device: d.id, ranges: mergeSpans(d.lost.map(toSpan)) })),
    },
  };
}

/** Where the details of device `id` were lost: the damaged range that held them, if any. */
function detailsLoss(pool: SalvagedPool, id: number): RepairReport['lost']['details'][number] {
  const range = pool.lostDetailsRanges.find(
    (r) => id >= r.begin && (r.end === undefined || id < r.end),
  );
  if (range === undefined) return { id, block: null, problem: 'the details tree holds no entry' };
  return { id, block: range.block ?? null, problem: range.problem };
}

function emptyPool(): SalvagedPool {
  return {
    devices: [],
    lostDevices: [],
    lostDeviceRanges: [
      {
        begin: 0,
        end: undefined,
        block: undefined,
        problem: 'no top-level mapping tree was found',
      },
    ],
    lostDetailsRanges: [],
    maxTime: 0,
  };
}

async function readSource(reader: BlockReader): Promise<Source> {
  const problem = await superblockProblem(reader);
  if (problem.sb !== undefined) {
    return {
      kind: 'superblock',
      superblockProblem: problem.message ?? null,
      mappingRoot: problem.sb.dataMappingRoot,
      detailsRoot: problem.sb.deviceDetailsRoot,
      scannedNodes: null,
      sb: problem.sb,
    };
  }
  const found = await findRoots(reader);
  return {
    kind: 'scan',
    superblockProblem: problem.message ?? null,
    mappingRoot: found.mappingRoot,
    detailsRoot: found.detailsRoot,
    scannedNodes: found.nodes,
    sb: undefined,
  };
}

/**
 * The superblock, when its checksum and location field hold (a wrong magic alone is passed
 * over, as thin_repair passes over it, and said in the report); else what is wrong with it.
 */
async function superblockProblem(
  reader: BlockReader,
): Promise<{ sb?: Superblock; message?: string }> {
  const read = await reader.readChecked(0, BLOCK_KIND.superblock);
  if (read.error !== undefined) return { message: read.error };
  let sb: Superblock;
  try {
    sb = decodeSuperblock(read.buf, 0);
  } catch (error) {
    return { message: (error as Error).message };
  }
  if (sb.magic !== SUPERBLOCK_MAGIC) {
    return {
      sb,
      message: `bad magic ${sb.magic} (expected ${SUPERBLOCK_MAGIC}); the rest checks out and was used`,
    };
  }
  return { sb };
}

interface PoolFields {
  transactionId: number | undefined;
  dataBlockSize: number;
  nrDataBlocks: number;
  inferred: string[];
}

/** The superblock fields of the rebuilt pool: given, else read; fails when neither. */
function poolFields(source: Source, options: RepairOptions, name: string): PoolFields {
  const sb = source.sb;
  const inferred: string[] = [];
  const given = (what: string, value: number | undefined) => {
    if (value !== undefined) inferred.push(`${what} ${value}, as given`);
    return value;
  };
  const fallback = (what: string, value: number | undefined) => {
    if (value !== undefined)
      inferred.push(`${what} ${value}, from the pool's configuration and state`);
    return value;
  };
  const dataBlockSize =
    given('data block size', options.dataBlockSize) ??
    usableBlockSize(sb?.dataBlockSize) ??
    fallback('data block size', options.fallback?.dataBlockSize);
  const nrDataBlocks =
    given('data blocks', options.nrDataBlocks) ??
    sb?.dataSpaceMap.nrBlocks ??
    fallback('data blocks', options.fallback?.nrDataBlocks);
  const transactionId =
    given('transaction id', options.transactionId) ??
    sb?.transId ??
    fallback('transaction id', options.fallback?.transactionId);
  if (dataBlockSize === undefined || nrDataBlocks === undefined) {
    const missing = [
      dataBlockSize === undefined ? '--data-block-size SECTORS' : '',
      nrDataBlocks === undefined ? '--nr-data-blocks N' : '',
    ].filter((m) => m !== '');
    throw new BadInputError(
      `the superblock of ${name} is unusable (${source.superblockProblem ?? 'bad data block size'}), and the size of the pool's data went with it`,
      {
        hint: `give ${missing.join(' and ')} (the pool's data block size in 512-byte sectors and its data device size in blocks)`,
      },
    );
  }
  return { transactionId, dataBlockSize, nrDataBlocks, inferred };
}

function usableBlockSize(size: number | undefined): number | undefined {
  if (size === undefined) return undefined;
  const ok =
    size % MIN_DATA_BLOCK_SECTORS === 0 &&
    size >= MIN_DATA_BLOCK_SECTORS &&
    size <= MAX_DATA_BLOCK_SECTORS;
  return ok ? size : undefined;
}

function guessTransaction(pool: SalvagedPool): number {
  return pool.devices.reduce((max, d) => Math.max(max, d.details.transaction), 0);
}

function* imageEvents(
  pool: SalvagedPool,
  fields: { transactionId: number; time: number; dataBlockSize: number; nrDataBlocks: number },
): Generator<XmlEvent> {
  yield {
    kind: 'superblock',
    info: {
      uuid: '',
      time: fields.time,
      transaction: fields.transactionId,
      flags: 0,
      version: 2,
      dataBlockSize: fields.dataBlockSize,
      nrDataBlocks: fields.nrDataBlocks,
    },
  };
  for (const device of pool.devices) {
    yield {
      kind: 'device',
      info: {
        devId: device.id,
        mappedBlocks: device.mappings,
        transaction: device.details.transaction,
        creationTime: device.details.creationTime,
        snapTime: device.details.snapTime,
      },
    };
    for (const run of device.runs) yield { kind: 'run', run };
    yield { kind: 'endDevice' };
  }
  yield { kind: 'end' };
}

function toSpan(range: LostRange): LostSpan {
  return {
    first: range.begin,
    last: range.end === undefined ? null : range.end - 1,
    block: range.block ?? null,
    problem: range.problem,
  };
}

/** Adjacent or overlapping spans lost to the same block and problem, as one. */
function mergeSpans(spans: LostSpan[]): LostSpan[] {
  const merged: LostSpan[] = [];
  for (const s of spans) {
    const last = merged.at(-1);
    if (
      last !== undefined &&
      last.last !== null &&
      last.block === s.block &&
      last.problem === s.problem &&
      s.first <= last.last + 1
    ) {
      last.last = s.last === null ? null : Math.max(last.last, s.last);
      continue;
    }
    merged.push({ ...s });
  }
  return merged;
}
