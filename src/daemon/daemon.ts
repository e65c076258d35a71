/**
 * `startDaemon`: one process owning a root's pool, serving every device over NBD and the
 * control API, in this order:
 *
 * 1. take the root lock (another daemon or command on the root is a BusyError);
 * 2. open the device set, creating the pool when the root has none, with the pool's commit
 *    timer at one second and the free-space sweep on open;
 * 3. remove sockets a killed daemon left (the lock proves nobody serves them), then serve
 *    NBD on ROOT/nbd.sock plus the addresses given;
 * 4. open the layer store (graph/), which mounts through an attacher to that NBD socket:
 *    it adopts the mounts a previous daemon left (they outlive it: nbdfuse reaches the
 *    daemon through a reconnecting relay), holds the devices of filesystems that outlived
 *    their unmount, cleans up stale ones, then finishes the deferred removals of devices
 *    nobody holds (the set was opened with them kept), and checks the base device;
 * 5. serve the control API on ROOT/thinp.sock (mode 0600), and metrics on a TCP address if
 *    given.
 *
 * Layers stay mounted when the daemon stops (Docker keeps containers running across a
 * restart of its storage driver); `handle.layers.cleanup()` unmounts them all.
 *
 * `stop()` undoes it in reverse: stop accepting and let in-flight NBD requests finish and
 * the API's requests complete, release the devices, close the device set (which commits),
 * remove both sockets, release the lock. It is idempotent; `stopped` resolves after it.
 * A failure half-way through the start undoes what was done and rejects.
 */

import { mkdir, rm } from 'node:fs/promises';
import { ApiServer, CommitStats, EventHub } from '../api/index.js';
import type { Config } from '../config/index.js';
import { Autoextender, DeviceSet, poolPresent, RootLock } from '../driver/index.js';
import {
  type ImagesAndContainers,
  openImagesAndContainers,
  ThinLayerStore,
} from '../graph/index.js';
import { chooseAttacher } from '../mount/index.js';
import { type ListenAddress, NbdServer, relayCommand } from '../nbd/index.js';
import { startDockerPlugin, startSnapshotter } from '../plugin/index.js';
import { UnavailableError } from '../util/index.js';
import { DeviceExports } from './device-export.js';
import { type DaemonLog, jsonLog, nbdLog, stderrLog } from './log.js';

/** The pool's commit timer while the daemon runs: a commit a second while mappings changed. */
export const DAEMON_COMMIT_INTERVAL_MS = 1000;
/** Every this many commits gets a log line; so does any commit slower than SLOW_COMMIT_MS. */
const COMMIT_LOG_EVERY = 100;
const SLOW_COMMIT_MS = 500;

export interface DaemonOptions {
  /** NBD listeners besides ROOT/nbd.sock. */
  nbd?: readonly ListenAddress[];
  /** A TCP listener for `GET /metrics` only. */
  metrics?: { host: string; port: number };
  /** Where log lines go (one JSON object each, no newline); stderr by default. */
  log?: (line: string) => void;
  /** Serve Docker's graphdriver plugin protocol on this UNIX socket. */
  dockerPlugin?: string;
  /** Serve containerd's snapshot service (a proxy snapshotter) on this UNIX socket. */
  containerdSnapshotter?: string;
}

export interface DaemonHandle {
  config: Config;
  deviceSet: DeviceSet;
  /** The storage driver's layers, mounted through this daemon's NBD server. */
  layers: ThinLayerStore;
  /** Images and containers on those layers (their operations are the API's). */
  images: ImagesAndContainers;
  /** Where NBD is served: ROOT/nbd.sock first, then the addresses given (ports bound). */
  nbdAddresses: ListenAddress[];
  controlSocket: string;
  metricsAddress: { host: string; port: number } | undefined;
  /** Shuts down in order; idempotent. */
  stop(): Promise<void>;
  /** Resolves once `stop()` has finished. */
  stopped: Promise<void>;
}

/** Starts serving `config.root`; see the module comment. */
export async function startDaemon(
  config: Config,
  options: DaemonOptions = {},
): Promise<DaemonHandle> {
  const log = options.log === undefined ? stderrLog : jsonLog(options.log);
  const started = Date.now();
  await mkdir(config.root, { recursive: true, mode: 0o700 });
  const lock = await RootLock.acquire(config.root, 'thinp daemon');
  const undo: Array<() => Promise<void>> = [() => lock.release()];
  try {
    const set = await openDeviceSet(config, log);
    undo.unshift(() => set.close());
    const handle = await serve(config, set, options, log, undo);
    log('started', { root: config.root, pid: process.pid, ms: Date.now() - started });
    return handle;
  } catch (err) {
    log('start-failed', { error: err }, 'error');
    await runAll(undo, log);
    throw err;
  }
}

async function openDeviceSet(config: Config, log: DaemonLog): Promise<DeviceSet> {
  const pool = {
    commitIntervalMs: DAEMON_COMMIT_INTERVAL_MS,
    sweepOnOpen: true,
    lowWaterPercent: 100 - config.storage.autoextendThreshold,
  };
  if (await poolPresent(config)) {
    // Deferred removals finish once the layer store knows which devices still have a user.
    const set = await DeviceSet.open(config, { pool, deferRemovals: true });
    await refuseNeedsCheck(config, set);
    const r = set.recovered;
    if (r !== undefined) log('recovered', { ...r }, 'warn');
    return set;
  }
  const set = await DeviceSet.create(config, { pool });
  log('pool-created', { root: config.root, mode: set.files.mode, ...set.status().data });
  return set;
}

/**
 * A pool whose metadata failed (needs_check set) is not served: like LVM's activation, the
 * daemon refuses it and names the command that checks it.
 */
async function refuseNeedsCheck(config: Config, set: DeviceSet): Promise<void> {
  if (!set.status().needsCheck) return;
  await set.close();
  throw new UnavailableError(
    `the pool at ${config.root} needs a check: its metadata failed earlier (needs_check is set)`,
    {
      hint:
        `run 'thinp --root ${config.root} check' to see the damage, then ` +
        `'thinp --root ${config.root} repair' (or restore the metadata from a dump)`,
    },
  );
}

async function serve(
  config: Config,
  set: DeviceSet,
  options: DaemonOptions,
  log: DaemonLog,
  undo: Array<() => Promise<void>>,
): Promise<DaemonHandle> {
  const { controlSocket, nbdSocket } = config.layout;
  await removeSockets(config);
  undo.unshift(() => removeSockets(config));
  const events = new EventHub();
  const commits = new CommitStats();
  const detach = watchPool(set, events, commits, log);
  undo.unshift(async () => detach());
  const autoextend = startAutoextend(set, events, log);
  undo.unshift(() => autoextend.stop());

  const exports = new DeviceExports(set, (name) => log('device-opened', { device: name }));
  undo.unshift(() => exports.releaseAll());
  const nbd = new NbdServer({ registry: exports, log: nbdLog(log) });
  undo.unshift(() => nbd.close());
  const nbdAddresses: ListenAddress[] = [];
  for (const address of [{ path: nbdSocket }, ...(options.nbd ?? [])]) {
    nbdAddresses.push(await nbd.listen(address));
  }

  const layers = await openLayers(config, set, log);
  undo.unshift(() => layers.close());
  const images = await openImages(config, layers, log);
  const onChange = (event: string, fields: Record<string, unknown>) => log(event, fields);
  const ctx = {
    config,
    set,
    layers,
    events,
    commits,
    onChange,
    autoextend: autoextend.state,
    images: async () => images,
  };
  const onError = (err: unknown, req: { method: string; path: string }) =>
    log('api-error', { ...req, error: err }, 'warn');
  const api = new ApiServer(ctx, { onError });
  undo.unshift(() => api.close());
  await api.listenUnix(controlSocket);
  log('listening', { api: controlSocket });

  await servePlugins(config, layers, options, log, undo);

  let metricsAddress: DaemonHandle['metricsAddress'];
  if (options.metrics !== undefined) {
    const metrics = new ApiServer(ctx, { metricsOnly: true, onError });
    undo.unshift(() => metrics.close());
    const port = await metrics.listenTcp(options.metrics.host, options.metrics.port);
    metricsAddress = { host: options.metrics.host, port };
    log('listening', { metrics: `${metricsAddress.host}:${port}` });
  }
  return handleOf({ config, set, layers, images, nbdAddresses, metricsAddress }, undo, log);
}

/** Images and containers on the layers; says what a crash left and opening settled. */
async function openImages(
  config: Config,
  layers: ThinLayerStore,
  log: DaemonLog,
): Promise<ImagesAndContainers> {
  const images = await openImagesAndContainers(config.root, layers);
  const { intents, removedLayers, removedContainers } = images.settled;
  if (intents.length + removedContainers.length > 0) {
    log('images-settled', { intents, removedLayers, removedContainers }, 'warn');
  }
  return images;
}

/** Docker's graphdriver plugin and containerd's snapshotter, when asked for. */
async function servePlugins(
  config: Config,
  layers: ThinLayerStore,
  options: DaemonOptions,
  log: DaemonLog,
  undo: Array<() => Promise<void>>,
): Promise<void> {
  if (options.dockerPlugin !== undefined) {
    const docker = await startDockerPlugin({ config, layers, socket: options.dockerPlugin, log });
    undo.unshift(() => docker.close());
  }
  if (options.containerdSnapshotter !== undefined) {
    const snapshotter = await startSnapshotter({
      config,
      layers,
      socket: options.containerdSnapshotter,
      log,
    });
    undo.unshift(() => snapshotter.close());
  }
}

async function openLayers(config: Config, set: DeviceSet, log: DaemonLog): Promise<ThinLayerStore> {
  const attacher = await chooseAttacher({
    nbdSocket: config.layout.nbdSocket,
    stateDir: config.layout.mountStateDir,
    relay: relayCommand,
  });
  const layers = await ThinLayerStore.open({ config, set, attacher, log: (e, f) => log(e, f) });
  log('layers-open', { attacher: attacher.kind });
  return layers;
}

interface Served {
  config: Config;
  set: DeviceSet;
  layers: ThinLayerStore;
  images: ImagesAndContainers;
  nbdAddresses: ListenAddress[];
  metricsAddress: DaemonHandle['metricsAddress'];
}

function handleOf(served: Served, undo: Array<() => Promise<void>>, log: DaemonLog): DaemonHandle {
  const { config, set, layers, images, nbdAddresses, metricsAddress } = served;
  let stopping: Promise<void> | undefined;
  let markStopped: () => void = () => {};
  const stopped = new Promise<void>((resolve) => {
    markStopped = resolve;
  });
  const stop = () => {
    stopping ??= (async () => {
      const begun = Date.now();
      log('shutdown-begin', {});
      await runAll(undo, log);
      log('shutdown', { ms: Date.now() - begun });
      markStopped();
    })();
    return stopping;
  };
  return {
    config,
    deviceSet: set,
    layers,
    images,
    nbdAddresses,
    controlSocket: config.layout.controlSocket,
    metricsAddress,
    stop,
    stopped,
  };
}

/** Pool events into the event hub, commit statistics and the log; returns the detacher. */
function watchPool(
  set: DeviceSet,
  events: EventHub,
  commits: CommitStats,
  log: DaemonLog,
): () => void {
  const pool = set.pool;
  const detachEvents = events.watchPool(pool);
  const detachCommits = commits.watch(pool);
  const unsubscribe = events.subscribe((e) => {
    if (e.type === 'lowWater' || e.type === 'outOfSpace' || e.type === 'mode') {
      const { type, time: _time, ...fields } = e;
      log(`pool-${type}`, fields, type === 'outOfSpace' ? 'error' : 'warn');
    }
  });
  const onCommit = (e: { transactionId: number; durationMs: number }) => {
    if (commits.count % COMMIT_LOG_EVERY === 1 || e.durationMs >= SLOW_COMMIT_MS) {
      log(
        'commit',
        { ...e, commits: commits.count },
        e.durationMs >= SLOW_COMMIT_MS ? 'warn' : 'info',
      );
    }
  };
  pool.on('commit', onCommit);
  return () => {
    pool.off('commit', onCommit);
    unsubscribe();
    detachCommits();
    detachEvents();
  };
}

/**
 * Autoextend (driver/autoextend.ts), checked on the pool's low-water and out-of-space
 * events (with dm.no_space_policy=queue, writes that ran out wait for the growth), after
 * every commit and once now; its events go to the hub and the log. `stop()` detaches it and waits
 * for a growth under way.
 */
function startAutoextend(set: DeviceSet, events: EventHub, log: DaemonLog) {
  const autoextender = new Autoextender(
    set,
    (e) => {
      events.publish(e);
      const { type, ...fields } = e;
      if (type === 'autoextend') log('pool-autoextend', fields);
      else log('pool-autoextend-exhausted', fields, 'warn');
    },
    (err) => log('autoextend-error', { error: err }, 'error'),
  );
  const check = () => void autoextender.check();
  set.pool.on('lowWater', check);
  set.pool.on('outOfSpace', check);
  set.pool.on('commit', check);
  const first = autoextender.check();
  return {
    state: autoextender.state,
    stop: async () => {
      set.pool.off('lowWater', check);
      set.pool.off('outOfSpace', check);
      set.pool.off('commit', check);
      await first;
      await autoextender.idle();
    },
  };
}

/** Runs each step in order; a failing step is logged and the rest still run. */
async function runAll(steps: Array<() => Promise<void>>, log: DaemonLog): Promise<void> {
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      log('shutdown-error', { error: err }, 'error');
    }
  }
}

async function removeSockets(config: Config): Promise<void> {
  await Promise.all([
    rm(config.layout.controlSocket, { force: true }),
    rm(config.layout.nbdSocket, { force: true }),
  ]);
}

/**
 * Stops `handle` on the first SIGINT or SIGTERM; returns the detacher. A second signal
 * while stopping is ignored (the shutdown is already under way).
 */
export function stopOnSignals(handle: DaemonHandle, log: DaemonLog = stderrLog): () => void {
  const onSignal = (signal: NodeJS.Signals) => {
    log('signal', { signal });
    void handle.stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}
