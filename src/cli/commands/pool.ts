import { mkdir } from 'node:fs/promises';
import { type Command, Option } from 'commander';
import { DeviceSet, type PoolDeviceUse } from '../../driver/index.js';
import type { PoolStatus } from '../../pool/index.js';
import { type Bytes, formatSize } from '../../util/index.js';
import { sizeArgument } from '../arguments.js';
import { commandConfig, requireOneOf, writeJson } from '../context.js';
import type { CliIo } from '../io.js';
import { withOperations, withRootLock } from '../session.js';

export function addPoolCommands(program: Command, io: CliIo): void {
  const pool = program
    .command('pool')
    .description('the thin pool: create it, see its status, resize it');
  addCreate(pool, io);
  addStatus(pool, io);
  addResize(pool, io);
}

function addCreate(pool: Command, io: CliIo): void {
  pool
    .command('create')
    .description('create the pool per the options (loop mode by default)')
    .action(async (_options: unknown, self: Command) => {
      const config = await commandConfig(self, io);
      await mkdir(config.root, { recursive: true, mode: 0o700 });
      await withRootLock(self, io, config, async () => {
        const set = await DeviceSet.create(config);
        try {
          const { data, metadata } = set.status();
          io.stdout.write(
            `created a ${set.files.mode === 'loop' ? 'loop-mode' : 'direct-mode'} pool at ` +
              `${config.root}: ${data.totalBlocks} data blocks of ${size(data.blockSize)}, ` +
              `${size(metadata.totalBlocks * 4096)} of metadata\n`,
          );
        } finally {
          await set.close();
        }
      });
    });
}

function addStatus(pool: Command, io: CliIo): void {
  pool
    .command('status')
    .description('transaction id, data and metadata space, held root, mode, needs_check')
    .option('--json', 'machine-readable output')
    .action(async (options: { json?: boolean }, self: Command) => {
      const { status, devices } = await withOperations(self, io, async (ops) => ({
        status: await ops.poolStatus(),
        devices: await ops.poolDevices(),
      }));
      if (options.json) writeJson(io, status);
      else io.stdout.write(formatStatus(status) + formatDevices(devices));
    });
}

function addResize(pool: Command, io: CliIo): void {
  pool
    .command('resize')
    .description('grow the data or metadata space, or add a data device')
    .addOption(
      new Option('--data-size <size>', 'new size of the data space').argParser(sizeArgument),
    )
    .addOption(
      new Option('--metadata-size <size>', 'new size of the metadata space').argParser(
        sizeArgument,
      ),
    )
    .option('--add-device <device>', 'add this block device to the data space')
    .action(async (options: ResizeOptions, self: Command) => {
      requireOneOf(self, ['dataSize', 'metadataSize', 'addDevice']);
      const sizes = {
        ...(options.addDevice === undefined ? {} : { addDevice: options.addDevice }),
        ...(options.dataSize === undefined ? {} : { dataSize: options.dataSize }),
        ...(options.metadataSize === undefined ? {} : { metadataSize: options.metadataSize }),
      };
      const status = await withOperations(self, io, (ops) => ops.resizePool(sizes));
      io.stdout.write(formatStatus(status));
    });
}

interface ResizeOptions {
  dataSize?: Bytes;
  metadataSize?: Bytes;
  addDevice?: string;
}

function formatStatus(s: PoolStatus): string {
  const usage = (used: number, total: number, block: number) =>
    `${used} of ${total} blocks of ${size(block)} used (${percent(used, total)})`;
  return [
    `transaction id: ${s.transactionId}`,
    `mode: ${s.mode}`,
    `needs check: ${s.needsCheck ? 'yes' : 'no'}`,
    `held root: ${s.heldRoot === 0 ? 'none' : s.heldRoot}`,
    `data: ${usage(s.data.usedBlocks, s.data.totalBlocks, s.data.blockSize)}`,
    `metadata: ${usage(s.metadata.usedBlocks, s.metadata.totalBlocks, 4096)}`,
    '',
  ].join('\n');
}

/** One line per device: where it is, and its data, metadata and free bytes. */
function formatDevices(devices: readonly PoolDeviceUse[]): string {
  const lines = devices.map((d) => {
    const parts = [
      d.dataBytes > 0 ? `${size(d.dataBytes)} data` : '',
      d.metadataBytes > 0 ? `${size(d.metadataBytes)} metadata` : '',
      d.uuid === '' ? '' : `${size(d.freeBytes)} free`,
    ].filter((p) => p !== '');
    const uuid = d.uuid === '' ? '' : ` (uuid ${d.uuid})`;
    return `  ${d.path}${uuid}: ${parts.join(', ')}`;
  });
  return `held by:\n${lines.join('\n')}\n`;
}

function percent(used: number, total: number): string {
  return total === 0 ? '0%' : `${Math.round((used * 1000) / total) / 10}%`;
}

function size(bytes: number): string {
  return formatSize(bytes as Bytes);
}
