/**
 * How a command reaches the pool: `withOperations` hands it StorageOperations, which are
 * the running daemon's (ApiClient over ROOT/thinp.sock) or, with no daemon, a StorageEngine
 * on the pool opened here under the root's exclusive lock (DESIGN §4: commands then open
 * the pool directly, one at a time; those that need served devices, such as mounts, say
 * to start the daemon). A command is written once, against the interface. A stale lock
 * left by a killed process is taken over, and the command says so on stderr; so is an
 * operation that a crash cut short and the opening rolled back or finished.
 */

import { stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { ApiClient, isDaemonRunning, StorageEngine, type StorageOperations } from '../api/index.js';
import type { Config } from '../config/index.js';
import { DeviceSet, RootLock } from '../driver/index.js';
import {
  type ImagesAndContainers,
  openImagesAndContainers,
  ThinLayerStore,
} from '../graph/index.js';
import { NotFoundError } from '../util/index.js';
import { commandConfig, commandPath } from './context.js';
import type { CliIo } from './io.js';

/** Runs `fn` holding the lock on `config.root`, which must exist. */
export async function withRootLock<T>(
  self: Command,
  io: CliIo,
  config: Config,
  fn: () => Promise<T>,
): Promise<T> {
  const lock = await RootLock.acquire(config.root, [commandPath(self), ...self.args].join(' '));
  const stale = lock.tookOverFrom;
  if (stale !== undefined) {
    io.stderr.write(
      `thinp: took over the lock of pid ${stale.pid} ('${stale.command}' since ` +
        `${stale.started}), which is no longer running\n`,
    );
  }
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

/** Runs `fn` with the root's device set open, under the root lock. */
export async function withDeviceSet<T>(
  self: Command,
  io: CliIo,
  fn: (set: DeviceSet, config: Config) => Promise<T>,
): Promise<T> {
  const config = await commandConfig(self, io);
  await requireRoot(config);
  return withRootLock(self, io, config, () => useDeviceSet(io, config, fn));
}

/**
 * Runs `fn` with the operations of the daemon serving the root when one answers on
 * ROOT/thinp.sock (the root lock is then the daemon's), else with a local engine on the
 * device set and layer store opened under the root lock.
 */
export async function withOperations<T>(
  self: Command,
  io: CliIo,
  fn: (ops: StorageOperations, config: Config) => Promise<T>,
): Promise<T> {
  const config = await commandConfig(self, io);
  const client = await daemonClient(config);
  if (client !== undefined) return fn(client, config);
  await requireRoot(config);
  return withRootLock(self, io, config, () =>
    useDeviceSet(io, config, async (set) => {
      const layers = await ThinLayerStore.open({ config, set });
      let images: Promise<ImagesAndContainers> | undefined;
      const openImages = () => {
        images ??= openImagesAndContainers(config.root, layers);
        return images;
      };
      return fn(new StorageEngine({ config, set, layers, images: openImages }), config);
    }),
  );
}

/** A client of the daemon serving `config.root`, if one is running. */
export async function daemonClient(config: Config): Promise<ApiClient | undefined> {
  const socket = config.layout.controlSocket;
  return (await isDaemonRunning(socket)) ? new ApiClient(socket) : undefined;
}

/** Opens the device set (the caller holds the lock), runs `fn`, closes it. */
export async function useDeviceSet<T>(
  io: CliIo,
  config: Config,
  fn: (set: DeviceSet, config: Config) => Promise<T>,
): Promise<T> {
  const set = await DeviceSet.open(config);
  reportRecovery(io, set);
  try {
    return await fn(set, config);
  } finally {
    await set.close();
  }
}

/** Whether the root directory exists. */
export async function rootExists(config: Config): Promise<boolean> {
  try {
    return (await stat(config.root)).isDirectory();
  } catch {
    return false;
  }
}

async function requireRoot(config: Config): Promise<void> {
  if (!(await rootExists(config))) {
    throw new NotFoundError(`there is no pool at ${config.root}`, {
      hint: "create one with 'thinp pool create', or give the right --root",
    });
  }
}

function reportRecovery(io: CliIo, set: DeviceSet): void {
  const r = set.recovered;
  if (r !== undefined) {
    io.stderr.write(
      `thinp: an operation on device '${r.device}' (thin id ${r.deviceId}) was cut short; ` +
        `rolled back: the device is not in the pool (transaction ${r.transactionId})\n`,
    );
  }
  for (const name of set.finishedRemovals) {
    io.stderr.write(`thinp: finished the deferred removal of device '${name}'\n`);
  }
  for (const name of set.finishedReplacements) {
    io.stderr.write(`thinp: finished replacing the content of device '${name}' (cut short)\n`);
  }
}
