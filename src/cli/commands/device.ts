import { type Command, Option } from 'commander';
import type { StorageOperations } from '../../api/index.js';
import type { DeviceListing } from '../../driver/index.js';
import { BadInputError, type Bytes, formatHumanSize, NotFoundError } from '../../util/index.js';
import { sizeArgument } from '../arguments.js';
import { type ByteIo, bytesToStdout, stdinBytes } from '../byte-streams.js';
import { requireOneOf, writeJson } from '../context.js';
import type { CliIo } from '../io.js';
import { withOperations } from '../session.js';

/** `device read` and `device write` move at most this much at once. */
const CHUNK = 1024 * 1024;

export function addDeviceCommands(program: Command, io: CliIo): void {
  const device = program
    .command('device')
    .description('named thin devices and snapshots (the device set)');
  addCreate(device, io);
  addRemove(device, io);
  addList(device, io);
  addRead(device, io);
  addWrite(device, io);
}

function addCreate(device: Command, io: CliIo): void {
  device
    .command('create')
    .description('create a thin device of a size, or a snapshot of an origin')
    .argument('<name>', 'name of the new device')
    .addOption(
      new Option('--size <size>', 'virtual size (may exceed the pool)').argParser(sizeArgument),
    )
    .option('--origin <name>', 'make a snapshot of this device')
    .action(async (name: string, options: { size?: Bytes; origin?: string }, self: Command) => {
      requireOneOf(self, ['size', 'origin']);
      const spec =
        options.origin === undefined ? { size: options.size as Bytes } : { origin: options.origin };
      await withOperations(self, io, (ops) => ops.createDevice(name, spec));
    });
}

function addRemove(device: Command, io: CliIo): void {
  device
    .command('remove')
    .description('remove a device (busy: an error, or deferred when deferred removal is on)')
    .argument('<name>')
    .action(async (name: string, _options: unknown, self: Command) => {
      const outcome = await withOperations(self, io, (ops) => ops.removeDevice(name));
      if (outcome === 'deferred') {
        io.stderr.write(`thinp: device '${name}' is in use; it will be removed once released\n`);
      }
    });
}

function addList(device: Command, io: CliIo): void {
  device
    .command('list')
    .description('name, id, size, mapped, exclusive and shared bytes, origin')
    .option('--json', 'machine-readable output')
    .action(async (options: { json?: boolean }, self: Command) => {
      const devices = await withOperations(self, io, (ops) => ops.listDevices());
      if (options.json) writeJson(io, devices);
      else io.stdout.write(formatList(devices));
    });
}

function addRead(device: Command, io: ByteIo): void {
  device
    .command('read')
    .description('copy raw bytes of a device to stdout')
    .argument('<name>')
    .addOption(new Option('--offset <bytes>', 'where to start').argParser(sizeArgument))
    .addOption(
      new Option('--length <bytes>', 'how much to read (default: to the end)').argParser(
        sizeArgument,
      ),
    )
    .action(async (name: string, options: { offset?: Bytes; length?: Bytes }, self: Command) => {
      await withByteDevice(self, io, name, async (dev) => {
        const offset = options.offset ?? 0;
        const length = options.length ?? Math.max(0, dev.size - offset);
        checkWithin(name, dev, offset, length);
        await bytesToStdout(io.stdout, (sink) => copyOut(dev, offset, length, sink));
      });
    });
}

function addWrite(device: Command, io: ByteIo): void {
  device
    .command('write')
    .description('copy raw bytes from stdin to a device')
    .argument('<name>')
    .addOption(new Option('--offset <bytes>', 'where to start').argParser(sizeArgument))
    .action(async (name: string, options: { offset?: Bytes }, self: Command) => {
      await withByteDevice(self, io, name, async (dev) => {
        const offset = options.offset ?? 0;
        checkWithin(name, dev, offset, 0);
        await copyIn(name, dev, offset, stdinBytes(io));
        await dev.flush();
      });
    });
}

// ---------------------------------------------------------------------------------------

/** What `device read` and `device write` need of a device, local or through the daemon. */
interface ByteDevice {
  readonly size: number;
  read(buf: Buffer, offset: number): Promise<void>;
  write(buf: Buffer, offset: number): Promise<void>;
  flush(): Promise<void>;
}

/** Device `name` through the pool's operations (the daemon's, or local). */
function withByteDevice(
  self: Command,
  io: ByteIo,
  name: string,
  fn: (dev: ByteDevice) => Promise<void>,
): Promise<void> {
  return withOperations(self, io, async (ops) => fn(await byteDevice(ops, name)));
}

async function byteDevice(ops: StorageOperations, name: string): Promise<ByteDevice> {
  const entry = (await ops.listDevices()).find((d) => d.name === name);
  if (entry === undefined) {
    throw new NotFoundError(`there is no device ${name}`, {
      hint: "list the devices with 'thinp device list'",
    });
  }
  return {
    size: entry.size,
    read: async (buf, offset) => {
      buf.set(await ops.readDevice(name, offset, buf.length));
    },
    write: (buf, offset) => ops.writeDevice(name, offset, buf),
    flush: () => ops.flushDevice(name),
  };
}

async function copyOut(
  dev: ByteDevice,
  offset: number,
  length: number,
  sink: (chunk: Uint8Array) => Promise<void>,
): Promise<void> {
  for (let done = 0; done < length; ) {
    const buf = Buffer.allocUnsafe(Math.min(CHUNK, length - done));
    await dev.read(buf, offset + done);
    await sink(buf);
    done += buf.length;
  }
}

/** Writes `input` from `offset` in chunks of up to 1 MiB. */
async function copyIn(
  name: string,
  dev: ByteDevice,
  offset: number,
  input: AsyncIterable<Uint8Array>,
): Promise<void> {
  const buf = Buffer.allocUnsafe(CHUNK);
  let filled = 0;
  let at = offset;
  const writeOut = async () => {
    checkWithin(name, dev, at, filled);
    await dev.write(buf.subarray(0, filled), at);
    at += filled;
    filled = 0;
  };
  for await (const chunk of input) {
    for (let used = 0; used < chunk.length; ) {
      const n = Math.min(chunk.length - used, CHUNK - filled);
      buf.set(chunk.subarray(used, used + n), filled);
      filled += n;
      used += n;
      if (filled === CHUNK) await writeOut();
    }
  }
  if (filled > 0) await writeOut();
}

function checkWithin(name: string, dev: ByteDevice, offset: number, length: number): void {
  if (offset + length <= dev.size) return;
  const what = length === 0 ? `offset ${offset}` : `${length} bytes at offset ${offset}`;
  throw new BadInputError(`${what} runs past the end of device ${name} (${dev.size} bytes)`, {
    hint: 'stay within the device: lower --offset or --length, or give less input',
  });
}

function formatList(devices: readonly DeviceListing[]): string {
  const human = (n: number) => formatHumanSize(n as Bytes);
  const rows = [
    ['NAME', 'ID', 'SIZE', 'MAPPED', 'EXCLUSIVE', 'SHARED', 'ORIGIN'],
    ...devices.map((d) => [
      d.name,
      String(d.id),
      human(d.size),
      human(d.mappedBytes),
      human(d.exclusiveBytes),
      human(d.sharedBytes),
      d.origin ?? '-',
    ]),
  ];
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .map((line) => `${line}\n`)
    .join('');
}
