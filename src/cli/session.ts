/**
 * Commands that open a root's pool do so under the root's exclusive lock (DESIGN §4: with
 * no daemon running, commands open the pool directly, one at a time). A stale lock left by
 * a killed process is taken over, and the command says so on stderr; so is an operation
 * that a crash cut short and the opening rolled back.
 */

import { stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { ApiClient, isDaemonRunning } from '../api/index.js';
import type { Config } from '../config/index.js';
import { DeviceSet, RootLock } from '../driver/index.js';
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
 * Runs `daemon` with a client of the root's daemon when one answers on ROOT/thinp.sock
 * (the root lock is then the daemon's), else `direct` on the device set as withDeviceSet.
 */
export async function viaDaemonOr<T>(
  self: Command,
  io: CliIo,
  daemon: (client: ApiClient) => Promise<T>,
  direct: (set: DeviceSet, config: Config) => Promise<T>,
): Promise<T> {
  const config = await commandConfig(self, io);
  const client = await daemonClient(config);
  if (client !== undefined) return daemon(client);
  await requireRoot(config);
  return withRootLock(self, io, config, () => useDeviceSet(io, config, direct));
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
}
